"""Retry rules: reads are retried, a create only when kie cannot have accepted it."""

from __future__ import annotations

import pytest
import tenacity

from airflow_provider_kontext import exceptions as exc
from airflow_provider_kontext._protocol.envelope import Endpoint
from airflow_provider_kontext._protocol.retry import BackoffWait, RetryPolicy, is_retryable, retry_kwargs

READS = [e for e in Endpoint if not e.creates_billable_work]
CREATES = [e for e in Endpoint if e.creates_billable_work]

# (error, retried on a read, retried on create)
TABLE = [
    (exc.KontextRateLimitError("429"), True, True),
    (exc.KontextServiceUnavailableError("455"), True, True),
    (exc.KontextTransportError("refused", request_sent=False), True, True),
    (exc.KontextTransportError("reset", request_sent=True), True, False),
    (exc.KontextServerError("500"), True, False),
    (exc.KontextResponseError("garbage"), True, False),
    (exc.KontextSubmissionOutcomeUnknownError("?"), False, False),
    (exc.KontextAuthError("401"), False, False),
    (exc.KontextInsufficientCreditsError("402"), False, False),
    (exc.KontextKeyLimitError("433"), False, False),
    (exc.KontextNotFoundError("404"), False, False),
    (exc.KontextValidationError("422"), False, False),
    (exc.KontextFeatureDisabledError("505"), False, False),
    (exc.KontextGenerationFailedError("501"), False, False),
    (exc.KontextContentPolicyError("400"), False, False),
    (ValueError("a bug"), False, False),
]


@pytest.mark.parametrize(("error", "on_read", "on_create"), TABLE)
def test_retry_table(error: BaseException, on_read: bool, on_create: bool) -> None:
    for endpoint in READS:
        assert is_retryable(endpoint, error) is on_read, endpoint
    for endpoint in CREATES:
        assert is_retryable(endpoint, error) is on_create, endpoint


def test_both_families_creates_are_creates_and_nothing_else_is() -> None:
    assert CREATES == [Endpoint.GENERATE, Endpoint.MARKET_CREATE]


def _state(error: BaseException, attempt: int = 1) -> tenacity.RetryCallState:
    state = tenacity.RetryCallState(tenacity.Retrying(), fn=None, args=(), kwargs={})
    state.attempt_number = attempt
    state.set_exception((type(error), error, None))
    return state


def test_wait_honours_retry_after_and_otherwise_jitters_within_cap() -> None:
    wait = BackoffWait(RetryPolicy(backoff_initial=1.0, backoff_max=4.0))
    assert wait(_state(exc.KontextRateLimitError("429", retry_after=7.0))) == 7.0
    for attempt in range(1, 8):
        assert 0.0 <= wait(_state(exc.KontextServerError("500"), attempt)) <= 4.0


def test_retrying_stops_after_max_attempts_and_reraises_the_typed_error() -> None:
    calls = []

    def flaky() -> None:
        calls.append(1)
        raise exc.KontextServerError("still down")

    kwargs = retry_kwargs(Endpoint.RECORD_INFO, RetryPolicy(max_attempts=3, backoff_initial=0, backoff_max=0))
    with pytest.raises(exc.KontextServerError):
        tenacity.Retrying(sleep=lambda _: None, **kwargs)(flaky)
    assert len(calls) == 3


def test_create_is_not_retried_on_server_error() -> None:
    calls = []

    def create() -> None:
        calls.append(1)
        raise exc.KontextSubmissionOutcomeUnknownError("read timeout")

    kwargs = retry_kwargs(Endpoint.GENERATE, RetryPolicy(max_attempts=5, backoff_initial=0, backoff_max=0))
    with pytest.raises(exc.KontextSubmissionOutcomeUnknownError):
        tenacity.Retrying(sleep=lambda _: None, **kwargs)(create)
    assert len(calls) == 1


@pytest.mark.parametrize("kwargs", [{"max_attempts": 0}, {"backoff_initial": -1}, {"backoff_max": -1}])
def test_policy_rejects_nonsense(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        RetryPolicy(**kwargs)  # type: ignore[arg-type]
