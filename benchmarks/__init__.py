"""Benchmarks of airflow-provider-kontext against its peers and kie's limits (``bash benchmarks/run``)."""
