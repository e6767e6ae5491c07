"""When a failed call is sent again, and how long to wait first: written once, used by every transport.

Reads (record-info, credit, download-url, uploads, result downloads) create nothing, so they are
retried on transport errors, 429, 455, 5xx and unreadable answers.

A create costs money. It is retried **only** when kie cannot have accepted it:

* the connection was never made (refused, DNS, connect timeout): nothing was sent;
* kie answered 429: its limiter drops, not queues, rate-limited requests;
* kie answered 455: maintenance, the request was not processed.

A read timeout, a connection dropped after sending, or a 5xx on create is ambiguous; the
envelope layer has already turned those into
:class:`~airflow_provider_kontext.exceptions.KontextSubmissionOutcomeUnknownError`, which is
never retried.

The sync hook runs these rules through :class:`tenacity.Retrying`, the async client through
:class:`tenacity.AsyncRetrying`, built from the same :func:`retry_kwargs`, so the two cannot drift.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tenacity import retry_if_exception, stop_after_attempt, wait_random_exponential

from airflow_provider_kontext.exceptions import (
    KontextRateLimitError,
    KontextResponseError,
    KontextServerError,
    KontextServiceUnavailableError,
    KontextTransportError,
)

if TYPE_CHECKING:
    from tenacity import RetryCallState

    from airflow_provider_kontext.protocol.envelope import Endpoint

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RetryPolicy:
    """
    How hard to try one call.

    :param max_attempts: Total attempts including the first.
    :param backoff_initial: Scale of the jittered exponential backoff, in seconds.
    :param backoff_max: Upper bound of one backoff sleep.
    """

    max_attempts: int = 5
    backoff_initial: float = 1.0
    backoff_max: float = 30.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if self.backoff_initial < 0 or self.backoff_max < 0:
            raise ValueError("backoff times must not be negative")


def is_retryable(endpoint: Endpoint, error: BaseException) -> bool:
    """Whether sending this request again is safe and may help."""
    if isinstance(error, (KontextRateLimitError, KontextServiceUnavailableError)):
        return True  # kie dropped the request unprocessed
    if isinstance(error, KontextTransportError):
        return not error.request_sent or not endpoint.creates_billable_work
    if endpoint.creates_billable_work:
        return False
    return isinstance(error, (KontextServerError, KontextResponseError))


class BackoffWait:
    """
    Tenacity wait strategy: the server's ``Retry-After`` when it gave one, else full-jitter backoff.

    ``Retry-After`` was already clamped when it was parsed, so a hostile or buggy header cannot
    park a worker for an hour.
    """

    def __init__(self, policy: RetryPolicy) -> None:
        self._exponential = wait_random_exponential(multiplier=policy.backoff_initial, max=policy.backoff_max)

    def __call__(self, retry_state: RetryCallState) -> float:
        outcome = retry_state.outcome
        error = outcome.exception() if outcome is not None else None
        if isinstance(error, KontextRateLimitError) and error.retry_after is not None:
            return error.retry_after
        return float(self._exponential(retry_state))


def retry_kwargs(endpoint: Endpoint, policy: RetryPolicy) -> dict[str, Any]:
    """Keyword arguments for ``tenacity.Retrying``/``AsyncRetrying`` around one call to ``endpoint``."""

    def _log_retry(retry_state: RetryCallState) -> None:
        outcome = retry_state.outcome
        error = outcome.exception() if outcome is not None else None
        sleep = retry_state.next_action.sleep if retry_state.next_action else 0.0
        log.warning(
            "kie %s attempt %d/%d failed (%s); retrying in %.1fs.",
            endpoint.label,
            retry_state.attempt_number,
            policy.max_attempts,
            error,
            sleep,
        )

    return {
        "retry": retry_if_exception(lambda error: is_retryable(endpoint, error)),
        "wait": BackoffWait(policy),
        "stop": stop_after_attempt(policy.max_attempts),
        "before_sleep": _log_retry,
        "reraise": True,
    }
