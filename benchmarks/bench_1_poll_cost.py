"""Poll cost: CPU per status poll, RSS and TCP connections of 1,000 waiting triggers in one loop.

Issue #6, part 1. Three contenders wait on the same 1,000 emulator tasks, which stay
generating (prompt marker ``[emulator:slow=N]``), with the same poll interval and for the same
number of seconds, each in a fresh interpreter (see :mod:`benchmarks._pollers`):

* **ours**: real ``KontextTaskTrigger.run()`` instances, one task id each;
* **peer**: real ``HttpEventTrigger`` instances (apache-airflow-providers-http) with an async
  response check that reads ``successFlag``, the generic way to wait on kie with Airflow
  (``HttpSensorTrigger`` cannot look at the body at all);
* **floor**: a bare aiohttp keep-alive loop doing the same GETs and reading ``successFlag``.

CPU is the child's own rusage over the polling window; polls come from the emulator's counter,
so a contender that falls behind its schedule is charged per poll it really made.
"""

from __future__ import annotations

from typing import Any

from benchmarks._pollers import generating_tasks, run_child
from benchmarks.common import Figure, bench_main

NAME = "1 poll cost"
GOAL_PEER_RATIO = 0.25
GOAL_FLOOR_RATIO = 1.3
#: "About one per pool slot": allow a few reconnects over the pool size.
GOAL_CONNECTIONS_PER_SLOT = 1.5


def _sizes(quick: bool) -> tuple[int, float, float]:
    """(triggers, poll interval s, window s). 1,000 triggers every 2 s is 500 polls/s on the emulator."""
    return (200, 1.0, 6.0) if quick else (1000, 2.0, 20.0)


def run(quick: bool) -> list[Figure]:
    from airflow_provider_kontext.hooks.async_client import POOL_SIZE

    triggers, interval, seconds = _sizes(quick)
    with generating_tasks(triggers, per_trigger=1, interval=interval, seconds=seconds) as (spec, env):
        got: dict[str, dict[str, Any]] = {mode: run_child(mode, spec, env) for mode in ("floor", "ours", "peer")}

    per_poll = {mode: r["cpu_seconds"] / max(1, r["polls"]) for mode, r in got.items()}
    growth = {mode: (r["rss_after"] - r["rss_before"]) / 2**20 for mode, r in got.items()}
    context = ", ".join(
        f"{mode}: {r['polls']} polls, {r['cpu_seconds']:.2f} CPU s, {r['connections_opened']} connections, "
        f"max RSS {r['max_rss'] / 2**20:.0f} MB"
        for mode, r in got.items()
    )
    setup = f"{triggers} triggers, poll every {interval:g} s for {seconds:g} s; {context}"
    ours = got["ours"]
    return [
        Figure(
            NAME, "CPU per poll, ours / peer", per_poll["ours"] * 1e3, "peer (HttpEventTrigger)",
            per_poll["peer"] * 1e3, per_poll["ours"] / per_poll["peer"], f"<= {GOAL_PEER_RATIO}",
            per_poll["ours"] / per_poll["peer"] <= GOAL_PEER_RATIO, "ms", setup,
        ),
        Figure(
            NAME, "CPU per poll, ours / floor", per_poll["ours"] * 1e3, "floor (bare aiohttp keep-alive)",
            per_poll["floor"] * 1e3, per_poll["ours"] / per_poll["floor"], f"<= {GOAL_FLOOR_RATIO}",
            per_poll["ours"] / per_poll["floor"] <= GOAL_FLOOR_RATIO, "ms",
        ),
        Figure(
            NAME, "RSS growth while polling, ours / peer", growth["ours"], "peer", growth["peer"],
            growth["ours"] / growth["peer"] if growth["peer"] > 0 else 0.0, "<= 1",
            growth["ours"] <= growth["peer"], "MB",
            f"floor grew {growth['floor']:.1f} MB",
        ),
        Figure(
            NAME, "TCP connections opened, ours / pool slots", float(ours["connections_opened"]), "pool slots",
            float(POOL_SIZE), ours["connections_opened"] / POOL_SIZE, f"<= {GOAL_CONNECTIONS_PER_SLOT}",
            ours["connections_opened"] / POOL_SIZE <= GOAL_CONNECTIONS_PER_SLOT, "",
            f"per poll: ours {ours['connections_opened'] / max(1, ours['polls']):.3f}, "
            f"peer {got['peer']['connections_opened'] / max(1, got['peer']['polls']):.3f}, "
            f"floor {got['floor']['connections_opened'] / max(1, got['floor']['polls']):.3f}",
        ),
    ]  # fmt: skip


if __name__ == "__main__":
    bench_main(run)
