"""The default poll schedule: skip the checks that can only say "running", never see a task late."""

from __future__ import annotations

import math

import pytest

from airflow_provider_kontext._protocol.polling import PollSchedule


def check_times(schedule: PollSchedule, horizon: float) -> list[float]:
    """When a wait with this schedule checks, up to ``horizon`` seconds, with no deadline."""
    times, now, polls = [], 0.0, 0
    while True:
        now += schedule.delay(polls, now=now, end_time=None)
        if now > horizon:
            return times
        times.append(now)
        polls += 1


def test_default_waits_one_quiet_period_plus_one_interval() -> None:
    schedule = PollSchedule(interval=5.0)
    assert schedule.quiet_period == 5.0
    assert schedule.first_poll_delay == 10.0
    assert check_times(schedule, 30.0) == [10.0, 15.0, 20.0, 25.0, 30.0]


def test_quiet_period_never_exceeds_a_short_interval() -> None:
    # An emulator or a fast mirror polled every 0.2 s must not wait a kie-sized 5 s.
    assert PollSchedule(interval=0.2).first_poll_delay == pytest.approx(0.4)
    assert PollSchedule(interval=30.0).first_poll_delay == 35.0


@pytest.mark.parametrize("interval", [0.5, 2.0, 5.0, 12.0])
@pytest.mark.parametrize("done_at", [0.0, 3.0, 5.0, 7.3, 19.99, 44.0])
def test_a_task_done_after_the_quiet_period_is_seen_within_one_interval(interval: float, done_at: float) -> None:
    schedule = PollSchedule(interval=interval)
    seen_at = next(t for t in check_times(schedule, done_at + 3 * interval + 10) if t >= done_at)
    bound = interval if done_at >= schedule.quiet_period else schedule.first_poll_delay - done_at
    assert seen_at - done_at <= bound + 1e-9


def test_fewer_checks_than_a_fixed_interval_from_time_zero() -> None:
    fixed = PollSchedule(interval=5.0, first_delay=0.0)
    ours = PollSchedule(interval=5.0)
    done_at = 20.5  # a typical Kontext generation
    calls_fixed = sum(1 for t in check_times(fixed, 60) if t <= done_at + 5)
    calls_ours = sum(1 for t in check_times(ours, 60) if t <= done_at + 5)
    assert calls_ours == calls_fixed - 2


def test_explicit_first_delay_and_min_generation_win() -> None:
    assert PollSchedule(interval=5.0, first_delay=0.0).delay(0, now=0, end_time=None) == 0.0
    assert PollSchedule(interval=1.0, min_generation=8.0).first_poll_delay == 9.0
    assert PollSchedule(interval=5.0, min_generation=0.0).first_poll_delay == 5.0


def test_sleeps_are_clipped_to_the_deadline() -> None:
    schedule = PollSchedule(interval=5.0)
    assert schedule.delay(0, now=0, end_time=3) == 3.0
    assert schedule.delay(1, now=99, end_time=100) == 1.0
    assert schedule.delay(1, now=101, end_time=100) == 0.0


@pytest.mark.parametrize(
    "kwargs",
    [
        {"interval": 0},
        {"interval": -1},
        {"interval": math.nan},
        {"first_delay": -0.1},
        {"min_generation": -1.0},
        {"min_generation": math.nan},
    ],
)
def test_bad_values_are_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        PollSchedule(**kwargs)
