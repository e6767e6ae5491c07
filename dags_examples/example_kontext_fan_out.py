"""
Fan out over a list of prompts with dynamic task mapping: one mapped task instance per image.

Each mapped instance creates one kie task and waits for it in the triggerer, so the worker
slots are free while images render. (For hundreds of images, one batch task on one trigger is
cheaper for the scheduler; this shows the Airflow-native way.)
"""

from __future__ import annotations

from airflow.sdk import DAG
from kontext_example_tasks import save_image

from airflow_provider_kontext.operators.generate import KontextGenerateOperator

PROMPTS = [
    "Thumbnail: a mountain lake at sunrise, flat illustration",
    "Thumbnail: a city skyline at night, flat illustration",
    "Thumbnail: a desert road under stars, flat illustration",
]

with DAG(
    dag_id="example_kontext_fan_out",
    schedule=None,
    catchup=False,
    tags=["example", "kontext"],
    doc_md=__doc__,
) as dag:
    generate = KontextGenerateOperator.partial(
        task_id="generate",
        aspect_ratio="1:1",
        output_format="jpeg",
        deferrable=True,
        poll_interval=3,
    ).expand(prompt=PROMPTS)
    save_image.expand(result=generate.output)
