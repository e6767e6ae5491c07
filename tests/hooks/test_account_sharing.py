"""Many tasks, one kie account: each task in its own process, as on separate workers.

Time is compressed tenfold on both sides: the emulator enforces 20 creates per 1 s (kie: per
10 s) and the tasks pace to the same window. Every row of issue #10's table is here, once with
the host-wide window the processes of one machine share (the default) and, where it matters,
once without it (``share_rate_limit=false``: tasks on different hosts, adapting to 429s alone).
"""

from __future__ import annotations

import multiprocessing
import os
import queue
import time
from typing import Any

import pytest

from airflow_provider_kontext import exceptions as exc
from airflow_provider_kontext.emulator import EmulatorServer
from airflow_provider_kontext.operators.batch import KontextBatchGenerateOperator
from airflow_provider_kontext.operators.generate import KontextGenerateOperator
from reliability.fake_airflow import task_context
from tests.conftest import CONN_ENV, connection_json

WINDOW = 1.0  # kie's 10 s, compressed
LIMIT = 20
#: Thirty task processes create at once on 2 shared cores: an answer may take seconds, and an
#: unanswered create is (rightly) never resent, so these tests give kie's answers time to come.
READ_TIMEOUT = 60.0


def _task_process(job: dict[str, Any], start: Any, results: Any) -> None:
    """One Airflow task instance: build the operator, wait for the common start, run execute()."""
    os.environ[CONN_ENV] = job["connection"]  # as a worker reads it; the fork server's env is older
    kwargs = {"wait_for_completion": False, "timeout": job.get("timeout", 120.0), "rate_window_seconds": WINDOW}
    if "requests" in job:
        operator: Any = KontextBatchGenerateOperator(task_id=job["name"], requests=job["requests"], **kwargs)
    else:
        kwargs.pop("rate_window_seconds")
        operator = KontextGenerateOperator(task_id=job["name"], prompt=job["prompt"], **kwargs)
    ctx = task_context()
    start.wait()
    started = time.time()
    try:
        ids = operator.execute(ctx)
        outcome: dict[str, Any] = {"ok": True, "ids": ids if isinstance(ids, list) else [ids]}
    except exc.KontextError as err:
        outcome = {
            "ok": False,
            "error": type(err).__name__,
            "message": str(err),
            "waited": getattr(err, "waited_seconds", None),
        }
    outcome.update(name=job["name"], seconds=time.time() - started, xcom=ctx["ti"].xcom)
    results.put(outcome)


def _processes() -> Any:
    """
    Task processes as a worker forks them, but from a clean fork server: forking this pytest
    process itself (emulator and logging threads running) can copy a held lock into a child,
    which then hangs.
    """
    mp = multiprocessing.get_context("forkserver")
    mp.set_forkserver_preload(
        [
            "airflow_provider_kontext.operators.batch",
            "airflow_provider_kontext.operators.generate",
            "airflow_provider_kontext.hooks.kontext",
            __name__,
        ]
    )
    return mp


def run_tasks(jobs: list[dict[str, Any]], *, before_start: Any = None) -> list[dict[str, Any]]:
    """One process per job (Airflow already imported), released together; their outcomes."""
    mp = _processes()
    start = mp.Event()
    results = mp.Queue()
    connection = os.environ[CONN_ENV]
    processes = [
        mp.Process(target=_task_process, args=({**job, "connection": connection}, start, results), daemon=True)
        for job in jobs
    ]
    for process in processes:
        process.start()
    time.sleep(1.0)  # every process built its operator
    if before_start is not None:
        before_start()
    start.set()
    outcomes = []
    deadline = time.time() + 150
    while len(outcomes) < len(jobs):
        try:
            outcomes.append(results.get(timeout=max(deadline - time.time(), 0.1)))
        except queue.Empty:
            break
    for process in processes:
        process.join(timeout=max(deadline - time.time(), 1))
        if process.is_alive():
            process.kill()
    assert len(outcomes) == len(jobs), f"only {len(outcomes)} of {len(jobs)} tasks reported back"
    return sorted(outcomes, key=lambda outcome: outcome["name"])


def batch_job(name: str, images: int, **extra: Any) -> dict[str, Any]:
    return {"name": name, "requests": [{"prompt": f"{name} image {i}"} for i in range(images)], **extra}


@pytest.fixture
def account(emulator: EmulatorServer, monkeypatch: pytest.MonkeyPatch) -> EmulatorServer:
    emulator.configure(rate_limit_creates=LIMIT, rate_limit_window_seconds=WINDOW)
    # The connection says the window too (single-image tasks have no operator argument for it).
    monkeypatch.setenv(
        CONN_ENV, connection_json(emulator.base_url, rate_window_seconds=WINDOW, read_timeout=READ_TIMEOUT)
    )
    return emulator


def no_shared_window(emulator: EmulatorServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        CONN_ENV,
        connection_json(
            emulator.base_url, share_rate_limit=False, rate_window_seconds=WINDOW, read_timeout=READ_TIMEOUT
        ),
    )


def assert_all_created_once(emulator: EmulatorServer, outcomes: list[dict[str, Any]], images: int) -> None:
    failed = [outcome for outcome in outcomes if not outcome["ok"]]
    assert not failed, f"{len(failed)} task(s) failed: {failed[:2]}"
    ids = [task_id for outcome in outcomes for task_id in outcome["ids"]]
    assert len(ids) == images and None not in ids
    assert len(set(ids)) == images
    assert emulator.stats()["creates_accepted"] == images, "one paid create per image, no duplicates"


@pytest.mark.parametrize("shared", [True, False], ids=["host-window", "adaptive-only"])
def test_two_batches_of_30_started_together_both_succeed(
    account: EmulatorServer, monkeypatch: pytest.MonkeyPatch, shared: bool
) -> None:
    if not shared:
        no_shared_window(account, monkeypatch)
    outcomes = run_tasks([batch_job("a", 30), batch_job("b", 30)])
    assert_all_created_once(account, outcomes, 60)
    if shared:
        assert account.stats()["creates_rejected_rate_limit"] == 0, "one host shares one window exactly"


def market_batch_job(name: str, images: int) -> dict[str, Any]:
    """Market requests of two models (one batch may mix models, not API families)."""
    models = [
        ("z-image", {"aspect_ratio": "1:1"}),
        ("flux-2/pro-text-to-image", {"aspect_ratio": "1:1", "resolution": "1K"}),
    ]
    requests = []
    for i in range(images):
        model, extra = models[i % 2]
        requests.append({"model": model, "input": {"prompt": f"{name} image {i}", **extra}})
    return {"name": name, "requests": requests}


def test_a_kontext_batch_and_a_market_batch_share_the_accounts_one_limit(account: EmulatorServer) -> None:
    """kie counts Flux Kontext and Market creates against one window: so does the provider's pacer."""
    outcomes = run_tasks([batch_job("kontext", 30), market_batch_job("market", 30)])
    assert_all_created_once(account, outcomes, 60)
    stats = account.stats()
    assert stats["creates_accepted_by_api"] == {"kontext": 30, "market": 30}
    assert stats["creates_rejected_rate_limit"] == 0, "both families paced by one window, not one each"


def test_a_batch_of_30_while_another_client_uses_half_the_account(account: EmulatorServer) -> None:
    account.share_account(LIMIT // 2)  # for good
    (outcome,) = run_tasks([batch_job("a", 30)])
    assert_all_created_once(account, [outcome], 30)
    stats = outcome["xcom"]  # ids pushed as they came
    assert len(stats["kie_task_ids"]) == 30


def test_twelve_single_images_and_a_batch_while_the_account_is_saturated(account: EmulatorServer) -> None:
    jobs = [{"name": f"single-{i:02d}", "prompt": f"single {i}"} for i in range(12)] + [batch_job("z-batch", 20)]
    # Another client takes the whole account for 0.9 s (kie: 9 s) just as they start.
    outcomes = run_tasks(jobs, before_start=lambda: account.share_account(LIMIT, 0.9 * WINDOW))
    assert_all_created_once(account, outcomes, 32)


@pytest.mark.parametrize("shared", [True, False], ids=["host-window", "adaptive-only"])
def test_a_30_way_fan_out_of_single_images_all_succeed(
    account: EmulatorServer, monkeypatch: pytest.MonkeyPatch, shared: bool
) -> None:
    if not shared:
        no_shared_window(account, monkeypatch)
    outcomes = run_tasks([{"name": f"t{i:02d}", "prompt": f"fan-out {i}"} for i in range(30)])
    assert_all_created_once(account, outcomes, 30)
    if shared:
        assert account.stats()["creates_rejected_rate_limit"] == 0


def test_a_batch_alone_with_injected_429_and_455_never_trips_the_real_limit(account: EmulatorServer) -> None:
    # 15 % of creates answered 429 or 455 once; every attempt, retries included, is paced.
    account.inject_random_faults(
        0.15,
        seed=7,
        endpoints=["generate"],
        kinds={
            "generate": [{"kind": "code", "code": 429}, {"kind": "http", "status": 429}, {"kind": "code", "code": 455}]
        },
    )
    (outcome,) = run_tasks([batch_job("a", 60)])
    assert_all_created_once(account, [outcome], 60)
    faults = len(account.applied_faults())
    assert faults >= 3, "the faults really happened"
    stats = account.stats()
    assert stats["creates_rejected_rate_limit"] == 0, "kie's own limiter never refused a create"
    assert stats["requests"]["generate"] == 60 + faults


def test_the_deadline_ends_a_rate_limited_wait_with_what_was_created(emulator: EmulatorServer) -> None:
    # Three creates per minute: the fourth cannot go before the task's 6-s timeout. The timeout
    # leaves the three creates seconds to spare on a loaded machine, so the task always reaches the
    # rate-limited wait it is about, and the wait always ends at the deadline, not at the window.
    emulator.configure(rate_limit_creates=3, rate_limit_window_seconds=60.0)
    ctx = task_context()
    timeout = 6.0
    operator = KontextBatchGenerateOperator(
        task_id="batch",
        requests=[{"prompt": f"image {i}"} for i in range(5)],
        wait_for_completion=False,
        timeout=timeout,
        max_creates_per_window=20,
        rate_window_seconds=1.0,
    )
    with pytest.raises(exc.KontextRateLimitError) as raised:
        operator.execute(ctx)
    message = str(raised.value)
    assert "Gave up creating after waiting" in message
    assert "3 task(s) created before it" in message
    assert raised.value.waited_seconds is not None and 0 < raised.value.waited_seconds <= timeout
    pushed = ctx["ti"].xcom["kie_task_ids"]
    assert [task_id is not None for task_id in pushed] == [True, True, True, False, False]
    assert emulator.stats()["creates_accepted"] == 3


def test_results_say_what_creating_cost(emulator: EmulatorServer) -> None:
    emulator.inject_fault("generate", "http", count=2, status=429, retry_after=0)  # Retry-After honoured
    ctx = task_context()
    result = KontextGenerateOperator(task_id="generate", prompt="a red kite", poll_interval=0.1).execute(ctx)
    assert result["status"] == "SUCCESS"
    assert result["create_stats"]["attempts"] == 3
    assert result["create_stats"]["rate_limited"] == 2
    assert result["create_stats"]["accepted"] == 1
    assert os.environ[CONN_ENV]  # the key stays in the connection, never in the result
    assert "SECRET" not in repr(result)
