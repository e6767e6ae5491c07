"""Submission: how close a batch's creates get to kie's rate limit without a single 429.

kie drops (does not queue) creates beyond 20 per 10 s per account, so the batch operator paces
itself with :class:`~airflow_provider_kontext._protocol.ratelimit.CreateRateLimiter`. Too timid
and a 200-image batch takes needlessly long; too eager and creates are rejected and resent.
The real operator (``wait_for_completion=False``, so only submission is timed) creates ``N``
tasks against the emulator enforcing the same limit as a true sliding window. Each task's
creation time is read back from the emulator, so the span is the server's view.

Achieved rate: a sliding window of ``L`` per ``W`` lets the first ``L`` creates go at once
and every further ``L`` only ``W`` later, so ``(N - L) / (last - first)`` is at most ``L / W``;
its ratio to ``L / W`` is the figure (1.0 is perfect pacing, whatever the burst shape).
"""

from __future__ import annotations

import json
import os
import urllib.request
from typing import Any

from benchmarks.common import API_KEY, Figure, bench_main, emulator_process
from reliability.fake_airflow import FakeTaskInstance, task_context

LIMIT = 20  # kie's documented default, on both sides
WINDOW = 10.0


def _get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


def run(quick: bool) -> list[Figure]:
    creates = 60 if quick else 200
    with emulator_process(
        "--rate-limit-creates", str(LIMIT), "--rate-limit-window", str(WINDOW),
        "--credits", "100000", "--generation-seconds", "30",
    ) as base_url:  # fmt: skip
        os.environ["AIRFLOW_CONN_KONTEXT_DEFAULT"] = json.dumps(
            {"conn_type": "kontext", "host": base_url, "password": API_KEY, "extra": {"upload_base_url": base_url}}
        )
        from airflow_provider_kontext.operators.batch import KontextBatchGenerateOperator

        operator = KontextBatchGenerateOperator(
            task_id="batch",
            requests=[{"prompt": f"a lighthouse at dusk, variation {i}"} for i in range(creates)],
            wait_for_completion=False,
            max_creates_per_window=LIMIT,
            rate_window_seconds=WINDOW,
        )
        ids = operator.execute(task_context(FakeTaskInstance(dag_id="bench", run_id="bench_run", task_id="batch")))
        stats = _get(f"{base_url}/_emulator/stats")
        created_at = sorted(float(_get(f"{base_url}/_emulator/tasks/{task_id}")["createdAt"]) for task_id in ids)
    span = created_at[-1] - created_at[0]
    achieved = (len(created_at) - LIMIT) / span if span > 0 else 0.0
    limit_rate = LIMIT / WINDOW
    rejected = int(stats["creates_rejected_rate_limit"])
    ratio = achieved / limit_rate
    return [
        Figure(
            benchmark="4 submission",
            metric=f"{creates} creates: achieved rate / limit",
            ours=round(achieved, 4),
            reference=f"limit {LIMIT} per {WINDOW:g} s",
            reference_value=limit_rate,
            ratio=round(ratio, 4),
            goal=">= 0.9",
            passed=ratio >= 0.9 and rejected == 0,
            unit="creates/s",
            note=f"span {span:.2f} s (server create times); {len(ids)} ids",
        ),
        Figure(
            benchmark="4 submission",
            metric="creates rejected with 429",
            ours=float(rejected),
            reference="none allowed",
            reference_value=0.0,
            ratio=float(rejected),
            goal="== 0",
            passed=rejected == 0 and int(stats["creates_accepted"]) == creates,
            note=f"accepted {stats['creates_accepted']} of {creates}",
        ),
    ]


if __name__ == "__main__":
    bench_main(run)
