"""What every Kontext task does on a worker, shared by the operators, the decorators and the sensor.

Preparing requests (:mod:`.prepare`), creating each image once across Airflow retries
(:mod:`.ledger`) and waiting and finishing (:mod:`.waiting`) live here, apart from
``operators/``, so the sensor and the trigger never import an operator module. Private: DAG
authors import the operators, the sensor and the decorators instead.
"""
