"""
A daily content pipeline: product shots from a prompt file, stored before kie deletes them,
the best ones re-staged by editing the stored files, and Asset events for downstream DAGs.

* ``KontextBatchGenerateOperator`` turns every prompt into one image in a single task instance
  (one trigger for the whole batch; creates paced to kie's 20 per 10 s).
* ``output_path`` copies each image to storage on the worker as soon as it is ready (kie keeps
  results 14 days). Any ``ObjectStoragePath`` URI works: ``s3://aws_default@bucket/prefix`` in
  production, a local ``file://`` folder here.
* The edits take the *stored* files as ``input_image``: the provider uploads them through kie's
  File Upload API and edits the uploaded copy.
* ``outlets`` emit Asset events that carry the stored paths, so a publishing DAG can be
  scheduled on them.
* ``min_credits`` refuses to start a day's batch the account cannot pay for.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from airflow.sdk import DAG, Asset, task

from airflow_provider_kontext.operators.batch import KontextBatchGenerateOperator

PROMPTS_FILE = Path(__file__).resolve().parent / "data" / "content_pipeline_prompts.txt"
OUTPUT_ROOT = Path(os.environ.get("KONTEXT_OUTPUT_DIR", "/tmp/kontext-images")).resolve()
PRODUCT_SHOTS = Asset(f"file://{OUTPUT_ROOT}/content-pipeline/product-shots")
STAGED_SHOTS = Asset(f"file://{OUTPUT_ROOT}/content-pipeline/staged-shots")

with DAG(
    dag_id="example_kontext_content_pipeline",
    schedule="@daily",
    catchup=False,
    tags=["example", "kontext"],
    doc_md=__doc__,
) as dag:

    @task
    def read_prompts() -> list[dict[str, Any]]:
        """One generate request per non-comment line of the prompt file."""
        lines = PROMPTS_FILE.read_text(encoding="utf-8").splitlines()
        prompts = [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
        return [{"prompt": prompt, "aspect_ratio": "1:1", "output_format": "png"} for prompt in prompts]

    product_shots = KontextBatchGenerateOperator(
        task_id="product_shots",
        requests=read_prompts(),
        output_path=str(PRODUCT_SHOTS.uri),
        output_file_name="{run_id}/{index:02d}-{kie_task_id}.{ext}",
        min_credits=50,
        deferrable=True,
        poll_interval=5,
        outlets=[PRODUCT_SHOTS],
    )

    @task
    def stage_best(results: list[dict[str, Any]], count: int = 2) -> list[dict[str, Any]]:
        """Edit the first ``count`` stored shots into a lifestyle scene."""
        return [
            {
                "prompt": "Place this product on a sunlit marble kitchen counter, keep the product unchanged",
                "input_image": result["stored_path"],
                "safety_tolerance": 2,
            }
            for result in results[:count]
        ]

    KontextBatchGenerateOperator(
        task_id="staged_shots",
        requests=stage_best(product_shots.output),
        output_path=str(STAGED_SHOTS.uri),
        output_file_name="{run_id}/{index:02d}-{kie_task_id}.{ext}",
        deferrable=True,
        poll_interval=5,
        outlets=[STAGED_SHOTS],
    )
