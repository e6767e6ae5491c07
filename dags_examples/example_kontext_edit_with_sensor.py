"""
Edit an image in two steps: submit with the operator, wait with a separate sensor.

``wait_for_completion=False`` makes the operator return the kie task id as soon as kie accepted
the edit; ``KontextTaskSensor`` then waits for it in the triggerer and pushes the image URL.
Splitting submit and wait lets the wait be retried or re-run on its own without paying for
another edit. The image to edit is generated first here so the example is self-contained; in a
real pipeline ``input_image`` is any public http(s) URL of an image you already store.
"""

from __future__ import annotations

from airflow.sdk import DAG
from kontext_example_tasks import save_image

from airflow_provider_kontext.operators.generate import KontextGenerateOperator
from airflow_provider_kontext.sensors.task import KontextTaskSensor

with DAG(
    dag_id="example_kontext_edit_with_sensor",
    schedule=None,
    catchup=False,
    tags=["example", "kontext"],
    doc_md=__doc__,
) as dag:
    original = KontextGenerateOperator(
        task_id="original",
        prompt="A white sneaker on a plain grey background, studio lighting",
        aspect_ratio="1:1",
        deferrable=True,
        poll_interval=3,
    )
    submit_edit = KontextGenerateOperator(
        task_id="submit_edit",
        prompt="Make the sneaker bright red and add a soft shadow",
        input_image=original.output["result_image_url"],
        safety_tolerance=2,
        wait_for_completion=False,
    )
    wait_for_edit = KontextTaskSensor(
        task_id="wait_for_edit",
        kie_task_ids=submit_edit.output,
        deferrable=True,
        poll_interval=3,
        timeout=15 * 60,
    )
    save_image.override(task_id="save_original")(original.output)
    save_image.override(task_id="save_edit")(wait_for_edit.output)
