"""Reading kie's answers: every body code, HTTP-status fallback, and the create-ambiguity rule."""

from __future__ import annotations

import json

import pytest

from airflow_provider_kontext import exceptions as exc
from airflow_provider_kontext._protocol.envelope import (
    Endpoint,
    TransportFailure,
    parse_credit_response,
    parse_download_url_response,
    parse_envelope,
    parse_generate_response,
    parse_record_info_response,
    parse_retry_after,
    transport_error,
)
from airflow_provider_kontext._protocol.record import TaskStatus


def body(code: int, msg: str = "", data: object = None) -> bytes:
    return json.dumps({"code": code, "msg": msg, "data": data}).encode()


CODE_TABLE = [
    (401, exc.KontextAuthError),
    (402, exc.KontextInsufficientCreditsError),
    (404, exc.KontextNotFoundError),
    (408, exc.KontextServerError),
    (422, exc.KontextValidationError),
    (429, exc.KontextRateLimitError),
    (455, exc.KontextServiceUnavailableError),
    (500, exc.KontextServerError),
    (501, exc.KontextGenerationFailedError),
    (505, exc.KontextFeatureDisabledError),
    (400, exc.KontextContentPolicyError),
    (418, exc.KontextResponseError),
    (599, exc.KontextServerError),
]


@pytest.mark.parametrize(("code", "error"), CODE_TABLE)
@pytest.mark.parametrize("http_status", [200, 400, 500])
def test_body_code_wins_over_http_status(code: int, error: type[Exception], http_status: int) -> None:
    with pytest.raises(error) as raised:
        parse_envelope(Endpoint.CREDIT, http_status, body(code, "kie says no"))
    assert raised.value.code == code
    assert raised.value.http_status == http_status
    assert "kie says no" in str(raised.value)
    assert "credit" in str(raised.value)


@pytest.mark.parametrize(
    ("http_status", "error"),
    [
        (429, exc.KontextRateLimitError),
        (500, exc.KontextServerError),
        (502, exc.KontextServerError),
        (503, exc.KontextServerError),
        (504, exc.KontextServerError),
        (401, exc.KontextAuthError),
        (403, exc.KontextAuthError),
        (404, exc.KontextNotFoundError),
    ],
)
def test_http_status_classifies_when_body_has_no_code(http_status: int, error: type[Exception]) -> None:
    html = b"<html><body><h1>502 Bad Gateway</h1></body></html>"
    with pytest.raises(error):
        parse_envelope(Endpoint.RECORD_INFO, http_status, html)
    with pytest.raises(error):
        parse_envelope(Endpoint.RECORD_INFO, http_status, b"")


def test_http_error_with_success_body_code_is_still_an_error() -> None:
    with pytest.raises(exc.KontextServerError):
        parse_envelope(Endpoint.CREDIT, 503, body(200, "success", 5))


@pytest.mark.parametrize("raw", [b"", b"   ", b'{"code": 200, "msg": "succ', b"not json", b"[1, 2]", b"<html></html>"])
def test_unreadable_2xx_answer_is_a_response_error(raw: bytes) -> None:
    with pytest.raises(exc.KontextResponseError):
        parse_envelope(Endpoint.CREDIT, 200, raw)


def test_body_without_code_on_2xx_is_a_response_error() -> None:
    with pytest.raises(exc.KontextResponseError):
        parse_envelope(Endpoint.CREDIT, 200, b'{"msg": "ok", "data": 1}')


def test_string_code_is_understood() -> None:
    with pytest.raises(exc.KontextAuthError):
        parse_envelope(Endpoint.CREDIT, 200, b'{"code": "401", "msg": "no"}')


def test_tolerance_500_is_a_validation_error_naming_the_field() -> None:
    with pytest.raises(exc.KontextValidationError) as raised:
        parse_generate_response(200, body(500, "safety tolerance must be between 0 and 2 for editing"))
    assert raised.value.field == "safety_tolerance"


def test_generate_success_returns_task_id() -> None:
    assert parse_generate_response(200, body(200, "success", {"taskId": "abc123"})) == "abc123"


@pytest.mark.parametrize(
    ("http_status", "raw"),
    [
        (200, body(500, "internal error")),
        (500, body(500, "internal error")),
        (502, b"<html>bad gateway</html>"),
        (504, b""),
        (200, b'{"code": 200, "msg": "success", "da'),
        (200, b""),
        (200, body(200, "success", {})),
        (200, body(200, "success", None)),
        (200, body(200, "success", {"taskId": ""})),
    ],
)
def test_ambiguous_create_answers_become_outcome_unknown(http_status: int, raw: bytes) -> None:
    with pytest.raises(exc.KontextSubmissionOutcomeUnknownError) as raised:
        parse_generate_response(http_status, raw)
    assert "may have been created and billed" in str(raised.value)


@pytest.mark.parametrize(
    ("code", "error"),
    [
        (401, exc.KontextAuthError),
        (402, exc.KontextInsufficientCreditsError),
        (422, exc.KontextValidationError),
        (429, exc.KontextRateLimitError),
        (455, exc.KontextServiceUnavailableError),
        (505, exc.KontextFeatureDisabledError),
    ],
)
def test_refused_creates_keep_their_class(code: int, error: type[Exception]) -> None:
    with pytest.raises(error):
        parse_generate_response(200, body(code, "refused"))


def test_rate_limit_carries_retry_after() -> None:
    with pytest.raises(exc.KontextRateLimitError) as raised:
        parse_envelope(Endpoint.GENERATE, 429, body(429, "Rate limit exceeded"), {"Retry-After": "3"})
    assert raised.value.retry_after == 3.0


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("5", 5.0),
        ("0", 0.0),
        ("2.5", 2.5),
        ("100000", 60.0),
        ("Thu, 01 Jan 1970 00:00:10 GMT", 10.0),
        ("Thu, 01 Jan 1970 00:00:00 GMT", 0.0),
        ("soon", None),
        ("", None),
        (None, None),
    ],
)
def test_retry_after_parsing(value: str | None, expected: float | None) -> None:
    assert parse_retry_after(value, now=0.0) == expected


def test_record_info_null_is_pending_not_an_error() -> None:
    record = parse_record_info_response(200, body(422, "recordInfo is null"), task_id="t1")
    assert record.status is TaskStatus.PENDING
    assert record.kie_task_id == "t1"


def test_other_record_info_422_is_a_validation_error() -> None:
    with pytest.raises(exc.KontextValidationError):
        parse_record_info_response(200, body(422, "taskId is required"), task_id="t1")


def test_record_info_401_inside_http_200_is_auth_error_with_task_id() -> None:
    with pytest.raises(exc.KontextAuthError) as raised:
        parse_record_info_response(200, body(401, "You do not have access permissions"), task_id="t9")
    assert raised.value.kie_task_id == "t9"
    assert "t9" in str(raised.value)


def test_credit_and_download_url() -> None:
    assert parse_credit_response(200, body(200, "success", 98.5)) == 98.5
    assert parse_credit_response(200, body(200, "success", "12")) == 12.0
    with pytest.raises(exc.KontextResponseError):
        parse_credit_response(200, body(200, "success", {"balance": 1}))
    assert parse_download_url_response(200, body(200, "success", "https://f.test/x")) == "https://f.test/x"
    with pytest.raises(exc.KontextResponseError):
        parse_download_url_response(200, body(200, "success", None))


@pytest.mark.parametrize("endpoint", list(Endpoint))
def test_transport_failures(endpoint: Endpoint) -> None:
    connect = transport_error(endpoint, TransportFailure.CONNECT, "refused")
    assert isinstance(connect, exc.KontextTransportError)
    assert connect.request_sent is False
    for failure in (TransportFailure.READ_TIMEOUT, TransportFailure.DISCONNECTED):
        error = transport_error(endpoint, failure, "boom")
        if endpoint.creates_billable_work:
            assert isinstance(error, exc.KontextSubmissionOutcomeUnknownError)
            assert error.endpoint == endpoint.label
        else:
            assert isinstance(error, exc.KontextTransportError)
            assert error.request_sent is True
