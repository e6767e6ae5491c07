"""The shared poll decision: deadline, grace for fresh tasks, transient tolerance, event round trip."""

from __future__ import annotations

import pytest

from airflow_provider_kontext import exceptions as exc
from airflow_provider_kontext._protocol.polling import PollSchedule, TaskWaiter, WaitResult, WaitStatus
from airflow_provider_kontext._protocol.record import TaskRecord, TaskStatus


def done(task_id: str, url: str = "https://r.test/img.png") -> TaskRecord:
    return TaskRecord(task_id, TaskStatus.SUCCESS, result_image_url=url, prompt="p")


def running(task_id: str) -> TaskRecord:
    return TaskRecord(task_id, TaskStatus.GENERATING)


def failed(task_id: str, code: int = 501) -> TaskRecord:
    return TaskRecord(task_id, TaskStatus.GENERATE_FAILED, error_code=code, error_message="nope")


def test_all_succeed_in_input_order() -> None:
    waiter = TaskWaiter(["b", "a"], end_time=100.0)
    waiter.on_record(done("a", "https://r.test/a"), now=1)
    assert waiter.outcome(now=1) is None
    assert waiter.pending_ids() == ["b"]
    waiter.on_record(done("b", "https://r.test/b"), now=2)
    result = waiter.outcome(now=2)
    assert result is not None and result.status is WaitStatus.SUCCESS
    assert [r.result_image_url for r in result.records] == ["https://r.test/b", "https://r.test/a"]
    result.raise_for_status()


def test_any_failure_makes_the_wait_failed_with_the_typed_error() -> None:
    waiter = TaskWaiter(["a", "b"], end_time=100.0)
    waiter.on_record(done("a"), now=1)
    waiter.on_record(failed("b", 400), now=1)
    result = waiter.outcome(now=1)
    assert result is not None and result.status is WaitStatus.FAILED
    with pytest.raises(exc.KontextContentPolicyError, match="1 of 2"):
        result.raise_for_status()


def test_deadline_gives_timeout_listing_pending_tasks() -> None:
    waiter = TaskWaiter(["a"], end_time=10.0)
    waiter.on_record(running("a"), now=5)
    assert waiter.outcome(now=5) is None
    result = waiter.outcome(now=10)
    assert result is not None and result.status is WaitStatus.TIMEOUT
    assert "'a'" in result.message and "still be running" in result.message
    with pytest.raises(exc.KontextTimeoutError):
        result.raise_for_status()


def test_terminal_answer_beats_the_deadline() -> None:
    waiter = TaskWaiter(["a"], end_time=10.0)
    waiter.on_record(done("a"), now=11)
    result = waiter.outcome(now=11)
    assert result is not None and result.status is WaitStatus.SUCCESS


def test_record_info_null_is_pending_during_grace_then_not_found() -> None:
    waiter = TaskWaiter(["a"], end_time=1000.0, not_found_grace=30)
    waiter.on_record(TaskRecord.pending("a"), now=0)
    waiter.on_record(TaskRecord.pending("a"), now=29)
    assert waiter.outcome(now=29) is None
    waiter.on_record(TaskRecord.pending("a"), now=30)
    result = waiter.outcome(now=30)
    assert result is not None and result.status is WaitStatus.ERROR
    with pytest.raises(exc.KontextTaskNotFoundError):
        result.raise_for_status()


def test_grace_restarts_once_the_task_is_seen() -> None:
    waiter = TaskWaiter(["a"], end_time=1000.0, not_found_grace=30)
    waiter.on_record(TaskRecord.pending("a"), now=0)
    waiter.on_record(running("a"), now=20)
    waiter.on_record(TaskRecord.pending("a"), now=40)  # a flaky null later starts a new grace
    assert waiter.outcome(now=40) is None


def test_not_found_since_carries_the_grace_across_reschedules() -> None:
    waiter = TaskWaiter(["a"], end_time=None, not_found_grace=30, not_found_since=0)
    waiter.on_record(TaskRecord.pending("a"), now=31)
    result = waiter.outcome(now=31)
    assert result is not None and result.status is WaitStatus.ERROR


def test_transient_errors_are_tolerated_up_to_the_limit() -> None:
    waiter = TaskWaiter(["a"], end_time=1000.0, max_consecutive_failures=3)
    waiter.on_error(exc.KontextServerError("500"), task_id="a", now=1)
    waiter.on_error(exc.KontextTransportError("reset", request_sent=True), task_id="a", now=2)
    waiter.on_record(running("a"), now=3)  # a success resets the count
    waiter.on_error(exc.KontextRateLimitError("429"), task_id="a", now=4)
    waiter.on_error(exc.KontextServerError("500"), task_id="a", now=5)
    assert waiter.outcome(now=5) is None
    waiter.on_error(exc.KontextServerError("500"), task_id="a", now=6)
    result = waiter.outcome(now=6)
    assert result is not None and result.status is WaitStatus.ERROR
    assert "3 consecutive" in result.message


@pytest.mark.parametrize(
    "error",
    [exc.KontextAuthError("401"), exc.KontextInsufficientCreditsError("402"), exc.KontextNotFoundError("404")],
)
def test_permanent_errors_end_the_wait_at_once_with_their_class(error: exc.KontextError) -> None:
    waiter = TaskWaiter(["a"], end_time=1000.0)
    waiter.on_error(error, task_id="a", now=1)
    result = waiter.outcome(now=1)
    assert result is not None and result.status is WaitStatus.ERROR
    rebuilt = WaitResult.from_event(result.to_event())
    with pytest.raises(type(error)):
        rebuilt.raise_for_status()


def test_event_round_trip() -> None:
    waiter = TaskWaiter(["a", "b"], end_time=1000.0)
    waiter.on_record(done("a"), now=1)
    waiter.on_record(done("b"), now=1)
    result = waiter.outcome(now=1)
    assert result is not None
    assert WaitResult.from_event(result.to_event()) == result


@pytest.mark.parametrize(
    "event",
    [
        None,
        "success",
        {},
        {"status": "done", "records": []},
        {"status": "success"},
        {"status": "success", "records": [{"kie_task_id": "a"}]},
        {"status": "success", "records": [{"kie_task_id": "a", "status": "GENERATING"}]},
        {"status": "success", "records": ["a"]},
    ],
)
def test_unexpected_events_fail_loudly(event: object) -> None:
    with pytest.raises(exc.KontextTriggerEventError):
        WaitResult.from_event(event)


@pytest.mark.parametrize("ids", [[], [""], [None], ["  "]])
def test_bad_task_ids_are_refused(ids: list[object]) -> None:
    with pytest.raises(exc.KontextValidationError):
        TaskWaiter(ids, end_time=None)  # type: ignore[arg-type]


def test_schedule_clips_sleep_to_deadline() -> None:
    schedule = PollSchedule(interval=5.0, first_delay=20.0)
    assert schedule.delay(0, now=0, end_time=100) == 20.0
    assert schedule.delay(1, now=0, end_time=100) == 5.0
    assert schedule.delay(1, now=98, end_time=100) == 2.0
    assert schedule.delay(1, now=101, end_time=100) == 0.0
    assert schedule.delay(1, now=0, end_time=None) == 5.0
    with pytest.raises(ValueError):
        PollSchedule(interval=0)
