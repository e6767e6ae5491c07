"""
TaskFlow authoring with ``@task.kontext`` and ``@task.kontext_batch``.

* ``@task.kontext``: the function returns the prompt; the decorator's arguments are
  ``KontextGenerateOperator``'s other arguments. ``.expand()`` maps it over products, one image
  per mapped task instance, each stored under ``output_path`` as soon as it is ready.
* A function may return the whole request instead: here an edit of the hero shot, with the shot's
  image as ``input_image``.
* ``@task.kontext_batch``: the function returns a list of prompts or request dicts; one task
  instance and one trigger for all of them.

Each task returns the same result dict as the operators (``kie_task_id``, ``result_image_url``,
``stored_path``, ...). Returned prompts are sent as they are, never rendered as Jinja.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from airflow.sdk import DAG, task

OUTPUT_ROOT = Path(os.environ.get("KONTEXT_OUTPUT_DIR", "/tmp/kontext-images")).resolve()
PRODUCTS = ["ceramic mug", "desk lamp", "copper kettle"]

with DAG(
    dag_id="example_kontext_taskflow",
    schedule=None,
    catchup=False,
    tags=["example", "kontext"],
    doc_md=__doc__,
) as dag:

    @task.kontext(
        aspect_ratio="1:1",
        output_format="png",
        output_path=f"file://{OUTPUT_ROOT}/taskflow/shots",
        deferrable=True,
        poll_interval=3,
    )
    def product_shot(product: str) -> str:
        """One studio shot per product."""
        return f"Studio photo of a {product} on a white background, soft shadow"

    @task.kontext(deferrable=True, poll_interval=3)
    def lifestyle_scene(shot: dict[str, Any]) -> dict[str, Any]:
        """Edit a generated shot into a scene: the function returns the whole request."""
        return {
            "prompt": "Place this product on a sunlit kitchen table, keep the product unchanged",
            "input_image": shot["result_image_url"],
            "aspect_ratio": "4:3",
            "safety_tolerance": 2,
        }

    @task.kontext_batch(output_path=f"file://{OUTPUT_ROOT}/taskflow/banners", deferrable=True, poll_interval=3)
    def sale_banners(products: list[str]) -> list[dict[str, Any]]:
        """Every banner in one task: a batch is one task instance and one trigger."""
        return [{"prompt": f"Wide web banner for a {product} sale, flat illustration"} for product in products]

    product_shot.expand(product=PRODUCTS)
    hero = product_shot.override(task_id="hero_shot")("espresso machine")
    lifestyle_scene(hero)
    sale_banners(PRODUCTS)
