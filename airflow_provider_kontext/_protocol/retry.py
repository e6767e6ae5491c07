"""When a failed call is sent again, and how long to wait first: written once, used by every transport.

Reads (record-info, recordInfo, credit, download-url, uploads, result downloads) create nothing, so
they are retried on transport errors, 429, 455, 5xx and unreadable answers.

A create (Flux Kontext ``generate``, Market ``createTask``: :attr:`Endpoint.creates_billable_work`)
costs money. It is retried **only** when kie cannot have accepted it:

* the connection was never made (refused, DNS, connect timeout): nothing was sent;
* kie answered 429: its limiter drops, not queues, rate-limited requests;
* kie answered 455: maintenance, the request was not processed.

A read timeout, a connection dropped after sending, or a 5xx on create is ambiguous; the
envelope layer has already turned those into
:class:`~airflow_provider_kontext.exceptions.KontextSubmissionOutcomeUnknownError`, which is
never retried.

The sync hook runs these rules through :class:`tenacity.Retrying`, the async client through
:class:`tenacity.AsyncRetrying`, built from the same :func:`retry_kwargs`, so the two cannot drift.

The same knowledge decides whether an *Airflow* retry of the whole task may help
(:func:`task_retry_advice`, used by :class:`~airflow_provider_kontext.retry_policy.KontextRetryPolicy`):
a retry re-creates, and pays again for, every image whose task failed.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING, Any, Final

from tenacity import retry_if_exception, stop_after_attempt, wait_random_exponential

from airflow_provider_kontext._protocol.defaults import (
    DEFAULT_BACKOFF_INITIAL,
    DEFAULT_BACKOFF_MAX,
    DEFAULT_MAX_ATTEMPTS,
    KIE_WINDOW_SECONDS,
)
from airflow_provider_kontext.exceptions import (
    KontextAuthError,
    KontextContentPolicyError,
    KontextError,
    KontextFeatureDisabledError,
    KontextInsufficientCreditsError,
    KontextKeyLimitError,
    KontextRateLimitError,
    KontextResponseError,
    KontextServerError,
    KontextServiceUnavailableError,
    KontextSubmissionOutcomeUnknownError,
    KontextTransportError,
    KontextValidationError,
)

if TYPE_CHECKING:
    from tenacity import RetryCallState

    from airflow_provider_kontext._protocol.envelope import Endpoint

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RetryPolicy:
    """
    How hard to try one call.

    :param max_attempts: Total attempts including the first.
    :param backoff_initial: Scale of the jittered exponential backoff, in seconds.
    :param backoff_max: Upper bound of one backoff sleep.
    """

    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    backoff_initial: float = DEFAULT_BACKOFF_INITIAL
    backoff_max: float = DEFAULT_BACKOFF_MAX

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if self.backoff_initial < 0 or self.backoff_max < 0:
            raise ValueError("backoff times must not be negative")


def is_retryable(endpoint: Endpoint, error: BaseException) -> bool:
    """
    Whether sending this request again is safe and may help.

    The rule reads only whether ``endpoint`` is a create, so both families' creates share it. A
    433 (the key's own usage cap, :class:`KontextKeyLimitError`) is refused like a 429 but is not
    retried: the cap counts per hour, per day or in total, so a paced resend meets it again.
    """
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


# ---------------------------------------------------------------------------------------------
# Airflow retries of a whole task (``retry_policy=``, Airflow 3.3+)
#
# The rules above decide whether one HTTP call is sent again. An Airflow retry re-runs the whole
# task: it re-creates every image whose task failed, so it pays again. These rules decide, per
# error, whether that can help; the Airflow side (KontextRetryPolicy) only translates them.


class TaskRetry(Enum):
    """What an Airflow retry of the whole task should do after an error."""

    FAIL = "fail"
    """Fail now: a new try would meet the same error, or could pay twice."""
    RETRY = "retry"
    """Retry after :attr:`TaskRetryAdvice.delay` (still within the task's ``retries``)."""
    DEFAULT = "default"
    """Nothing kie-specific to say: Airflow's normal retry behaviour."""


@dataclass(frozen=True)
class TaskRetryAdvice:
    """
    The retry advice for one error.

    :param action: Fail, retry, or leave it to Airflow.
    :param delay: Seconds before the retry (``RETRY`` only); ``None`` keeps the task's ``retry_delay``.
    :param reason: Why, in words for the task log.
    """

    action: TaskRetry
    delay: float | None = None
    reason: str | None = None


#: How long kie's maintenance (code 455) is waited out before a retry. kie publishes no figure;
#: a retry sooner than a few minutes would most likely spend one of the task's retries on the
#: same maintenance window.
MAINTENANCE_RETRY_DELAY_SECONDS: Final = 300.0

#: Errors a new try cannot fix, with the reason given in the task log. First match wins.
_FAIL_AT_ONCE: Final[tuple[tuple[type[KontextError], str], ...]] = (
    (
        KontextSubmissionOutcomeUnknownError,
        "kie may have created (and billed) the task whose answer was lost; a retry could pay twice",
    ),
    (KontextContentPolicyError, "kie's moderation refused the request; a retry would pay for the same refusal"),
    (KontextValidationError, "the request is invalid; a retry would send the same request"),
    (KontextAuthError, "kie refused the API key; fix the connection"),
    (KontextInsufficientCreditsError, "the kie account has too few credits"),
    (KontextKeyLimitError, "the API key's usage limit in kie's console is reached; raise it or use another key"),
    (KontextFeatureDisabledError, "the feature is disabled for this kie account"),
)


def task_retry_advice(error: BaseException) -> TaskRetryAdvice:
    """
    Whether an Airflow retry of the whole task may help after ``error``, and when to make it.

    * fail at once on what a new try would meet again (content policy, validation, auth, credits,
      the key's usage limit, a disabled feature) and on a create whose outcome is unknown (a
      retry could pay twice);
    * on kie's rate limit, retry after its ``Retry-After`` (or one rate window when it gave
      none: the limit has reset by then); on maintenance, after
      :data:`MAINTENANCE_RETRY_DELAY_SECONDS`. Both mean kie dropped the request unprocessed;
    * anything else (timeouts, failed generations, transport errors, bugs): Airflow's default.
    """
    for error_class, reason in _FAIL_AT_ONCE:
        if isinstance(error, error_class):
            return TaskRetryAdvice(TaskRetry.FAIL, reason=f"{type(error).__name__}: {reason}.")
    if isinstance(error, KontextRateLimitError):
        delay = error.retry_after if error.retry_after is not None else KIE_WINDOW_SECONDS
        return TaskRetryAdvice(TaskRetry.RETRY, delay, f"kie rate limit: retrying after {delay:g} s.")
    if isinstance(error, KontextServiceUnavailableError):
        delay = MAINTENANCE_RETRY_DELAY_SECONDS
        return TaskRetryAdvice(TaskRetry.RETRY, delay, f"kie is in maintenance: retrying after {delay:g} s.")
    return TaskRetryAdvice(TaskRetry.DEFAULT)
