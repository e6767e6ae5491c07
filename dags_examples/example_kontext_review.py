"""
Three variants of a hero image, a person picks one, and only that one is published.

* ``KontextBatchGenerateOperator`` makes three variants in one task instance. Nothing is stored
  yet: kie keeps the results 14 days, more than a review needs.
* ``KontextReviewOperator`` (Airflow's human-in-the-loop, 3.1+) shows the three images in the
  "Required actions" form of the Airflow UI; the reviewer picks one or "None of these". It
  returns only the chosen result, so a rejected image never reaches the next task.
* ``publish`` maps over what was approved: one copy per approved image (none at all when the
  reviewer took none). A review nobody answers within a day fails, as Airflow's HITL operators
  do without ``defaults``.
"""

from __future__ import annotations

from datetime import timedelta

from airflow.sdk import DAG
from kontext_example_tasks import save_image

from airflow_provider_kontext.operators.batch import KontextBatchGenerateOperator
from airflow_provider_kontext.operators.review import KontextReviewOperator

BRIEF = "Hero image for a spring tea collection: a glass teapot with blossoms, soft daylight"
STYLES = ("flat illustration", "studio photograph", "watercolour")

with DAG(
    dag_id="example_kontext_review",
    schedule=None,
    catchup=False,
    tags=["example", "kontext"],
    doc_md=__doc__,
) as dag:
    variants = KontextBatchGenerateOperator(
        task_id="generate_variants",
        # The brief can be given per run (dag_run.conf["brief"]); each variant adds a style.
        requests=[
            {"prompt": f"{{{{ dag_run.conf.get('brief', '{BRIEF}') }}}}, {style}", "aspect_ratio": "4:3"}
            for style in STYLES
        ],
        deferrable=True,
        poll_interval=3,
    )
    review = KontextReviewOperator(
        task_id="review",
        results=variants.output,
        choose="one",
        subject="Pick the hero image for the spring tea collection",
        body="Look for a legible teapot and no text in the picture.",
        response_timeout=timedelta(days=1),
    )
    save_image.override(task_id="publish").expand(result=review.output)
