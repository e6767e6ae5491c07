"""A test-only DAG: prompts kie refuses for content policy, on tasks with retries.

With the provider's default retry policy (Airflow 3.3+) each refused task must cost one create and
one try, deferrable or not, operator or decorator; a task whose author set a policy of their own
keeps Airflow's normal retries. Below 3.3 there are no retry policies: every task gets Airflow's
normal retries, and there is no own-policy task to build.
"""

from __future__ import annotations

from datetime import timedelta

from airflow.sdk import DAG, task

from airflow_provider_kontext._compat import AIRFLOW_V_3_3_PLUS
from airflow_provider_kontext.operators.generate import KontextGenerateOperator

REFUSED = "a forbidden picture [emulator:content_policy]"

with DAG(
    dag_id="kontext_test_refused_prompt",
    schedule=None,
    catchup=False,
    # Below 3.3 one retry shows it (each try there is a task process start, about 4 s on 2 cores).
    default_args={"retries": 3 if AIRFLOW_V_3_3_PLUS else 1, "retry_delay": timedelta(seconds=0)},
) as dag:
    KontextGenerateOperator(task_id="refused_deferrable", prompt=REFUSED, deferrable=True, poll_interval=0.2)
    KontextGenerateOperator(task_id="refused_blocking", prompt=REFUSED, deferrable=False, poll_interval=0.2)

    @task.kontext(deferrable=True, poll_interval=0.2)
    def refused_decorated() -> str:
        return REFUSED

    refused_decorated()
    if AIRFLOW_V_3_3_PLUS:
        from airflow.sdk import ExceptionRetryPolicy

        # No rules: every error falls through to Airflow's normal behaviour, as without the provider's.
        KontextGenerateOperator(
            task_id="refused_own_policy",
            prompt=REFUSED,
            deferrable=False,
            poll_interval=0.2,
            retries=2,
            retry_policy=ExceptionRetryPolicy(rules=[]),
        )
