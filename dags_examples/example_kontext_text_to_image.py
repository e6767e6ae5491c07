"""
Text-to-image in one step: generate a product shot, then copy it somewhere durable.

``KontextGenerateOperator`` creates the kie task on the worker, waits in the triggerer
(``deferrable=True``) and returns a small dict with ``result_image_url``. kie deletes results
after 14 days, so the second task downloads the image into ``KONTEXT_OUTPUT_DIR``.
"""

from __future__ import annotations

from airflow.sdk import DAG, Param
from kontext_example_tasks import save_image

from airflow_provider_kontext.operators.generate import KontextGenerateOperator

with DAG(
    dag_id="example_kontext_text_to_image",
    schedule=None,
    catchup=False,
    tags=["example", "kontext"],
    params={"prompt": Param("A ceramic coffee mug on a walnut desk, soft morning light", type="string")},
    doc_md=__doc__,
) as dag:
    generate = KontextGenerateOperator(
        task_id="generate",
        prompt="{{ params.prompt }}",
        aspect_ratio="16:9",
        output_format="png",
        model="flux-kontext-pro",
        deferrable=True,
        poll_interval=3,
        timeout=15 * 60,
    )
    save_image(generate.output)
