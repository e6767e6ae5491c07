"""
Two deferred generations that differ only in ``output_path``: the end-from-trigger e2e test's DAG.

Without ``output_path`` the worker has nothing left to do once the image is ready, so the trigger
ends the task (one worker start); with it the task resumes on a worker to store the file (two).
The generation time comes from the emulator's ``[emulator:slow=N]`` prompt marker.
"""

from __future__ import annotations

import os

from airflow.sdk import DAG, Param

from airflow_provider_kontext.operators.generate import KontextGenerateOperator

with DAG(
    dag_id="kontext_e2e_trigger_end",
    schedule=None,
    catchup=False,
    tags=["kontext", "e2e"],
    params={"prompt": Param("A paper lantern [emulator:slow=15]", type="string")},
    doc_md=__doc__,
) as dag:
    common = {"prompt": "{{ params.prompt }}", "output_format": "png", "deferrable": True, "poll_interval": 2}
    KontextGenerateOperator(task_id="in_triggerer", **common)
    KontextGenerateOperator(
        task_id="stored",
        output_path=f"file://{os.environ.get('KONTEXT_OUTPUT_DIR', '/tmp')}/trigger_end",
        **common,
    )
