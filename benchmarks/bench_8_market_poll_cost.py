"""Market poll cost: CPU per status poll of a Market wait against a Flux Kontext wait, in one run.

Both families are waited on by the same ``KontextTaskTrigger`` (``api="market"`` or the
default) through the same async client; only the status endpoint and its parser differ. A
Market answer is the larger and the costlier to parse (``param`` echoes the create request as a
JSON string, ``resultJson`` is another), so the question is whether a poll pays for that every
time: the client keeps the record it parsed from a task's last answer and reuses it while the
bytes repeat, as they do for a task that is still queued or generating.

The same number of tasks of each family stay unfinished on one emulator process. Each family is
waited on by real triggers in a fresh interpreter of its own (:mod:`benchmarks._pollers`), and
the two run at the same time, released together from a barrier: on a shared machine the CPU one
poll costs drifts from one minute to the next by more than the limit, so only contenders
measured over the same seconds compare (the README has the figures). The waits start spread
over one interval, as waits begun at different times are in a triggerer. CPU and polls (the
emulator's counters) are taken over a steady window after a warm-up; the figure is the Market
child's CPU per poll over the Kontext child's, over all rounds. The note adds each round's
ratio, and what parsing one answer costs without the reuse.
"""

from __future__ import annotations

import time
import timeit
import urllib.request
from typing import Any

from benchmarks._pollers import EMULATOR_FLAGS, connection_env, create_tasks, run_children
from benchmarks.common import API_KEY, Figure, bench_main, emulator_process

NAME = "8 market poll cost"
#: The issue's limit: a Market wait may cost at most 10 % more CPU per poll than a Kontext wait.
GOAL_RATIO = 1.1
APIS = ("kontext", "market")
STATUS_PATHS = {"kontext": "/api/v1/flux/kontext/record-info", "market": "/api/v1/jobs/recordInfo"}


def _sizes(quick: bool) -> tuple[int, float, float, float, int]:
    """(triggers per family, poll interval s, warm-up s, measured window s, rounds)."""
    return (150, 1.0, 1.5, 3.0, 1) if quick else (400, 1.0, 2.0, 5.0, 2)


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
    children: list[dict[str, dict[str, Any]]] = []
    with emulator_process(*EMULATOR_FLAGS) as base_url:
        ids = {api: create_tasks(base_url, API_KEY, triggers, slow_seconds=3600, api=api) for api in APIS}
        time.sleep(0.2)
        parse_cost = {api: _parse_microseconds(base_url, api, ids[api][0]) for api in APIS}
        env = connection_env(base_url, API_KEY)
        for _ in range(rounds):
            jobs = [
                (
                    "ours",
                    {
                        "base_url": base_url,
                        "api_key": API_KEY,
                        "api": api,
                        "batches": [[task_id] for task_id in ids[api]],
                        "interval": interval,
                        "spread": True,
                        "warmup": warmup,
                        "seconds": seconds,
                    },
                )
                for api in APIS
            ]
            children.append(dict(zip(APIS, run_children(jobs, env), strict=True)))

    def cpu_per_poll(child: dict[str, Any]) -> float:
        return float(child["steady_cpu_seconds"]) / max(1, int(child["steady_polls"]))

    # Totals over the rounds: CPU of all a family's polls over their number, not a mean of ratios.
    polls = {api: sum(int(c[api]["steady_polls"]) for c in children) for api in APIS}
    per_poll = {api: sum(float(c[api]["steady_cpu_seconds"]) for c in children) / max(1, polls[api]) for api in APIS}
    ratio = per_poll["market"] / per_poll["kontext"]
    per_round = ", ".join(f"{cpu_per_poll(c['market']) / cpu_per_poll(c['kontext']):.3f}" for c in children)
    parsed = ", ".join(f"{api} {us:.0f} us ({size} B)" for api, (us, size) in parse_cost.items())
    note = (
        f"{triggers} triggers per family (one unfinished task each, started spread over one interval), poll every "
        f"{interval:g} s; both families at once, {seconds:g} s measured after {warmup:g} s warm-up, {rounds} "
        f"round(s); polls: kontext {polls['kontext']}, market {polls['market']}; ratio per round: {per_round}; "
        f"parsing one answer without the reuse: {parsed}"
    )
    return [
        Figure(
            NAME, "CPU per poll, Market wait / Kontext wait", per_poll["market"] * 1e3,
            "Kontext wait (same trigger, same seconds)", per_poll["kontext"] * 1e3, ratio, f"<= {GOAL_RATIO}",
            ratio <= GOAL_RATIO, "ms", note,
        ),
    ]  # fmt: skip


if __name__ == "__main__":
    bench_main(run)
