"""
A deferrable Market task in a real deployment: FLUX.2 pro, two images from Wan, stored on disk.

The generation time comes from the emulator's ``[emulator:slow=N]`` prompt marker, long enough for
the wait to happen in the triggerer.
"""

from __future__ import annotations

import os

from airflow.sdk import DAG

from airflow_provider_kontext.operators.batch import KontextBatchGenerateOperator
from airflow_provider_kontext.operators.generate import KontextGenerateOperator

SLOW = "[emulator:slow=15]"

with DAG(dag_id="kontext_e2e_market", schedule=None, catchup=False, tags=["kontext", "e2e"], doc_md=__doc__) as dag:
    KontextGenerateOperator(
        task_id="flux_2",
        model="flux-2/pro-text-to-image",
        input={"prompt": f"A ceramic mug on a walnut desk {SLOW}", "aspect_ratio": "1:1", "resolution": "1K"},
        max_credits=10,
        deferrable=True,
        poll_interval=2,
    )
    KontextBatchGenerateOperator(
        task_id="variants",
        requests=[
            {"model": "wan/2-7-image", "input": {"prompt": f"Two kites over a beach {SLOW}", "n": 2}},
            {"model": "z-image", "input": {"prompt": f"A paper lantern {SLOW}", "aspect_ratio": "1:1"}},
        ],
        output_path=f"file://{os.environ.get('KONTEXT_OUTPUT_DIR', '/tmp')}/market",
        deferrable=True,
        poll_interval=2,
    )
