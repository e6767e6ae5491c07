"""The poll-until-done decision, shared by the sync hook, the sensor and the trigger.

Each waiting loop does the same thing with different I/O primitives (``requests`` and
``time.sleep`` on a worker, ``aiohttp`` and ``asyncio.sleep`` in the triggerer). What to *make*
of each answer lives here, once, so the deferrable and the blocking path cannot drift: the loop
feeds every record or poll error into a :class:`TaskWaiter` and asks it for an outcome.

**When to check.** A kie task cannot be done the moment it is created: Kontext generations take seconds to tens
of seconds. A check before the shortest plausible generation only costs a request (and counts
against kie's per-key polling budget). So the default schedule waits
``min_generation + interval`` before its first check and then checks every ``interval``: a
task finishing at any time after ``min_generation`` is seen at most ``interval`` seconds late,
exactly as with a check every ``interval`` from the start, but the checks that could only ever
answer "still running" are skipped. With the default 5 s interval that is the checks at 0 and
5 s, two of the ~5 a typical 20 s generation needs.

``min_generation`` defaults to 5 s but never more than ``interval``: a caller who polls every
0.2 s expects tasks on that time scale (an emulator, a fast mirror), and a fixed 5 s quiet
period would make them wait 25 intervals.

Pure: no I/O. Not imported when a DAG file is parsed (operators check their arguments with the
light checks in :mod:`.defaults` and :mod:`.request`).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final

from airflow_provider_kontext import exceptions
from airflow_provider_kontext._protocol.defaults import (
    DEFAULT_MIN_GENERATION_SECONDS,
    DEFAULT_NOT_FOUND_GRACE_SECONDS,
    DEFAULT_POLL_INTERVAL_SECONDS,
)
from airflow_provider_kontext._protocol.envelope import status_endpoint
from airflow_provider_kontext._protocol.record import ApiFamily, TaskRecord, TaskStatus
from airflow_provider_kontext._protocol.request import check_task_ids
from airflow_provider_kontext._protocol.retry import is_retryable
from airflow_provider_kontext.exceptions import (
    KontextError,
    KontextTaskNotFoundError,
    KontextTimeoutError,
    KontextTriggerEventError,
)

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence


@dataclass(frozen=True)
class PollSchedule:
    """
    When to poll: a first check after :attr:`first_poll_delay` seconds, then every ``interval``.

    :param interval: The longest gap between two checks once a task may be done; this is the
        ``poll_interval`` of the operators, the sensor and the trigger, and it bounds how late a
        finished task is seen (plus one request's round trip).
    :param first_delay: Seconds before the first check. ``None`` (the default) means
        ``min_generation + interval``: no check while no task can be done yet, and a task done
        right after ``min_generation`` still waits no more than one interval. ``0`` checks at
        once (e.g. when re-attaching to tasks that may have finished long ago).
    :param min_generation: The shortest generation time planned for. ``None`` (default):
        :data:`~airflow_provider_kontext._protocol.defaults.DEFAULT_MIN_GENERATION_SECONDS`
        (5 s) or ``interval`` when that is shorter. A task finishing sooner is seen up to
        ``min_generation + interval - its time`` late.

    Every sleep is clipped to the time left before the deadline, so a long interval never
    overshoots the timeout.
    """

    interval: float = DEFAULT_POLL_INTERVAL_SECONDS
    first_delay: float | None = None
    min_generation: float | None = None

    def __post_init__(self) -> None:
        if not self.interval > 0:  # also refuses NaN
            raise ValueError("poll interval must be positive")
        if self.first_delay is not None and not self.first_delay >= 0:
            raise ValueError("first poll delay must not be negative")
        if self.min_generation is not None and not self.min_generation >= 0:
            raise ValueError("minimum generation time must not be negative")

    @property
    def quiet_period(self) -> float:
        """Seconds after the wait starts during which no task is expected to be done."""
        if self.min_generation is not None:
            return self.min_generation
        return min(DEFAULT_MIN_GENERATION_SECONDS, self.interval)

    @property
    def first_poll_delay(self) -> float:
        """Seconds from the start of the wait (the last create) to the first check."""
        return self.quiet_period + self.interval if self.first_delay is None else self.first_delay

    def delay(self, polls_done: int, *, now: float, end_time: float | None) -> float:
        """Seconds to sleep before the next check, given how many checks were already made."""
        wanted = self.interval if polls_done else self.first_poll_delay
        if end_time is None:
            return wanted
        return max(0.0, min(wanted, end_time - now))


#: A blip must not fail a wait on images that are already paid for; five in a row is not a blip.
MAX_CONSECUTIVE_POLL_FAILURES: Final = 5


class WaitStatus(enum.StrEnum):
    """The fixed vocabulary of a finished wait (and of the trigger's one event)."""

    SUCCESS = "success"  # every task succeeded with an image
    FAILED = "failed"  # every task is terminal and at least one failed
    TIMEOUT = "timeout"  # the deadline passed first; unfinished tasks may still run on kie
    ERROR = "error"  # polling itself failed permanently (auth, credits, unknown task, ...)


@dataclass(frozen=True)
class WaitResult:
    """
    How a wait ended, with one record per task in the order the ids were given.

    ``error_class`` names the :mod:`~airflow_provider_kontext.exceptions` class behind an
    ``error`` so the typed error survives the trip through a trigger event.
    """

    status: WaitStatus
    records: tuple[TaskRecord, ...]
    message: str
    error_class: str | None = None

    @property
    def kie_task_ids(self) -> list[str]:
        return [record.kie_task_id for record in self.records]

    def to_event(self) -> dict[str, Any]:
        """Plain JSON for a ``TriggerEvent`` payload."""
        return {
            "status": self.status.value,
            "kie_task_ids": self.kie_task_ids,
            "records": [record.to_dict() for record in self.records],
            "message": self.message,
            "error_class": self.error_class,
        }

    def result_dicts(self, creates: Sequence[Mapping[str, Any]] | None = None) -> list[dict[str, Any]]:
        """
        The result dicts of this wait, in request order: what the task returns and publishes.

        One source of the result shape for the worker's finish path and for a trigger that ends
        the task itself. ``creates``, the create report (one entry per item, in request order),
        adds each item's ``create_stats`` and puts an item whose create failed (an entry with
        its ``not_created`` result) back in its place; every other entry takes the next record
        of this wait. Pure: no I/O.
        """
        records = [record.to_dict() for record in self.records]
        if creates is None:  # a sensor's wait, or a resume that lost its create report: no estimates
            for result in records:
                _add_cost(result, None)
            return records
        waited = iter(records)
        results = []
        for entry in creates:
            result = dict(entry["not_created"]) if "not_created" in entry else next(waited)
            stats = entry.get("create_stats")
            result["create_stats"] = dict(stats) if stats is not None else None
            _add_cost(result, entry.get("estimated_credits"))
            results.append(result)
        return results

    @classmethod
    def from_event(cls, event: Any) -> WaitResult:
        """
        Validate a trigger event and rebuild the result; fail loudly on anything unexpected.

        A ``None`` event or an unknown status (for example a trigger from another provider
        version) must never read as success.
        """
        if not isinstance(event, dict):
            raise KontextTriggerEventError(f"Expected a kontext trigger event dict, got {event!r}.")
        try:
            status = WaitStatus(str(event.get("status")))
        except ValueError:
            raise KontextTriggerEventError(
                f"Kontext trigger event has an unknown status {event.get('status')!r}: {event!r}."
            ) from None
        raw_records = event.get("records")
        if not isinstance(raw_records, list) or not all(isinstance(r, dict) for r in raw_records):
            raise KontextTriggerEventError(f"Kontext trigger event has no valid records: {event!r}.")
        try:
            records = tuple(TaskRecord.from_dict(record) for record in raw_records)
        except (KeyError, TypeError, ValueError) as err:
            raise KontextTriggerEventError(f"Kontext trigger event has a malformed record ({err}).") from None
        if status is WaitStatus.SUCCESS and not all(record.succeeded for record in records):
            raise KontextTriggerEventError(f"Kontext trigger event says success but a task has no image: {event!r}.")
        error_class = event.get("error_class")
        return cls(
            status,
            records,
            str(event.get("message") or ""),
            error_class if isinstance(error_class, str) else None,
        )

    def raise_for_status(self) -> None:
        """Raise the typed error this result stands for; return quietly on success."""
        if self.status is WaitStatus.SUCCESS:
            return
        if self.status is WaitStatus.FAILED:
            failures = [error for record in self.records if (error := record.failure()) is not None]
            first = failures[0]
            if len(self.records) > 1:
                raise type(first)(
                    f"{len(failures)} of {len(self.records)} kie task(s) failed; first: {first}",
                    status=first.status,
                    error_code=first.error_code,
                    kie_task_id=first.kie_task_id,
                    kie_message=first.kie_message,
                )
            raise first
        if self.status is WaitStatus.TIMEOUT:
            raise KontextTimeoutError(self.message)
        error_cls = getattr(exceptions, self.error_class or "", None)
        if not (isinstance(error_cls, type) and issubclass(error_cls, KontextError)):
            error_cls = KontextError
        raise error_cls(self.message)


def _add_cost(result: dict[str, Any], estimate: Any) -> None:
    """
    ``credits``: what kie reports the task cost, else the catalog's price, with ``credits_estimated`` saying which.

    A task that was never created, or that failed, costs nothing (kie refunds failed tasks).
    """
    if result.get("credits") is not None:
        result["credits_estimated"] = False
    elif result.get("status") != TaskStatus.SUCCESS.value:
        result["credits"], result["credits_estimated"] = 0.0, False
    elif isinstance(estimate, (int, float)) and not isinstance(estimate, bool):
        result["credits"], result["credits_estimated"] = float(estimate), True
    else:
        result["credits_estimated"] = False


class TaskWaiter:
    """
    Tracks what the polls of one wait have seen and decides when the wait is over.

    :param kie_task_ids: The tasks to wait for; results keep this order.
    :param end_time: Wall-clock deadline (``time.time()`` epoch seconds) or ``None`` for none.
        Wall clock, not monotonic: a trigger is serialized and may resume in another process.
    :param not_found_grace: Seconds ``recordInfo is null`` is read as "not persisted yet".
    :param max_consecutive_failures: Transient poll errors in a row tolerated before giving up.
    :param not_found_since: When the grace starts at the latest, e.g. the first poke of a
        rescheduled sensor, which keeps no memory between pokes.
    :param api: The API family of the tasks (one per wait): which status endpoint a poll reads.
    """

    def __init__(
        self,
        kie_task_ids: Sequence[str],
        *,
        end_time: float | None,
        not_found_grace: float = DEFAULT_NOT_FOUND_GRACE_SECONDS,
        max_consecutive_failures: int = MAX_CONSECUTIVE_POLL_FAILURES,
        not_found_since: float | None = None,
        api: ApiFamily = ApiFamily.KONTEXT,
    ) -> None:
        ids = check_task_ids(kie_task_ids)
        self.api = ApiFamily(api)
        self.end_time = end_time
        self.not_found_grace = not_found_grace
        self.max_consecutive_failures = max_consecutive_failures
        self._not_found_since = not_found_since
        self._records: dict[str, TaskRecord] = {task_id: TaskRecord.pending(task_id, api=self.api) for task_id in ids}
        self._first_null: dict[str, float] = {}
        self._consecutive_failures = 0
        self._last_error: BaseException | None = None
        self._fatal: KontextError | None = None

    @property
    def kie_task_ids(self) -> list[str]:
        return list(self._records)

    @property
    def records(self) -> tuple[TaskRecord, ...]:
        return tuple(self._records.values())

    def pending_ids(self) -> list[str]:
        """Tasks still worth polling: not terminal yet."""
        return [task_id for task_id, record in self._records.items() if not record.is_terminal]

    def progress(self) -> str:
        """The progress line both waiting loops log, e.g. ``kie tasks: 37/100 done, 2 failed.``"""
        done = len(self._records) - len(self.pending_ids())
        failed = sum(1 for record in self._records.values() if record.failed)
        return f"kie tasks: {done}/{len(self._records)} done, {failed} failed."

    def timed_out(self, now: float) -> bool:
        return self.end_time is not None and now >= self.end_time

    def on_record(self, record: TaskRecord, *, now: float) -> None:
        """Feed one successful poll."""
        self._consecutive_failures = 0
        task_id = record.kie_task_id
        if task_id not in self._records:
            raise KontextTriggerEventError(f"kie answered for task {task_id}, which this wait does not watch.")
        self._records[task_id] = record
        if record.status is not TaskStatus.PENDING:
            self._first_null.pop(task_id, None)
            return
        first = self._first_null.setdefault(task_id, now)
        if self._not_found_since is not None:
            first = min(first, self._not_found_since)
        if now - first >= self.not_found_grace:
            self._fatal = KontextTaskNotFoundError(
                f"kie has no record of task {task_id} after {now - first:.0f}s "
                f"(recordInfo is null; grace {self.not_found_grace:.0f}s). Check the task id and the "
                "connection's account.",
                kie_task_id=task_id,
                endpoint=status_endpoint(self.api).label,
            )

    def on_error(self, error: BaseException, *, task_id: str | None = None, now: float) -> None:
        """Feed one failed poll: transient errors are tolerated up to a limit, permanent ones end the wait."""
        self._last_error = error
        if not is_retryable(status_endpoint(self.api), error):
            self._fatal = (
                error
                if isinstance(error, KontextError)
                else KontextError(f"Polling kie task {task_id} failed unexpectedly: {error!r}", kie_task_id=task_id)
            )
            return
        self._consecutive_failures += 1
        if self._consecutive_failures >= self.max_consecutive_failures:
            self._fatal = KontextError(
                f"Gave up polling after {self._consecutive_failures} consecutive failed status checks "
                f"(last: {error}). The kie task(s) {self.pending_ids()} were left running; "
                "a retry of this Airflow task may create new ones.",
                kie_task_id=task_id,
            )

    def outcome(self, *, now: float) -> WaitResult | None:
        """The finished result, or ``None`` while the wait should go on."""
        if self._fatal is not None:
            return WaitResult(WaitStatus.ERROR, self.records, str(self._fatal), type(self._fatal).__name__)
        pending = self.pending_ids()
        if not pending:
            failed = [record for record in self.records if not record.succeeded]
            if not failed:
                return WaitResult(WaitStatus.SUCCESS, self.records, f"{len(self._records)} kie task(s) succeeded.")
            return WaitResult(
                WaitStatus.FAILED,
                self.records,
                f"{len(failed)} of {len(self._records)} kie task(s) failed: "
                + "; ".join(str(record.failure()) for record in failed[:3]),
            )
        if self.timed_out(now):
            return self.timeout_result()
        return None

    def timeout_result(self) -> WaitResult:
        deadline = (
            datetime.fromtimestamp(self.end_time, tz=UTC).isoformat(timespec="seconds")
            if self.end_time is not None
            else "none"
        )
        pending = self.pending_ids()
        message = (
            f"{len(pending)} of {len(self._records)} kie task(s) did not finish before the deadline "
            f"{deadline}: {pending}. They may still be running (and billed) on kie; kie keeps results "
            "14 days, so a KontextTaskSensor on these ids can still collect them."
        )
        if self._last_error is not None and self._consecutive_failures:
            message += f" The last {self._consecutive_failures} status check(s) failed: {self._last_error}."
        return WaitResult(WaitStatus.TIMEOUT, self.records, message, KontextTimeoutError.__name__)
