"""Pacing creates and waiting out kie's rate limit, for tasks that share one kie account.

kie allows 20 new tasks per 10 s per *account* and answers the excess with 429, dropping the
request unprocessed. Every DAG, mapped task and batch of a deployment uses the same key at the
same time, so one task's view of the window is never the whole story. Three rules follow:

* **Every attempt counts, at the moment it is sent.** A create accepted on its second attempt
  used two slots of kie's window, not one (:meth:`CreatePacer.acquire` records before sending).
* **A 429 is never the end while the task has time.** kie dropped the request, so sending it
  again is free and safe; the caller waits until its own deadline, honouring ``Retry-After``.
  Without one it waits out the window that was full, with jitter, so tasks refused together do
  not return together.
* **Tasks sharing an account converge to its limit** by additive increase, multiplicative
  decrease of the allowance (as TCP shares a link): halve it on a 429 (at most once per
  window), win back about one create per window of accepted ones. Processes of one host share
  the window and the allowance (:class:`SlidingWindow`, over a locked file in the hook), which
  removes the guesswork between them; tasks on other hosts are seen only through kie's 429s.

Pure: the caller supplies the clock, does the sleeping and sends the requests.
"""

from __future__ import annotations

import bisect
import random
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Final, Protocol, TypeVar

from airflow_provider_kontext._protocol.defaults import KIE_CREATES_PER_WINDOW, KIE_WINDOW_SECONDS
from airflow_provider_kontext.exceptions import KontextRateLimitError, KontextServiceUnavailableError

if TYPE_CHECKING:
    from collections.abc import Callable

    from airflow_provider_kontext._protocol.retry import RetryPolicy
    from airflow_provider_kontext.exceptions import KontextError

T = TypeVar("T")

# Operators validate their rate-limit arguments with check_rate_limit at DAG-parse time, so this
# module imports only what that needs; the retry rules (tenacity) load when a pacer is built.
#: Slack added to the window so clock skew between us and kie cannot tip a create over the edge.
WINDOW_MARGIN_SECONDS: Final = 0.25
#: Longest single wait after a 455 (maintenance) when kie names no time.
MAINTENANCE_MAX_WAIT_SECONDS: Final = 60.0


def check_rate_limit(creates_per_window: Any, window_seconds: Any) -> tuple[int, float]:
    """Validate an account limit (connection extra or operator argument); raise ``ValueError``."""
    if isinstance(creates_per_window, bool) or not isinstance(creates_per_window, int) or creates_per_window < 1:
        raise ValueError(f"max_creates_per_window must be a positive integer, got {creates_per_window!r}")
    if isinstance(window_seconds, bool) or not isinstance(window_seconds, int | float) or window_seconds <= 0:
        raise ValueError(f"rate_window_seconds must be a positive number, got {window_seconds!r}")
    return creates_per_window, float(window_seconds)


@dataclass
class WindowState:
    """
    What the tasks sharing a window agree on: their recent create attempts and the allowance.

    :param sent: Times of the attempts still in the window, oldest first.
    :param allowance: Creates per window the account takes now, by what kie answered (``None``:
        nothing learnt yet, so the configured limit).
    :param last_decrease: When a 429 last halved the allowance.
    """

    sent: list[float] = field(default_factory=list)
    allowance: float | None = None
    last_decrease: float = float("-inf")


class SlidingWindow(Protocol):
    """Where a :class:`WindowState` lives: one process's memory, or a file every process of a host shares."""

    def transact(self, update: Callable[[WindowState], T]) -> T:
        """Run ``update`` on the state with no other task in between, keep what it changed, return its value."""
        ...


class LocalWindow:
    """A :class:`SlidingWindow` in this process's memory."""

    def __init__(self) -> None:
        self._state = WindowState()

    def transact(self, update: Callable[[WindowState], T]) -> T:
        return update(self._state)


@dataclass
class CreateStats:
    """What getting creates accepted cost one task: a small summary for logs and results."""

    attempts: int = 0
    accepted: int = 0
    rate_limited: int = 0
    maintenance: int = 0
    waited_seconds: float = 0.0

    def since(self, earlier: CreateStats) -> CreateStats:
        """What was spent after ``earlier`` (a copy of these stats taken before)."""
        return CreateStats(
            attempts=self.attempts - earlier.attempts,
            accepted=self.accepted - earlier.accepted,
            rate_limited=self.rate_limited - earlier.rate_limited,
            maintenance=self.maintenance - earlier.maintenance,
            waited_seconds=self.waited_seconds - earlier.waited_seconds,
        )

    def to_dict(self) -> dict[str, Any]:
        summary = asdict(self)
        summary["waited_seconds"] = round(self.waited_seconds, 1)
        return summary


class CreatePacer:
    """
    One task's create attempts: when the next may go, and what a failed one means.

    :param creates_per_window: The account's limit (kie's default 20; kie raises it on request).
    :param window_seconds: The limit's window (kie: 10 s).
    :param retry_policy: Bounds the resends of creates that never reached kie (connection
        refused); 429s and 455s are bounded by the caller's deadline instead.
    :param window: Where attempts are recorded; default this process's memory.
    :param rng: A ``random.random``-like source, injectable for tests.
    """

    def __init__(
        self,
        creates_per_window: int = KIE_CREATES_PER_WINDOW,
        window_seconds: float = KIE_WINDOW_SECONDS,
        *,
        retry_policy: RetryPolicy | None = None,
        window: SlidingWindow | None = None,
        rng: Callable[[], float] = random.random,
    ) -> None:
        from airflow_provider_kontext._protocol.retry import RetryPolicy

        self.limit, window_seconds = check_rate_limit(creates_per_window, window_seconds)
        self.window_seconds = window_seconds + WINDOW_MARGIN_SECONDS
        self._policy = retry_policy or RetryPolicy()
        self._window = window or LocalWindow()
        self._rng = rng
        self._hold_until = 0.0
        self._sent_at: float | None = None
        self._not_sent = 0
        self._refusals_in_a_row = 0
        #: When the current spell of 429/455 answers began (``None``: not refused lately).
        self.refused_since: float | None = None
        self.stats = CreateStats()

    @property
    def allowance(self) -> int:
        """Creates per window the account takes now (the AIMD state, shared with the window)."""
        return self._window.transact(self._allowed)

    def _allowed(self, state: WindowState) -> int:
        allowance = self.limit if state.allowance is None else state.allowance
        return max(1, min(self.limit, int(allowance)))

    def acquire(self, now: float) -> float:
        """0: send now (the attempt is recorded as sent); else the seconds to wait before asking again."""
        if now < self._hold_until:
            return self._hold_until - now
        now = round(now, 6)  # as a shared window stores it, so the mark can be found again

        def reserve(state: WindowState) -> float:
            sent = state.sent
            drop = bisect.bisect_right(sent, now - self.window_seconds)
            del sent[:drop]
            allowed = self._allowed(state)
            if len(sent) < allowed:
                bisect.insort(sent, now)
                return 0.0
            # Room comes back when all but allowed - 1 of the recorded attempts have left the window.
            return max(sent[len(sent) - allowed] + self.window_seconds - now, 1e-3)

        wait = self._window.transact(reserve)
        if wait == 0:
            self.stats.attempts += 1
            self._sent_at = now
        return wait

    def _answered(self, state: WindowState, now: float) -> None:
        """
        Move this attempt's mark from when it was sent to when its answer came.

        kie counts a create when it *arrives*, which on a busy worker can be well after we sent
        it; the answer's arrival is a time kie's count cannot be later than, so the window stays
        on the safe side of kie's without guessing a margin.
        """
        if self._sent_at is None:
            return
        index = bisect.bisect_left(state.sent, self._sent_at)
        if index < len(state.sent) and state.sent[index] == self._sent_at:
            del state.sent[index]
            bisect.insort(state.sent, round(max(now, self._sent_at), 6))
        self._sent_at = None

    def on_accepted(self, now: float) -> None:
        """kie gave a task id: end any refusal spell and grow the allowance."""
        self.stats.accepted += 1
        self._not_sent = 0
        self._refusals_in_a_row = 0
        self.refused_since = None

        def grow(state: WindowState) -> None:
            self._answered(state, now)
            if state.allowance is None:
                return
            # Additive increase: about one more create per window of accepted ones; twice as
            # fast once two windows passed without a 429, so a lull is used.
            step = 1.0 if now - state.last_decrease > 2 * self.window_seconds else 1.0 / state.allowance
            state.allowance = None if state.allowance + step >= self.limit else state.allowance + step

        self._window.transact(grow)

    def on_failure(self, error: KontextError, now: float) -> float | None:
        """
        Seconds to wait before sending the same create again, or ``None``: do not resend, raise.

        Only what kie provably did not accept is resent: 429 and 455 (dropped unprocessed) and a
        connection that was never made. An ambiguous outcome is never resent (it may be billed).
        """
        if isinstance(error, KontextRateLimitError):
            self.stats.rate_limited += 1

            def shrink(state: WindowState) -> None:
                self._answered(state, now)
                if now - state.last_decrease >= self.window_seconds:
                    state.allowance = max(1.0, self._allowed(state) / 2)
                    state.last_decrease = now

            self._window.transact(shrink)
            # The account's window was full when kie answered; its attempts leave within one
            # window. Come back just past it, spread over a fifth of it so a crowd refused
            # together does not return together.
            wait = self.window_seconds * (1.0 + 0.2 * self._rng())
            return self._hold(now, error.retry_after, wait)
        self._window.transact(lambda state: self._answered(state, now))
        if isinstance(error, KontextServiceUnavailableError):
            self.stats.maintenance += 1
            cap = min(MAINTENANCE_MAX_WAIT_SECONDS, max(self._policy.backoff_max, self._policy.backoff_initial))
            wait = min(cap, self._policy.backoff_initial * 2**self._refusals_in_a_row) * (0.5 + 0.5 * self._rng())
            return self._hold(now, error.retry_after, wait)
        from airflow_provider_kontext._protocol.envelope import Endpoint
        from airflow_provider_kontext._protocol.retry import is_retryable

        if is_retryable(Endpoint.GENERATE, error):  # a connection never made: nothing was sent
            self._not_sent += 1
            if self._not_sent >= self._policy.max_attempts:
                return None
            wait = min(self._policy.backoff_max, self._policy.backoff_initial * 2 ** (self._not_sent - 1))
            self._hold_until = now + wait * self._rng()
            return self._hold_until - now
        return None

    def _hold(self, now: float, retry_after: float | None, backoff: float) -> float:
        self._refusals_in_a_row += 1
        if self.refused_since is None:
            self.refused_since = now
        # Retry-After is exact, so a crowd told the same number would come back in lockstep.
        wait = retry_after + self._rng() * WINDOW_MARGIN_SECONDS * 4 if retry_after is not None else backoff
        self._hold_until = now + wait
        return wait
