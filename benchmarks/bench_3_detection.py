"""Detection latency and status calls per image: a fixed poll interval vs the default schedule.

The wait's only job is to notice that a kie task is done, soon and with few status calls. The
real hook loop (``KontextHook.wait_for_tasks`` driving a ``TaskWaiter``, the same decision
object as the trigger and the sensor) waits for a batch of tasks whose generation times are
drawn from a seeded lognormal around a typical Kontext generation through kie (median 20 s,
sigma 0.5: 5th-95th percentile ~9-45 s; kie publishes no figure, third parties report 10-50 s).

Time is compressed by ``SCALE``: generation times, the poll interval (kie-typical 5 s) and the
schedule's quiet period are all multiplied by it, so the run takes well under a minute; every
latency is reported in real-equivalent seconds (measured / ``SCALE``). The round trip to the
local emulator is not scaled, which makes the compressed run slightly pessimistic.

Latency of one image = when the waiter first received its terminal record minus the
emulator's own completion time for that task (``completesAt``, the clock behind
``completeTime``). Calls = ``record-info`` requests the loop made for that task.
"""

from __future__ import annotations

import json
import math
import os
import random
import threading
import time
import urllib.request
from typing import TYPE_CHECKING, Any

from airflow_provider_kontext._protocol.record import ApiFamily
from benchmarks.common import API_KEY, Figure, bench_main, emulator_process, percentile

if TYPE_CHECKING:
    from airflow_provider_kontext._protocol.polling import PollSchedule
    from airflow_provider_kontext._protocol.record import TaskRecord

SCALE = 0.25
MEDIAN_SECONDS = 20.0
SIGMA = 0.5
INTERVAL_SECONDS = 5.0  # the provider's default poll_interval, in real seconds
SLACK_SECONDS = 0.5  # the allowance over one interval
SEED = 6


def generation_times(count: int) -> list[float]:
    """Seeded real-world generation seconds; the same draw for both schedules."""
    rng = random.Random(SEED)
    return [MEDIAN_SECONDS * math.exp(rng.gauss(0.0, SIGMA)) for _ in range(count)]


def _get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


def measure(base_url: str, schedule: PollSchedule, seconds: list[float]) -> tuple[list[float], float]:
    """Create one task per generation time, wait with ``schedule``; real-equivalent latencies, calls per image."""
    from airflow_provider_kontext._protocol.ratelimit import CreatePacer
    from airflow_provider_kontext._protocol.request import GenerateRequest
    from airflow_provider_kontext.hooks.kontext import KontextHook

    calls: dict[str, int] = {}
    seen_at: dict[str, float] = {}
    lock = threading.Lock()

    class CountingHook(KontextHook):
        """The real hook, noting when each task's terminal record arrived and how many checks it took."""

        def get_task(self, kie_task_id: str, *, api: ApiFamily = ApiFamily.KONTEXT, retry: bool = True) -> TaskRecord:
            task_id = kie_task_id
            record = super().get_task(task_id, api=api, retry=retry)
            now = time.time()
            with lock:
                calls[task_id] = calls.get(task_id, 0) + 1
                if record.is_terminal:
                    seen_at.setdefault(task_id, now)
            return record

    hook = CountingHook()
    requests_ = [GenerateRequest.from_fields(f"a harbour at night [emulator:slow={s * SCALE:.3f}]") for s in seconds]
    ids = [outcome.kie_task_id or "" for outcome in hook.submit_each(requests_, pacer=CreatePacer(10_000, 1.0))]
    result = hook.wait_for_tasks(ids, timeout=600, schedule=schedule)
    hook.close()
    assert result.status.value == "success", result.message
    latencies = [(seen_at[i] - float(_get(f"{base_url}/_emulator/tasks/{i}")["completesAt"])) / SCALE for i in ids]
    return latencies, sum(calls.values()) / len(ids)


def run(quick: bool) -> list[Figure]:
    from airflow_provider_kontext._protocol.polling import PollSchedule

    seconds = generation_times(12 if quick else 40)
    interval = INTERVAL_SECONDS * SCALE
    schedules = {
        # The loop before this change: a check at once, then every interval.
        "fixed": PollSchedule(interval=interval, first_delay=0.0),
        # The default now, with its 5 s quiet period compressed like everything else.
        "ours": PollSchedule(interval=interval, min_generation=PollSchedule(INTERVAL_SECONDS).quiet_period * SCALE),
    }
    results: dict[str, tuple[list[float], float]] = {}
    with emulator_process(
        "--rate-limit-creates", "10000", "--credits", "100000", "--record-info-null-seconds", "0",
    ) as base_url:  # fmt: skip
        os.environ["AIRFLOW_CONN_KONTEXT_DEFAULT"] = json.dumps(
            {"conn_type": "kontext", "host": base_url, "password": API_KEY}
        )
        for name, schedule in schedules.items():
            results[name] = measure(base_url, schedule, seconds)
    goal = INTERVAL_SECONDS + SLACK_SECONDS
    figures = []
    for name, (latencies, per_image) in results.items():
        p95 = percentile(latencies, 0.95)
        figures.append(
            Figure(
                benchmark="3 detection",
                metric=f"p95 latency after completion, {name} schedule",
                ours=round(p95, 3),
                reference="poll interval + 0.5 s",
                reference_value=goal,
                ratio=round(p95 / goal, 3),
                goal="<= 1",
                passed=p95 <= goal,
                unit="s (real-equivalent)",
                note=(
                    f"p50 {percentile(latencies, 0.5):.2f} s, {per_image:.2f} calls/image, {len(latencies)} images, "
                    f"time x{SCALE}"
                ),
            )
        )
    ours_calls, fixed_calls = results["ours"][1], results["fixed"][1]
    figures.append(
        Figure(
            benchmark="3 detection",
            metric="status calls per image, ours / fixed interval",
            ours=round(ours_calls, 3),
            reference="fixed interval",
            reference_value=round(fixed_calls, 3),
            ratio=round(ours_calls / fixed_calls, 3),
            goal="< 1",
            passed=ours_calls < fixed_calls,
            unit="calls/image",
        )
    )
    return figures


if __name__ == "__main__":
    bench_main(run)
