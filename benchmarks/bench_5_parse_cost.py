"""DAG parse cost: what a DAG file that uses the provider pays over the same DAG without it.

The DAG processor re-parses every DAG file every ``min_file_process_interval``, so whatever the
provider's operator and sensor modules do at import time is paid again and again by every DAG
that uses them, even when no task runs. Two DAG files with the same shape (one text-to-image
task, one batch, one sensor) are parsed, each in many fresh interpreters, alternating. Each
interpreter first imports ``airflow.sdk`` and ``EmptyOperator`` (which both DAGs pay, and which
dominates), then times executing the DAG file alone: the provider's share is the difference of
the two medians. CPU time is the figure (two shared cores make wall time noisy); wall is context.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from benchmarks.common import Figure, bench_main

#: The issue's budget for the provider's share of a DAG file's parse.
BUDGET_MS = 20.0

KONTEXT_DAG = """
from airflow.sdk import DAG
from airflow_provider_kontext.operators.batch import KontextBatchGenerateOperator
from airflow_provider_kontext.operators.generate import KontextGenerateOperator
from airflow_provider_kontext.sensors.task import KontextTaskSensor

with DAG(dag_id="bench_parse_kontext", schedule=None):
    one = KontextGenerateOperator(task_id="one", prompt="a red fox in the snow")
    many = KontextBatchGenerateOperator(
        task_id="many", requests=[{"prompt": f"a fox, variation {i}"} for i in range(10)]
    )
    wait = KontextTaskSensor(task_id="wait", kie_task_ids="{{ ti.xcom_pull('one') }}")
    one >> many >> wait
"""

PLAIN_DAG = """
from airflow.sdk import DAG
from airflow.providers.standard.operators.empty import EmptyOperator

with DAG(dag_id="bench_parse_plain", schedule=None):
    one = EmptyOperator(task_id="one")
    many = EmptyOperator(task_id="many")
    wait = EmptyOperator(task_id="wait")
    one >> many >> wait
"""

#: Runs in each fresh interpreter: the shared baseline first, then the DAG file, timed.
PROBE = """
import json, runpy, sys, time
import airflow.sdk
from airflow.providers.standard.operators.empty import EmptyOperator
before = set(sys.modules)
cpu0, wall0 = time.process_time(), time.perf_counter()
runpy.run_path(sys.argv[1])
cpu1, wall1 = time.process_time(), time.perf_counter()
new = {m.split(".")[0] for m in set(sys.modules) - before}
heavy = sorted(new & {"requests", "tenacity", "aiohttp", "PIL", "fsspec", "urllib3", "yarl", "multidict"})
print(json.dumps({"cpu_ms": (cpu1 - cpu0) * 1000, "wall_ms": (wall1 - wall0) * 1000, "heavy": heavy}))
"""


def parse_once(dag_file: Path) -> dict[str, object]:
    """Parse ``dag_file`` in a fresh interpreter; its CPU and wall milliseconds, heavy modules seen."""
    env = {**os.environ, "AIRFLOW__CORE__LOAD_EXAMPLES": "False"}
    out = subprocess.run(
        [sys.executable, "-c", PROBE, str(dag_file)], capture_output=True, text=True, check=True, env=env
    )
    result: dict[str, object] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def run(quick: bool) -> list[Figure]:
    runs = 5 if quick else 15
    with tempfile.TemporaryDirectory(prefix="kontext-parse-") as tmp:
        kontext_file, plain_file = Path(tmp) / "kontext_dag.py", Path(tmp) / "plain_dag.py"
        kontext_file.write_text(KONTEXT_DAG, encoding="utf-8")
        plain_file.write_text(PLAIN_DAG, encoding="utf-8")
        parse_once(plain_file)  # warm the page cache and the .pyc files of both
        parse_once(kontext_file)
        kontext: list[dict[str, object]] = []
        plain: list[dict[str, object]] = []
        for _ in range(runs):  # alternating, so a load spike hits both sides alike
            kontext.append(parse_once(kontext_file))
            plain.append(parse_once(plain_file))

    def median(samples: list[dict[str, object]], key: str) -> float:
        return statistics.median(float(str(sample[key])) for sample in samples)

    extra_cpu = median(kontext, "cpu_ms") - median(plain, "cpu_ms")
    extra_wall = median(kontext, "wall_ms") - median(plain, "wall_ms")
    heavy = sorted({str(m) for sample in kontext for m in sample["heavy"]})  # type: ignore[attr-defined]
    return [
        Figure(
            benchmark="5 parse cost",
            metric="extra CPU to parse a DAG using the operators",
            ours=round(extra_cpu, 2),
            reference="budget",
            reference_value=BUDGET_MS,
            ratio=round(extra_cpu / BUDGET_MS, 3),
            goal="<= 1 (+20 ms)",
            passed=extra_cpu <= BUDGET_MS,
            unit="ms",
            note=(
                f"median of {runs} fresh interpreters each; plain DAG {median(plain, 'cpu_ms'):.1f} ms, "
                f"kontext DAG {median(kontext, 'cpu_ms'):.1f} ms CPU; wall delta {extra_wall:.1f} ms; "
                f"heavy modules newly imported: {', '.join(heavy) or 'none'}"
            ),
        )
    ]


if __name__ == "__main__":
    bench_main(run)
