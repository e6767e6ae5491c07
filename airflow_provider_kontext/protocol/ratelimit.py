"""Client-side pacing of creates, so a batch stays inside kie's per-account limit.

kie allows 20 new generation tasks per 10 seconds per account and answers the excess with 429
*dropping* the request. Hitting that limit on purpose wastes round trips and, near the edge,
time; pacing the creates ourselves keeps a 100-image batch at the limit without a single 429.
Pure: the caller supplies the clock and does the sleeping.
"""

from __future__ import annotations

import time
from collections import deque
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from collections.abc import Callable

#: kie's documented default: 20 creates per 10 s, per account.
KIE_CREATES_PER_WINDOW: Final = 20
KIE_WINDOW_SECONDS: Final = 10.0
#: Slack added to the window so clock skew between us and kie cannot tip a create over the edge.
WINDOW_MARGIN_SECONDS: Final = 0.25


class CreateRateLimiter:
    """
    A sliding window: at most ``limit`` creates in any ``window`` seconds (plus a small margin).

    :param limit: Creates allowed per window (accounts can be raised by kie support).
    :param window: The window in seconds.
    :param clock: A monotonic clock; injectable for tests.
    """

    def __init__(
        self,
        limit: int = KIE_CREATES_PER_WINDOW,
        window: float = KIE_WINDOW_SECONDS,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise ValueError("the create rate limit must be a positive integer")
        if window <= 0:
            raise ValueError("the rate-limit window must be positive")
        self.limit = limit
        self.window = float(window) + WINDOW_MARGIN_SECONDS
        self._clock = clock
        self._sent: deque[float] = deque()

    def delay(self) -> float:
        """Seconds to wait before the next create may be sent (0 when it may go now)."""
        now = self._clock()
        while self._sent and now - self._sent[0] >= self.window:
            self._sent.popleft()
        if len(self._sent) < self.limit:
            return 0.0
        return self._sent[0] + self.window - now

    def record(self) -> None:
        """Note that a create was just sent."""
        self._sent.append(self._clock())
