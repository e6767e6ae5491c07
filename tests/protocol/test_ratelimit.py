"""CreatePacer and the windows: every attempt counts, 429s wait across the window, AIMD, no blind resends."""

from __future__ import annotations

import multiprocessing
import time
from typing import Any

import pytest

from airflow_provider_kontext import exceptions as exc
from airflow_provider_kontext._protocol.ratelimit import (
    WINDOW_MARGIN_SECONDS,
    CreatePacer,
    LocalWindow,
    WindowState,
    check_rate_limit,
)
from airflow_provider_kontext._protocol.retry import RetryPolicy
from airflow_provider_kontext.hooks._host_window import HostWindow

W = 10.0 + WINDOW_MARGIN_SECONDS


def rate_limited(retry_after: float | None = None) -> exc.KontextRateLimitError:
    return exc.KontextRateLimitError("kie generate failed: rate limited", retry_after=retry_after, code=429)


def send_all(pacer: CreatePacer, now: float) -> int:
    sent = 0
    while pacer.acquire(now) == 0:
        sent += 1
    return sent


def test_the_window_holds_limit_attempts_and_says_when_room_comes_back() -> None:
    pacer = CreatePacer(2, 10.0)
    assert pacer.acquire(0.0) == 0
    assert pacer.acquire(1.0) == 0
    assert pacer.acquire(2.0) == pytest.approx(W - 2.0), "the oldest attempt leaves the window first"
    assert pacer.acquire(W) == 0
    assert pacer.stats.attempts == 3


def test_a_resent_create_takes_a_second_slot() -> None:
    # The bug behind kie refusing a lone batch: retries were not counted at the moment they were sent.
    pacer = CreatePacer(3, 10.0, rng=lambda: 0.0)
    assert pacer.acquire(0.0) == 0
    wait = pacer.on_failure(exc.KontextServiceUnavailableError("maintenance", code=455), now=0.0)
    assert wait is not None
    assert pacer.acquire(0.0) > 0, "held for the backoff"
    assert pacer.acquire(wait) == 0  # the resend
    pacer.on_accepted(wait)
    assert send_all(pacer, wait) == 1, "two of three slots are spent: the first attempt and its resend"
    assert pacer.stats.attempts == 3 and pacer.stats.maintenance == 1


@pytest.mark.parametrize("draw", [0.0, 0.5, 1.0])
def test_a_429_without_retry_after_waits_out_the_full_window_with_jitter(draw: float) -> None:
    pacer = CreatePacer(20, 10.0, rng=lambda: draw)
    pacer.acquire(0.0)
    wait = pacer.on_failure(rate_limited(), now=0.0)
    assert wait is not None
    assert W <= wait <= 1.2 * W, "the attempts that filled the window have left it by then"
    assert pacer.acquire(wait - 0.01) > 0
    assert pacer.stats.rate_limited == 1


def test_jitter_spreads_tasks_refused_together() -> None:
    import random

    rng = random.Random(3)
    waits = []
    for _ in range(30):
        pacer = CreatePacer(20, 10.0, rng=rng.random)
        pacer.acquire(0.0)
        waits.append(pacer.on_failure(rate_limited(), now=0.0))
    assert len({round(wait or 0, 2) for wait in waits}) > 20, "30 tasks do not come back in lockstep"


def test_retry_after_is_honoured_with_a_little_jitter() -> None:
    pacer = CreatePacer(20, 10.0, rng=lambda: 1.0)
    pacer.acquire(0.0)
    wait = pacer.on_failure(rate_limited(retry_after=3.0), now=0.0)
    assert wait is not None and 3.0 <= wait <= 3.0 + 4 * WINDOW_MARGIN_SECONDS


def test_aimd_halves_once_per_window_and_wins_back_one_create_per_window() -> None:
    pacer = CreatePacer(20, 10.0, rng=lambda: 0.0)
    assert pacer.allowance == 20
    pacer.on_failure(rate_limited(), now=0.0)
    pacer.on_failure(rate_limited(), now=1.0)  # same window: one decrease only
    assert pacer.allowance == 10
    pacer.on_failure(rate_limited(), now=W + 1)
    assert pacer.allowance == 5
    for _ in range(5):  # a window's worth of accepted creates at allowance 5 (+1/allowance each)
        pacer.on_accepted(W + 2)
    assert pacer.allowance == 5
    pacer.on_accepted(W + 2)
    assert pacer.allowance == 6, "about one more create per window of accepted ones"
    for _ in range(4):  # two quiet windows later it probes faster: one more per accepted create
        pacer.on_accepted(4 * W)
    assert pacer.allowance == 10
    for _ in range(500):
        pacer.on_accepted(100.0)
    assert pacer.allowance == 20, "never above the account's limit"


def test_tasks_sharing_a_window_share_the_allowance() -> None:
    shared = LocalWindow()
    a, b = CreatePacer(20, 10.0, window=shared), CreatePacer(20, 10.0, window=shared)
    a.on_failure(rate_limited(), now=0.0)
    assert b.allowance == 10, "a 429 one task saw slows them all, so none starves behind the others"
    assert send_all(b, 1.0) == 10
    assert a.acquire(1.0) > 0, "and they count each other's attempts"


def test_the_mark_moves_to_when_the_answer_came() -> None:
    # kie counts a create when it arrives; on a busy worker that is after we sent it.
    pacer = CreatePacer(1, 10.0)
    assert pacer.acquire(0.0) == 0
    pacer.on_accepted(3.0)  # the answer took 3 s
    assert pacer.acquire(W) == pytest.approx(3.0)
    assert pacer.acquire(W + 3.0) == 0


def test_the_allowance_is_the_window_size_after_a_decrease() -> None:
    pacer = CreatePacer(20, 10.0, rng=lambda: 0.0)
    pacer.on_failure(rate_limited(), now=0.0)
    assert send_all(pacer, 100.0) == 10


@pytest.mark.parametrize(
    "error",
    [
        exc.KontextSubmissionOutcomeUnknownError("read timeout after sending"),
        exc.KontextTransportError("reset after sending", request_sent=True),
        exc.KontextServerError("500", code=500),
        exc.KontextValidationError("bad", field="prompt"),
        exc.KontextAuthError("401", code=401),
        exc.KontextContentPolicyError("refused"),
    ],
)
def test_what_kie_may_have_accepted_or_refused_is_never_resent(error: exc.KontextError) -> None:
    assert CreatePacer().on_failure(error, now=0.0) is None


def test_a_connection_never_made_is_resent_up_to_max_attempts() -> None:
    pacer = CreatePacer(retry_policy=RetryPolicy(max_attempts=3, backoff_initial=0.1, backoff_max=1.0))
    refused = exc.KontextTransportError("connection refused", request_sent=False)
    assert pacer.on_failure(refused, now=0.0) is not None
    assert pacer.on_failure(refused, now=1.0) is not None
    assert pacer.on_failure(refused, now=2.0) is None


def test_maintenance_backoff_grows_and_stays_bounded() -> None:
    pacer = CreatePacer(retry_policy=RetryPolicy(backoff_initial=1.0, backoff_max=30.0), rng=lambda: 1.0)
    waits = [pacer.on_failure(exc.KontextServiceUnavailableError("455", code=455), now=float(i)) for i in range(10)]
    assert waits[0] == 1.0 and waits[1] == 2.0
    assert max(w or 0 for w in waits) == 30.0


@pytest.mark.parametrize(
    ("limit", "window"), [(0, 10.0), (-1, 10.0), (2.5, 10.0), (True, 10.0), (20, 0), (20, -1.0), (20, "10")]
)
def test_bad_limits_are_refused(limit: Any, window: Any) -> None:
    with pytest.raises(ValueError, match=r"max_creates_per_window|rate_window_seconds"):
        check_rate_limit(limit, window)


def test_after_a_decrease_room_comes_back_when_enough_attempts_left() -> None:
    window = LocalWindow()
    pacer = CreatePacer(4, 10.0, window=window, rng=lambda: 0.0)
    for now in (0.0, 1.0, 2.0, 3.0):
        assert pacer.acquire(now) == 0
    window.transact(lambda state: setattr(state, "allowance", 2.0))
    # Allowance 2 now: room comes back when all but one are gone, i.e. when the one sent at 2.0 leaves.
    assert pacer.acquire(3.5) == pytest.approx(2.0 + W - 3.5)


def test_local_windows_do_not_see_each_other() -> None:
    a, b = CreatePacer(1, 10.0, window=LocalWindow()), CreatePacer(1, 10.0, window=LocalWindow())
    assert a.acquire(0.0) == 0
    assert b.acquire(0.0) == 0


PER_PROCESS = 4


def _reserve_many(path_dir: str, account: str, start: Any, out: Any) -> None:
    pacer = CreatePacer(5, 0.5 - WINDOW_MARGIN_SECONDS, window=HostWindow(account, path_dir))
    start.wait()  # a barrier: every process is up (a fresh interpreter each) before any create
    stamps: list[float] = []
    deadline = time.time() + 120  # a liveness bound only: the count, not the clock, ends the loop
    while len(stamps) < PER_PROCESS and time.time() < deadline:
        now = time.time()
        if pacer.acquire(now) == 0:
            stamps.append(now)
        else:
            time.sleep(0.005)
    out.put(stamps)


def test_the_host_window_is_shared_by_processes(tmp_path: Any) -> None:
    """Four processes take 16 slots of one 5-per-0.5-s window: no 0.5 s ever holds more than 5."""
    mp = multiprocessing.get_context("forkserver")  # not a fork of this threaded pytest process
    start, out = mp.Barrier(5), mp.Queue()
    procs = [mp.Process(target=_reserve_many, args=(str(tmp_path), "acct", start, out)) for _ in range(4)]
    for proc in procs:
        proc.start()
    start.wait(timeout=300)  # starting four interpreters takes seconds, more on a loaded 2-core machine
    stamps = sorted(s for _ in procs for s in out.get(timeout=180))
    for proc in procs:
        proc.join(timeout=30)
    assert len(stamps) == 4 * PER_PROCESS, "every process got its slots"
    for i in range(len(stamps) - 5):
        assert stamps[i + 5] - stamps[i] >= 0.5 - 1e-6, "never more than 5 in any 0.5 s, across 4 processes"


def test_host_windows_are_per_account_and_survive_a_torn_file(tmp_path: Any) -> None:
    one = CreatePacer(1, 10.0, window=HostWindow("one", str(tmp_path)))
    other = CreatePacer(1, 10.0, window=HostWindow("two", str(tmp_path)))
    assert one.acquire(100.0) == 0
    assert other.acquire(100.0) == 0, "another account has its own window"
    assert one.acquire(101.0) == pytest.approx(W - 1)
    with open(HostWindow("one", str(tmp_path)).path, "ab") as handle:
        handle.write(b"\nnot-a-number\n")
    assert one.acquire(102.0) == pytest.approx(W - 2)


def test_the_host_file_keeps_the_allowance(tmp_path: Any) -> None:
    first = CreatePacer(20, 10.0, window=HostWindow("acct", str(tmp_path)))
    first.on_failure(rate_limited(), now=5.0)
    later = CreatePacer(20, 10.0, window=HostWindow("acct", str(tmp_path)))
    assert later.allowance == 10, "a task started after the 429 knows of it"
    state = HostWindow("acct", str(tmp_path)).transact(
        lambda s: WindowState(list(s.sent), s.allowance, s.last_decrease)
    )
    assert state.allowance == 10.0 and state.last_decrease == 5.0


def test_the_host_window_moves_the_mark_to_the_answer_too(tmp_path: Any) -> None:
    pacer = CreatePacer(1, 10.0, window=HostWindow("acct", str(tmp_path)))
    sent = 1_700_000_000.1234567  # a wall-clock time with more digits than the file keeps
    assert pacer.acquire(sent) == 0
    pacer.on_accepted(sent + 3.0)
    assert pacer.acquire(sent + W) == pytest.approx(3.0, abs=1e-5)
