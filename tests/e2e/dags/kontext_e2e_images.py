"""Every kind of Kontext task in one run, for the images view's browser test.

* ``batch``: a batch with stored copies (``output_path``) that keeps going past a refused image
  (content policy) and one kie could not create upstream, so the view shows typed errors;
* ``mapped``: a mapped generate (two map indexes), shown from kie's URLs (nothing stored);
* ``create`` + ``wait``: a create that does not wait, and the sensor that collects its image.

Everything waits on the worker (``deferrable=False``): the view reads XCom, however the task
waited, and Airflow 3.3.2 fails a deferred task whose short deferral races the worker's exit
report on a loaded machine (apache/airflow#67287; see ``test_real_airflow.py``). Retries cover
a worker that could not reach the execution API in time on a loaded machine; on Airflow 3.3 a
retry re-attaches to the kie tasks already created instead of paying again.
"""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

from airflow.sdk import DAG

from airflow_provider_kontext.operators.batch import KontextBatchGenerateOperator
from airflow_provider_kontext.operators.generate import KontextGenerateOperator
from airflow_provider_kontext.sensors.task import KontextTaskSensor

OUTPUT = Path(os.environ.get("KONTEXT_OUTPUT_DIR", "/tmp/kontext-images")).resolve() / "e2e-images"

with DAG(
    dag_id="kontext_e2e_images",
    schedule=None,
    catchup=False,
    tags=["kontext", "e2e"],
    default_args={"retries": 2, "retry_delay": timedelta(seconds=3)},
) as dag:
    KontextBatchGenerateOperator(
        task_id="batch",
        requests=[
            {"prompt": "A lighthouse on a cliff at dusk, oil painting", "aspect_ratio": "16:9"},
            {"prompt": "A red fox in fresh snow, wildlife photo", "aspect_ratio": "1:1", "output_format": "png"},
            {"prompt": "Something the moderation refuses [emulator:content_policy]", "aspect_ratio": "1:1"},
            {"prompt": "A task kie cannot create [emulator:create_failed]", "aspect_ratio": "3:4"},
        ],
        output_path=f"file://{OUTPUT}",
        fail_on_any_failure=False,
        deferrable=False,
        poll_interval=2,
    )
    KontextGenerateOperator.partial(
        task_id="mapped", aspect_ratio="9:16", model="flux-kontext-max", deferrable=False, poll_interval=2
    ).expand(prompt=["A paper boat on a puddle, macro", "A neon street in the rain, cinematic"])
    created = KontextGenerateOperator(
        task_id="create", prompt="A bowl of ramen, top-down food photo", aspect_ratio="4:3", wait_for_completion=False
    )
    KontextTaskSensor(task_id="wait", kie_task_ids=created.output, deferrable=False, poll_interval=2)
