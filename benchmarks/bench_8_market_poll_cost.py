"""Market poll cost: CPU per status poll of a Market wait against a Flux Kontext wait, in one run.

Both families are waited on by the same ``KontextTaskTrigger`` (``api="market"`` or the
default) through the same async client; only the status endpoint and its parser differ. A
Market answer is the larger and the costlier to parse (``param`` echoes the create request as a
JSON string, ``resultJson`` is another), so the question is whether a poll pays for that every
time: the client keeps the record it parsed from a task's last answer and reuses it while the
bytes repeat, as they do for a task that is still queued or generating.

The same number of tasks of each family stay unfinished on one emulator process; each family is
then polled by real triggers in its own fresh interpreter (:mod:`benchmarks._pollers`), the
families alternating over the rounds so a load spike on the shared machine hits both. CPU and
polls are counted over a steady window after a warm-up (start-up, the same for both, would
otherwise dilute the difference). The note adds what parsing one answer costs without the reuse.
"""

from __future__ import annotations

import time
import timeit
import urllib.request
from typing import Any

from benchmarks._pollers import EMULATOR_FLAGS, connection_env, create_tasks, run_child
from benchmarks.common import API_KEY, Figure, bench_main, emulator_process

NAME = "8 market poll cost"
#: The issue's limit: a Market wait may cost at most 10 % more CPU per poll than a Kontext wait.
GOAL_RATIO = 1.1
APIS = ("kontext", "market")
STATUS_PATHS = {"kontext": "/api/v1/flux/kontext/record-info", "market": "/api/v1/jobs/recordInfo"}


def _sizes(quick: bool) -> tuple[int, float, float, float, int]:
    """(triggers per family, poll interval s, warm-up s, measured window s, rounds)."""
    return (150, 1.0, 1.5, 3.0, 1) if quick else (400, 1.0, 1.5, 5.0, 2)


def _parse_microseconds(base_url: str, api: str, task_id: str) -> tuple[float, int]:
    """Microseconds to parse one real status answer of ``api`` with the provider's parser, and its size."""
    from airflow_provider_kontext._protocol.envelope import parse_status_response
    from airflow_provider_kontext._protocol.record import ApiFamily

    request = urllib.request.Request(
        f"{base_url}{STATUS_PATHS[api]}?taskId={task_id}", headers={"Authorization": f"Bearer {API_KEY}"}
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        body = response.read()
    family = ApiFamily(api)

    def parse() -> object:
        return parse_status_response(family, 200, body, {}, task_id=task_id)

    parse()
    number = 2000
    return min(timeit.repeat(parse, number=number, repeat=5)) / number * 1e6, len(body)


def run(quick: bool) -> list[Figure]:
    triggers, interval, warmup, seconds, rounds = _sizes(quick)
    runs: dict[str, list[dict[str, Any]]] = {api: [] for api in APIS}
    with emulator_process(*EMULATOR_FLAGS) as base_url:
        ids = {api: create_tasks(base_url, API_KEY, triggers, slow_seconds=3600, api=api) for api in APIS}
        time.sleep(0.2)
        env = connection_env(base_url, API_KEY)
        parse_cost = {api: _parse_microseconds(base_url, api, ids[api][0]) for api in APIS}
        for round_ in range(rounds):
            for api in APIS if round_ % 2 == 0 else reversed(APIS):
                spec = {
                    "base_url": base_url,
                    "api_key": API_KEY,
                    "api": api,
                    "batches": [[task_id] for task_id in ids[api]],
                    "interval": interval,
                    "warmup": warmup,
                    "seconds": seconds,
                }
                runs[api].append(run_child("ours", spec, env))

    # Totals over the rounds: CPU of all a family's polls over their number, not a mean of ratios.
    polls = {api: sum(int(r["steady_polls"]) for r in runs[api]) for api in APIS}
    per_poll = {api: sum(float(r["steady_cpu_seconds"]) for r in runs[api]) / max(1, polls[api]) for api in APIS}
    ratio = per_poll["market"] / per_poll["kontext"]

    def cpu_per_poll(child: dict[str, Any]) -> float:
        return float(child["steady_cpu_seconds"]) / max(1, int(child["steady_polls"]))

    rounds_ratios = ", ".join(
        f"{cpu_per_poll(m) / cpu_per_poll(k):.3f}" for k, m in zip(runs["kontext"], runs["market"], strict=True)
    )
    parsed = ", ".join(f"{api} {us:.0f} us ({size} B)" for api, (us, size) in parse_cost.items())
    note = (
        f"{triggers} triggers per family (one task each, unfinished), poll every {interval:g} s, {seconds:g} s "
        f"measured after {warmup:g} s warm-up, {rounds} round(s) alternating; steady polls: kontext "
        f"{polls['kontext']}, market {polls['market']}; ratio per round: {rounds_ratios}; parsing one answer "
        f"without the repeat reuse: {parsed}"
    )
    return [
        Figure(
            NAME, "CPU per poll, Market wait / Kontext wait", per_poll["market"] * 1e3,
            "Kontext wait (same trigger, same run)", per_poll["kontext"] * 1e3, ratio, f"<= {GOAL_RATIO}",
            ratio <= GOAL_RATIO, "ms", note,
        ),
    ]  # fmt: skip


if __name__ == "__main__":
    bench_main(run)
