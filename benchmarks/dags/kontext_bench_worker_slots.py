"""
The two DAGs ``bench_6_worker_slots`` compares: N mapped generations, identical but for ``deferrable``.

``KONTEXT_BENCH_SLOT_TASKS`` (set by the benchmark in every component's environment, so the
dag-processor and the workers agree) is N. The emulator's fixed generation time makes each
image take as long in both DAGs; only where the wait happens differs.
"""

from __future__ import annotations

import os

from airflow.sdk import DAG

from airflow_provider_kontext.operators.generate import KontextGenerateOperator

TASKS = int(os.environ.get("KONTEXT_BENCH_SLOT_TASKS", "20"))
POLL_INTERVAL = 2.0

for mode, deferrable in (("deferrable", True), ("blocking", False)):
    with DAG(
        dag_id=f"kontext_bench_slots_{mode}",
        schedule=None,
        catchup=False,
        max_active_tasks=TASKS,  # all generations at once (the per-DAG default is 16)
        tags=["kontext", "benchmark"],
        doc_md=__doc__,
    ) as dag:
        KontextGenerateOperator.partial(
            task_id="generate",
            aspect_ratio="1:1",
            output_format="jpeg",
            deferrable=deferrable,
            poll_interval=POLL_INTERVAL,
            timeout=15 * 60,
        ).expand(prompt=[f"Worker-slot benchmark, image {n}" for n in range(TASKS)])
    globals()[dag.dag_id] = dag
