"""
Two images, each waited for by its own trigger: the DAG the triggerer ``kill -9`` e2e test runs.

The generation time comes from the run's ``slow_seconds`` param through the emulator's
``[emulator:slow=N]`` prompt marker, so the test decides how long the deferral lasts. No
download step: the test checks the result XComs, and every extra task costs ~5 s of worker.
"""

from __future__ import annotations

from airflow.sdk import DAG, Param

from airflow_provider_kontext.operators.generate import KontextGenerateOperator

IMAGES = 2
#: Rendered per run: the emulator reads the generation time from the prompt.
SLOW_MARKER = "[emulator:slow={{ params.slow_seconds }}]"

with DAG(
    dag_id="kontext_e2e_triggerer_kill",
    schedule=None,
    catchup=False,
    tags=["kontext", "e2e"],
    params={"slow_seconds": Param(30, type="number", minimum=0)},
    doc_md=__doc__,
) as dag:
    KontextGenerateOperator.partial(
        task_id="generate",
        aspect_ratio="1:1",
        output_format="png",
        deferrable=True,
        poll_interval=2,
        timeout=10 * 60,
    ).expand(prompt=[f"Triggerer kill test, image {n} {SLOW_MARKER}" for n in range(IMAGES)])
