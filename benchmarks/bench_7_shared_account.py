"""Shared account: K tasks on one kie account, each in its own process, started together.

kie's create limit is per account (20 per 10 s; the excess is answered 429 and dropped). Real
Airflow runs every batch and mapped task instance of a deployment on the same key at once.
Scenarios (issue #10): K = 1, 2, 4 batch tasks of 30 images; a 30-way fan-out of one-image
tasks; a batch of 30 while another client of the account holds half of every window. Each runs
twice: with the host-wide window the processes of one machine share (the default) and without
it (``share_rate_limit=false``, as tasks on different hosts), where only the adaptive allowance
and the 429 backoff share the account.

Figures per scenario and mode:

* accepted rate / capacity left to us: the fastest schedule the account's sliding window allows
  for ``N`` creates with ``C`` per window left to us (the first ``C`` at once, each further ``C``
  one window later: ``floor((N - 1) / C) * W``), divided by the span the server saw from the
  first create to the last. 1.0 is perfect use of the account; start-up spread of the task
  processes counts against it. Met only when every task succeeded and no image was created twice.
* creates refused by kie's limit per accepted create (the emulator's own count).
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import queue
import urllib.request
from dataclasses import dataclass
from typing import Any

from benchmarks.common import API_KEY, Figure, bench_main, emulator_process
from reliability.fake_airflow import FakeTaskInstance, task_context

LIMIT = 20


@dataclass(frozen=True)
class Scenario:
    name: str
    #: Images per task, one entry per task (1: a KontextGenerateOperator, more: a batch).
    tasks: tuple[int, ...]
    #: Creates of every window another client of the account uses.
    held: int = 0


SCENARIOS = (
    Scenario("1 batch of 30", (30,)),
    Scenario("2 batches of 30", (30, 30)),
    Scenario("4 batches of 30", (30, 30, 30, 30)),
    Scenario("30-way fan-out of 1", (1,) * 30),
    Scenario("batch of 30, half held", (30,), held=LIMIT // 2),
)


def _post(url: str, body: dict[str, Any]) -> None:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}, method="POST"
    )
    with urllib.request.urlopen(request, timeout=10):
        pass


def _get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


def _task(name: str, images: int, window: float, connection: str, start: Any, out: Any) -> None:
    """
    One task instance in its own process, as on a worker: Airflow and the provider already imported.

    The process comes from a fork server that preloaded the operators (not a fork of this
    process), so the connection arrives as an argument: the server's environment is as old as
    the first measurement.
    """
    os.environ["AIRFLOW_CONN_KONTEXT_DEFAULT"] = connection
    from airflow_provider_kontext.operators.batch import KontextBatchGenerateOperator
    from airflow_provider_kontext.operators.generate import KontextGenerateOperator

    logging.disable(logging.WARNING)  # per-create lines by the hundred; the figures are the output
    operator: Any
    if images == 1:
        operator = KontextGenerateOperator(task_id=name, prompt=f"{name}: a kettle", wait_for_completion=False)
    else:
        operator = KontextBatchGenerateOperator(
            task_id=name,
            requests=[{"prompt": f"{name}: a kettle, variation {i}"} for i in range(images)],
            wait_for_completion=False,
            rate_window_seconds=window,
        )
    start.wait()  # a barrier: every task has built its operator, then all start together
    try:
        ids = operator.execute(task_context(FakeTaskInstance(dag_id="bench", run_id="bench_run", task_id=name)))
        out.put({"ok": True, "ids": ids if isinstance(ids, list) else [ids]})
    except Exception as err:
        out.put({"ok": False, "ids": [], "error": f"{type(err).__name__}: {err}"[:300]})


def measure(scenario: Scenario, window: float, shared: bool) -> dict[str, Any]:
    with emulator_process(
        "--rate-limit-creates", str(LIMIT), "--rate-limit-window", str(window),
        "--credits", "1000000", "--generation-seconds", "60",
    ) as base_url:  # fmt: skip
        extra = {"upload_base_url": base_url, "rate_window_seconds": window, "share_rate_limit": shared}
        os.environ["AIRFLOW_CONN_KONTEXT_DEFAULT"] = json.dumps(
            {"conn_type": "kontext", "host": base_url, "password": API_KEY, "extra": extra}
        )
        if scenario.held:
            _post(f"{base_url}/_emulator/rate-limit/other-client", {"creates": scenario.held, "seconds": None})
        mp = multiprocessing.get_context("forkserver")
        mp.set_forkserver_preload(
            ["airflow_provider_kontext.operators.batch", "airflow_provider_kontext.operators.generate"]
        )
        connection = os.environ["AIRFLOW_CONN_KONTEXT_DEFAULT"]
        start, out = mp.Barrier(len(scenario.tasks) + 1), mp.Queue()
        procs = [
            mp.Process(target=_task, args=(f"task{i:02d}", images, window, connection, start, out), daemon=True)
            for i, images in enumerate(scenario.tasks)
        ]
        for proc in procs:
            proc.start()
        start.wait(timeout=300)
        outcomes = []
        for _ in procs:
            try:
                outcomes.append(out.get(timeout=600))
            except queue.Empty:
                break
        for proc in procs:
            proc.join(timeout=10)
        stats = _get(f"{base_url}/_emulator/stats")
        ids = [task_id for outcome in outcomes for task_id in outcome["ids"]]
        created_at = sorted(float(_get(f"{base_url}/_emulator/tasks/{task_id}")["createdAt"]) for task_id in ids)
    images = sum(scenario.tasks)
    capacity = LIMIT - scenario.held
    span = created_at[-1] - created_at[0] if len(created_at) > 1 else 0.0
    fastest = ((len(created_at) - 1) // capacity) * window if created_at else 0.0
    accepted = int(stats["creates_accepted"])
    return {
        "succeeded": sum(1 for outcome in outcomes if outcome["ok"]),
        "tasks": len(scenario.tasks),
        "images": images,
        "created": len(set(ids)),
        "duplicates": accepted - len(set(ids)),
        "refused": int(stats["creates_rejected_rate_limit"]),
        "accepted": accepted,
        "ratio": fastest / span if span > 0 else 0.0,
        "fastest": fastest,
        "span": span,
        "errors": [outcome["error"] for outcome in outcomes if not outcome["ok"]][:2],
    }


def run(quick: bool) -> list[Figure]:
    window = 2.0 if quick else 10.0
    figures: list[Figure] = []
    for shared in (True, False):
        mode = "host window" if shared else "adaptive only"
        for scenario in SCENARIOS:
            got = measure(scenario, window, shared)
            all_good = got["succeeded"] == got["tasks"] and got["created"] == got["images"] and got["duplicates"] == 0
            note = (
                f"{got['succeeded']}/{got['tasks']} tasks succeeded, {got['created']}/{got['images']} images, "
                f"{got['duplicates']} duplicates, {got['refused']} refused, span {got['span']:.1f} s"
                + (f"; errors: {got['errors']}" if got["errors"] else "")
            )
            label = f"7 shared account ({mode})"
            figures.append(
                Figure(
                    benchmark=label,
                    metric=f"{scenario.name}: accepted rate / capacity left",
                    ours=round(got["span"], 2),
                    reference=f"fastest at {LIMIT - scenario.held} per {window:g} s",
                    reference_value=got["fastest"],
                    ratio=round(got["ratio"], 3),
                    goal=">= 0.8, all tasks ok, 0 duplicates",
                    passed=all_good and got["ratio"] >= 0.8,
                    unit="s",
                    note=note,
                )
            )
            per_accepted = got["refused"] / got["accepted"] if got["accepted"] else float("inf")
            figures.append(
                Figure(
                    benchmark=label,
                    metric=f"{scenario.name}: refused per accepted create",
                    ours=round(per_accepted, 3),
                    reference="goal limit",
                    reference_value=0.5,
                    ratio=round(per_accepted / 0.5, 3),
                    goal="<= 0.5",
                    passed=all_good and per_accepted <= 0.5,
                )
            )
    return figures


if __name__ == "__main__":
    bench_main(run)
