"""
The two DAGs of the distributed (Celery, Postgres, two triggerers) e2e test.

``kontext_e2e_distributed_failover``: every kind of wait the provider has, deferred at once:
two mapped deferrable generations, a deferrable batch of two, and a submit whose kie task a
deferrable sensor waits for. No retries: the triggerer failover must succeed on the first try.
The generation time comes from the run's ``slow_seconds`` param (the emulator reads the
``[emulator:slow=N]`` prompt marker), so the test decides how long the deferral lasts.

``kontext_e2e_distributed_worker_kill``: one deferrable batch of three, paced to one create per
``RATE_WINDOW_SECONDS`` so that it is still creating when the test kills its Celery worker;
Airflow retries it, and the retry re-attaches to what the first try created (task state store).
"""

from __future__ import annotations

from datetime import timedelta

from airflow.sdk import DAG, Param

from airflow_provider_kontext.operators.batch import KontextBatchGenerateOperator
from airflow_provider_kontext.operators.generate import KontextGenerateOperator
from airflow_provider_kontext.sensors.task import KontextTaskSensor

SLOW_MARKER = "[emulator:slow={{ params.slow_seconds }}]"
GENERATE_IMAGES = 2
BATCH_IMAGES = 2
#: The worker-kill batch: creates go out 0, 1, 2 windows apart.
WORKER_KILL_IMAGES = 3
RATE_WINDOW_SECONDS = 10.0  # test_distributed.py: WORKER_KILL_WINDOW

with DAG(
    dag_id="kontext_e2e_distributed_failover",
    schedule=None,
    catchup=False,
    tags=["kontext", "e2e"],
    params={"slow_seconds": Param(40, type="number", minimum=0)},
    default_args={"retries": 0},
    doc_md=__doc__,
):
    KontextGenerateOperator.partial(
        task_id="generate",
        aspect_ratio="1:1",
        output_format="png",
        deferrable=True,
        poll_interval=2,
        timeout=10 * 60,
    ).expand(prompt=[f"Distributed test, image {n} {SLOW_MARKER}" for n in range(GENERATE_IMAGES)])
    KontextBatchGenerateOperator(
        task_id="batch",
        requests=[{"prompt": f"Distributed test, batch image {n} {SLOW_MARKER}"} for n in range(BATCH_IMAGES)],
        deferrable=True,
        poll_interval=2,
        timeout=10 * 60,
    )
    submit = KontextGenerateOperator(
        task_id="submit",
        prompt=f"Distributed test, sensed image {SLOW_MARKER}",
        wait_for_completion=False,
    )
    KontextTaskSensor(
        task_id="sensor",
        kie_task_ids=submit.output,
        deferrable=True,
        poll_interval=2,
        timeout=10 * 60,
    )

with DAG(
    dag_id="kontext_e2e_distributed_worker_kill",
    schedule=None,
    catchup=False,
    tags=["kontext", "e2e"],
    params={"slow_seconds": Param(5, type="number", minimum=0)},
    default_args={"retries": 2, "retry_delay": timedelta(seconds=0)},
    doc_md=__doc__,
):
    KontextBatchGenerateOperator(
        task_id="batch",
        requests=[{"prompt": f"Worker kill test, image {n} {SLOW_MARKER}"} for n in range(WORKER_KILL_IMAGES)],
        max_creates_per_window=1,
        rate_window_seconds=RATE_WINDOW_SECONDS,
        deferrable=True,
        poll_interval=2,
        timeout=10 * 60,
    )
