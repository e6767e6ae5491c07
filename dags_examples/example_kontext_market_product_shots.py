"""
Product shots with FLUX.2 pro, a person picks the best, Topaz upscales it, Recraft cuts it out.

Every step is a kie Market model behind the same operators as Flux Kontext: ``model`` plus that
model's own ``input``, checked against the provider's catalog before anything is sent.

* ``KontextBatchGenerateOperator`` asks FLUX.2 pro for three angles of the product in one task
  instance. ``max_credits`` prices the batch from the catalog first: a batch that could cost more
  fails before its first create.
* ``KontextReviewOperator`` (Airflow's human-in-the-loop, 3.1+) shows the three shots in the
  "Required actions" form; the reviewer picks one or "None of these". Airflow 3.0 has no
  human-in-the-loop, so there the first shot goes on unreviewed.
* The approved shot is upscaled 2x with Topaz and its background removed with Recraft; both map
  over what was approved, so a rejection ends the run without spending more. The cut-out is
  stored under ``output_path`` (kie deletes results after 14 days): in production an
  ``s3://aws_default@bucket/prefix``, a local folder here.
* ``report_spend`` prints what the run cost: the credits kie reported for each task, or the
  catalog's price, marked as an estimate, where kie reported none.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from datetime import timedelta
from pathlib import Path
from typing import Any

from airflow.sdk import DAG, task

from airflow_provider_kontext.exceptions import KontextAirflowVersionError
from airflow_provider_kontext.operators.batch import KontextBatchGenerateOperator
from airflow_provider_kontext.operators.generate import KontextGenerateOperator
from airflow_provider_kontext.operators.review import KontextReviewOperator

PRODUCT = "a matte black insulated water bottle with a bamboo lid"
ANGLES = ("front view", "three-quarter view from above", "on its side with the lid off")
OUTPUT_ROOT = Path(os.environ.get("KONTEXT_OUTPUT_DIR", "/tmp/kontext-images")).resolve()

with DAG(
    dag_id="example_kontext_market_product_shots",
    schedule=None,
    catchup=False,
    tags=["example", "kontext", "market"],
    doc_md=__doc__,
) as dag:
    shots = KontextBatchGenerateOperator(
        task_id="product_shots",
        requests=[
            {
                "model": "flux-2/pro-text-to-image",
                "input": {
                    "prompt": f"Studio product photo of {PRODUCT}, {angle}, seamless light grey backdrop",
                    "aspect_ratio": "1:1",
                    "resolution": "1K",
                },
            }
            for angle in ANGLES
        ],
        max_credits=20,  # 3 x 5 credits at 1K; 2K would be 21 and fail before sending anything
        deferrable=True,
        poll_interval=5,
    )

    try:
        approved = KontextReviewOperator(
            task_id="pick_best",
            results=shots.output,
            choose="one",
            subject="Pick the product shot to publish",
            body="It gets upscaled and cut out. Look for a sharp lid and no text on the bottle.",
            response_timeout=timedelta(days=1),
        ).output
    except KontextAirflowVersionError:  # Airflow 3.0: no human-in-the-loop operators

        @task
        def pick_first(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
            return results[:1]

        approved = pick_first(shots.output)

    @task
    def upscale_input(result: dict[str, Any]) -> dict[str, Any]:
        return {"image_url": result["result_image_url"], "upscale_factor": "2"}

    @task
    def cutout_input(result: dict[str, Any]) -> dict[str, Any]:
        return {"image": result["result_image_url"]}

    upscaled = KontextGenerateOperator.partial(
        task_id="upscale", model="topaz/image-upscale", max_credits=10, deferrable=True, poll_interval=5
    ).expand(input=upscale_input.expand(result=approved))

    cutouts = KontextGenerateOperator.partial(
        task_id="remove_background",
        model="recraft/remove-background",
        output_path=f"file://{OUTPUT_ROOT}/market-product-shots",
        output_file_name="{run_id}/{kie_task_id}.{ext}",
        deferrable=True,
        poll_interval=5,
    ).expand(input=cutout_input.expand(result=upscaled.output))

    @task(trigger_rule="none_failed")
    def report_spend(*stages: Iterable[dict[str, Any]] | None) -> dict[str, Any]:
        """Sum the credits of every kie task of the run; stages that never ran (rejected) add nothing."""
        results = [result for stage in stages for result in (stage or [])]
        total = round(sum(result.get("credits") or 0 for result in results), 6)
        estimated = any(result.get("credits_estimated") for result in results)
        stored = [
            path for result in results for path in result.get("stored_paths") or [result.get("stored_path")] if path
        ]
        print(
            f"Spent {total:g} credits{' (partly estimated)' if estimated else ''} on {len(results)} kie tasks; "
            f"published: {', '.join(stored) or 'nothing (no shot approved)'}"
        )
        return {"credits": total, "estimated": estimated, "kie_tasks": len(results), "published": stored}

    report_spend(shots.output, upscaled.output, cutouts.output)
