"""Tasks the example DAGs share (kept out of the DAG files so each shows only its own idea)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from airflow.sdk import task

from airflow_provider_kontext.hooks.kontext import KontextHook


def output_dir(run_id: str) -> Path:
    """Where the examples write images: ``$KONTEXT_OUTPUT_DIR/<run id>`` (default ``./kontext-images``)."""
    return Path(os.environ.get("KONTEXT_OUTPUT_DIR", "kontext-images")) / run_id.replace(":", "_").replace("+", "_")


@task
def save_image(result: dict[str, Any], **context: Any) -> str:
    """Stream one result image to local disk and return its path; kie keeps results only 14 days."""
    directory = output_dir(context["run_id"])
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{result['kie_task_id']}.{result.get('output_format') or 'jpeg'}"
    with path.open("wb") as handle:
        KontextHook().download_image(result["result_image_url"], handle)
    print(f"Saved image: {path.resolve()}")
    return str(path.resolve())
