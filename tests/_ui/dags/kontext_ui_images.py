"""The run the images app is tested on (tests/_ui/test_app.py links this file into the DAG folder).

* ``market``: a Market model returning three images, each stored: one item, three pictures;
* ``kontext``: a Flux Kontext task, not stored, its credits the catalog's estimate;
* ``legacy``: the result dict a Kontext task returned before the Market existed (no ``api``, no
  ``result_image_urls``, no ``credits``), with a stored copy, as an old run's XCom still holds it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from airflow.sdk import DAG, task

from airflow_provider_kontext.operators.generate import KontextGenerateOperator

#: Set by the test before the run; the folder every stored copy of the run goes to.
OUTPUT_ENV = "KONTEXT_UI_TEST_OUTPUT"
MARKET_MODEL = "bytedance/seedream-v4-text-to-image"
#: Enough of a PNG for the app, which reads the signature.
PNG = b"\x89PNG\r\n\x1a\n" + b"legacy" * 8

with DAG(dag_id="kontext_ui_images", schedule=None) as dag:
    KontextGenerateOperator(
        task_id="market",
        model=MARKET_MODEL,
        input={"prompt": "three kites over the sea", "max_images": 3},
        output_path=os.environ.get(OUTPUT_ENV),
        deferrable=False,
        poll_interval=0.1,
    )
    KontextGenerateOperator(task_id="kontext", prompt="a red kite", deferrable=False, poll_interval=0.1)

    @task
    def legacy() -> dict[str, Any]:
        stored = Path(os.environ[OUTPUT_ENV]) / "legacy.png"
        stored.write_bytes(PNG)
        return {
            "kie_task_id": "kie-legacy-1",
            "status": "SUCCESS",
            "result_image_url": "https://tempfile.example/legacy.png",
            "origin_image_url": None,
            "error_code": None,
            "error_message": None,
            "create_time": None,
            "complete_time": None,
            "prompt": "a kite from an older release",
            "model": "flux-kontext-pro",
            "aspect_ratio": "1:1",
            "output_format": "png",
            "input_image": None,
            "stored_path": f"file://{stored}",
        }

    legacy()
