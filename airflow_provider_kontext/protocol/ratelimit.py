"""Pacing creates and waiting out kie's rate limit, for tasks that share one kie account.

kie allows 20 new tasks per 10 s per *account* and answers the excess with 429, dropping the
request unprocessed. Every DAG, mapped task and batch of a deployment uses the same key at the
same time, so one task's view of the window is never the whole story. Three rules follow:

* **Every attempt counts, at the moment it is sent.** A create accepted on its second attempt
  used two slots of kie's window, not one (:meth:`CreatePacer.acquire` records before sending).
* **A 429 is never the end while the task has time.** kie dropped the request, so sending it
  again is free and safe; the caller waits until its own deadline, honouring ``Retry-After``.
  The wait spans kie's window with jitter, so tasks refused together do not return together.
* **Tasks sharing an account converge to its limit** by additive increase, multiplicative
  decrease of each task's own allowance (as TCP shares a link): halve it on a 429 (at most
  once per window), win back one create per window of accepted ones. Processes of one host can
  also share the window itself (:class:`SlidingWindow`, implemented over a locked file by the
  hook), which removes the guesswork between them.

Pure: the caller supplies the clock, does the sleeping and sends the requests.
"""

from __future__ import annotations

import random
from collections import deque
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Final, Protocol

from airflow_provider_kontext.exceptions import KontextRateLimitError, KontextServiceUnavailableError
from airflow_provider_kontext.protocol.defaults import KIE_CREATES_PER_WINDOW, KIE_WINDOW_SECONDS

if TYPE_CHECKING:
    from collections.abc import Callable

    from airflow_provider_kontext.exceptions import KontextError
    from airflow_provider_kontext.protocol.retry import RetryPolicy

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


class SlidingWindow(Protocol):
    """The account's recent create attempts, as one process (or every process of a host) sees them."""

    def reserve(self, now: float, limit: int, window: float) -> float:
        """Take a slot and return 0 when fewer than ``limit`` attempts fall in the last ``window``
        seconds; else take nothing and return the seconds until one frees."""
        ...


class LocalWindow:
    """A :class:`SlidingWindow` in this process's memory."""

    def __init__(self) -> None:
        self._sent: deque[float] = deque()

    def reserve(self, now: float, limit: int, window: float) -> float:
        return reserve_in(self._sent, now, limit, window)


def reserve_in(sent: deque[float], now: float, limit: int, window: float) -> float:
    """:meth:`SlidingWindow.reserve` over a deque of send times (oldest first); shared by both windows."""
    while sent and now - sent[0] >= window:
        sent.popleft()
    if len(sent) < limit:
        sent.append(now)
        return 0.0
    # Room comes back when all but limit - 1 of the recorded attempts have left the window.
    return max(sent[len(sent) - limit] + window - now, 1e-3)


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
        from airflow_provider_kontext.protocol.retry import RetryPolicy

        self.limit, window_seconds = check_rate_limit(creates_per_window, window_seconds)
        self.window_seconds = window_seconds + WINDOW_MARGIN_SECONDS
        self._policy = retry_policy or RetryPolicy()
        self._window = window or LocalWindow()
        self._rng = rng
        self._allowance = float(self.limit)
        self._hold_until = 0.0
        self._last_decrease = float("-inf")
        self._not_sent = 0
        self._refusals_in_a_row = 0
        #: When the current spell of 429/455 answers began (``None``: not refused lately).
        self.refused_since: float | None = None
        self.stats = CreateStats()

    @property
    def allowance(self) -> int:
        """Creates this task lets itself send per window now (the AIMD state)."""
        return max(1, int(self._allowance))

    def acquire(self, now: float) -> float:
        """0: send now (the attempt is recorded as sent); else the seconds to wait before asking again."""
        if now < self._hold_until:
            return self._hold_until - now
        wait = self._window.reserve(now, self.allowance, self.window_seconds)
        if wait == 0:
            self.stats.attempts += 1
        return wait

    def on_accepted(self, now: float) -> None:
        """kie gave a task id: end any refusal spell and grow the allowance by one per window."""
        self.stats.accepted += 1
        self._not_sent = 0
        self._refusals_in_a_row = 0
        self.refused_since = None
        self._allowance = min(float(self.limit), self._allowance + 1.0 / self._allowance)

    def on_failure(self, error: KontextError, now: float) -> float | None:
        """
        Seconds to wait before sending the same create again, or ``None``: do not resend, raise.

        Only what kie provably did not accept is resent: 429 and 455 (dropped unprocessed) and a
        connection that was never made. An ambiguous outcome is never resent (it may be billed).
        """
        if isinstance(error, KontextRateLimitError):
            self.stats.rate_limited += 1
            if now - self._last_decrease >= self.window_seconds:
                self._allowance = max(1.0, self._allowance / 2)
                self._last_decrease = now
            # Room may come back anywhere in the next window: aim somewhere in it, not at its start.
            wait = self.window_seconds * (0.2 + 0.8 * self._rng())
            return self._hold(now, error.retry_after, wait)
        if isinstance(error, KontextServiceUnavailableError):
            self.stats.maintenance += 1
            cap = min(MAINTENANCE_MAX_WAIT_SECONDS, max(self._policy.backoff_max, self._policy.backoff_initial))
            wait = min(cap, self._policy.backoff_initial * 2**self._refusals_in_a_row) * (0.5 + 0.5 * self._rng())
            return self._hold(now, error.retry_after, wait)
        from airflow_provider_kontext.protocol.envelope import Endpoint
        from airflow_provider_kontext.protocol.retry import is_retryable

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
