"""When to check a kie task's status: the schedule shared by the hook loop, the sensor and the trigger.

A kie task cannot be done the moment it is created: Kontext generations take seconds to tens
of seconds. A check before the shortest plausible generation only costs a request (and counts
against kie's per-key polling budget). So the default schedule waits
``min_generation + interval`` before its first check and then checks every ``interval``: a
task finishing at any time after ``min_generation`` is seen at most ``interval`` seconds late,
exactly as with a check every ``interval`` from the start, but the checks that could only ever
answer "still running" are skipped. With the default 5 s interval that is the checks at 0 and
5 s, two of the ~5 a typical 20 s generation needs.

``min_generation`` defaults to 5 s but never more than ``interval``: a caller who polls every
0.2 s expects tasks on that time scale (an emulator, a fast mirror), and a fixed 5 s quiet
period would make them wait 25 intervals. Pure and dependency-free (parsed with every DAG file).
"""

from __future__ import annotations

from dataclasses import dataclass

from airflow_provider_kontext._protocol.defaults import DEFAULT_MIN_GENERATION_SECONDS, DEFAULT_POLL_INTERVAL_SECONDS


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


__all__ = ["PollSchedule"]
