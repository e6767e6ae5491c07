"""A test-only DAG: a batch whose first tries time out while its images still render.

Each Airflow retry must re-attach to the kie tasks created by the first try (through the task
state store) instead of creating and paying for them again.
"""

from __future__ import annotations

from datetime import timedelta

from airflow.sdk import DAG

from airflow_provider_kontext._compat import AIRFLOW_V_3_3_PLUS
from airflow_provider_kontext.operators.batch import KontextBatchGenerateOperator

with DAG(
    dag_id="kontext_test_retry_reattach",
    schedule=None,
    catchup=False,
    # Below 3.3 (no state store) every try fails alike, creating anew: one retry shows it.
    default_args={"retries": 6 if AIRFLOW_V_3_3_PLUS else 1, "retry_delay": timedelta(seconds=0)},
) as dag:
    KontextBatchGenerateOperator(
        task_id="batch",
        requests=[{"prompt": f"retry image {index}"} for index in range(4)],
        deferrable=False,
        poll_interval=0.2,
        timeout=0.6,
    )
