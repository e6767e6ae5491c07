"""KontextHook over real HTTP against the emulator: quirks, faults, and never paying twice."""

from __future__ import annotations

import io
import socket

import pytest

from airflow_provider_kontext import exceptions as exc
from airflow_provider_kontext._protocol.polling import WaitStatus
from airflow_provider_kontext._protocol.record import TaskStatus
from airflow_provider_kontext._protocol.settings import USER_AGENT
from airflow_provider_kontext.emulator import EmulatorServer
from airflow_provider_kontext.hooks.kontext import KontextHook
from tests.conftest import API_KEY, connection_json, requests_to


def stats(emulator: EmulatorServer) -> dict:
    return emulator.stats()


def test_create_poll_and_download_text_to_image(emulator: EmulatorServer) -> None:
    hook = KontextHook()
    task_id = hook.create_task("a lighthouse at dusk", aspect_ratio="1:1", output_format="png")
    record = hook.wait_for_task(task_id, poll_interval=0.1, timeout=30)
    assert record.status is TaskStatus.SUCCESS
    assert record.prompt == "a lighthouse at dusk"
    assert record.aspect_ratio == "1:1"
    buffer = io.BytesIO()
    image = hook.download_image(record.result_image_url or "", buffer)
    assert image.content_type == "image/png"
    assert buffer.getvalue().startswith(b"\x89PNG")
    assert image.size == len(buffer.getvalue())
    s = stats(emulator)
    assert s["creates_accepted"] == 1
    assert s["last_user_agent"] == USER_AGENT
    assert s["file_requests_with_auth"] == 0, "the API key must never reach the image host"


def test_record_info_null_reads_as_pending(emulator: EmulatorServer) -> None:
    emulator.configure(record_info_null_seconds=30)
    hook = KontextHook()
    task_id = hook.create_task("x")
    assert hook.get_task(task_id).status is TaskStatus.PENDING


def test_429_with_retry_after_then_success_creates_exactly_one_task(emulator: EmulatorServer) -> None:
    emulator.inject_fault("generate", "http", count=2, status=429, retry_after=0)
    task_id = KontextHook().create_task("a cat")
    assert task_id
    assert requests_to(emulator, "generate") == 3
    assert stats(emulator)["creates_accepted"] == 1


@pytest.mark.parametrize("fault", [{"kind": "code", "code": 429}, {"kind": "code", "code": 455}])
def test_create_retried_on_body_429_and_455(emulator: EmulatorServer, fault: dict) -> None:
    emulator.inject_fault("generate", count=1, **fault)
    KontextHook().create_task("a cat")
    assert requests_to(emulator, "generate") == 2
    assert stats(emulator)["creates_accepted"] == 1


def test_read_timeout_on_create_is_not_retried(emulator: EmulatorServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_KONTEXT_DEFAULT", connection_json(emulator.base_url, read_timeout=0.5))
    emulator.inject_fault("generate", "slow", count=1, delay=1.5)
    with pytest.raises(exc.KontextSubmissionOutcomeUnknownError, match="billed"):
        KontextHook().create_task("a slow cat")
    assert requests_to(emulator, "generate") == 1
    assert stats(emulator)["creates_accepted"] == 1  # kie did create it: resending would pay twice


@pytest.mark.parametrize(("kind", "created"), [("drop", 0), ("drop_after_accept", 1)])
def test_dropped_connection_on_create_is_ambiguous_and_not_retried(
    emulator: EmulatorServer, kind: str, created: int
) -> None:
    emulator.inject_fault("generate", kind, count=1)
    with pytest.raises(exc.KontextSubmissionOutcomeUnknownError):
        KontextHook().create_task("a cat")
    assert requests_to(emulator, "generate") == 1
    assert stats(emulator)["creates_accepted"] == created


@pytest.mark.parametrize(
    "fault",
    [
        {"kind": "http", "status": 500},
        {"kind": "http", "status": 502},
        {"kind": "code", "code": 500},
        {"kind": "html"},
        {"kind": "malformed_json"},
        {"kind": "empty_body"},
    ],
)
def test_server_errors_on_create_are_ambiguous(emulator: EmulatorServer, fault: dict) -> None:
    emulator.inject_fault("generate", count=1, **fault)
    with pytest.raises(exc.KontextSubmissionOutcomeUnknownError):
        KontextHook().create_task("a cat")
    assert requests_to(emulator, "generate") == 1


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_connection_refused_on_create_is_retried_then_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "AIRFLOW_CONN_KONTEXT_DEFAULT", connection_json(f"http://127.0.0.1:{_closed_port()}", max_attempts=3)
    )
    with pytest.raises(exc.KontextTransportError) as raised:
        KontextHook().create_task("a cat")
    assert raised.value.request_sent is False
    assert API_KEY not in str(raised.value)


def test_401_inside_http_200_is_an_auth_error(emulator: EmulatorServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_KONTEXT_DEFAULT", connection_json(emulator.base_url, api_key="wrong-key"))
    with pytest.raises(exc.KontextAuthError) as raised:
        KontextHook().create_task("a cat")
    assert raised.value.http_status == 200
    assert raised.value.code == 401
    assert stats(emulator)["creates_accepted"] == 0


def test_402_when_out_of_credits(emulator: EmulatorServer) -> None:
    emulator.configure(credits=0)
    with pytest.raises(exc.KontextInsufficientCreditsError):
        KontextHook().create_task("a cat")


def test_validation_error_sends_nothing(emulator: EmulatorServer) -> None:
    with pytest.raises(exc.KontextValidationError) as raised:
        KontextHook().create_task("edit", input_image="https://x.test/a.png", safety_tolerance=5)
    assert raised.value.field == "safety_tolerance"
    assert sum(stats(emulator)["requests"].values()) == 0


def test_success_without_url_is_a_typed_failure(emulator: EmulatorServer) -> None:
    hook = KontextHook()
    task_id = hook.create_task("a cat [emulator:no_url]")
    with pytest.raises(exc.KontextMissingResultError, match=task_id):
        hook.wait_for_task(task_id, poll_interval=0.1, timeout=30)


@pytest.mark.parametrize(
    ("marker", "error"),
    [
        ("content_policy", exc.KontextContentPolicyError),
        ("generate_failed", exc.KontextGenerationFailedError),
        ("create_failed", exc.KontextTaskCreateFailedError),
    ],
)
def test_failed_tasks_raise_their_typed_error(emulator: EmulatorServer, marker: str, error: type) -> None:
    hook = KontextHook()
    task_id = hook.create_task(f"a cat [emulator:{marker}]")
    with pytest.raises(error) as raised:
        hook.wait_for_task(task_id, poll_interval=0.1, timeout=30)
    assert raised.value.kie_task_id == task_id


@pytest.mark.parametrize(
    "fault",
    [
        {"kind": "http", "status": 503},
        {"kind": "http", "status": 429, "retry_after": 0},
        {"kind": "code", "code": 500},
        {"kind": "code", "code": 455},
        {"kind": "malformed_json"},
        {"kind": "html"},
        {"kind": "empty_body"},
        {"kind": "drop"},
    ],
)
def test_reads_are_retried(emulator: EmulatorServer, fault: dict) -> None:
    hook = KontextHook()
    task_id = hook.create_task("a cat")
    emulator.inject_fault("record-info", count=2, **fault)
    assert hook.get_task(task_id).kie_task_id == task_id
    assert requests_to(emulator, "record-info") == 3


def test_wait_tolerates_transient_poll_errors(emulator: EmulatorServer) -> None:
    hook = KontextHook()
    task_id = hook.create_task("a cat")
    emulator.inject_fault("record-info", "http", count=3, status=502)
    result = hook.wait_for_tasks([task_id], poll_interval=0.1, timeout=30)
    assert result.status is WaitStatus.SUCCESS
    assert stats(emulator)["creates_accepted"] == 1


def test_wait_times_out_with_a_typed_error(emulator: EmulatorServer) -> None:
    hook = KontextHook()
    task_id = hook.create_task("a cat [emulator:slow=30]")
    with pytest.raises(exc.KontextTimeoutError, match=task_id):
        hook.wait_for_task(task_id, poll_interval=0.1, timeout=0.5)


def test_credits_and_test_connection_create_nothing(emulator: EmulatorServer, monkeypatch: pytest.MonkeyPatch) -> None:
    emulator.configure(credits=321)
    hook = KontextHook()
    assert hook.get_credits() == 321
    ok, message = hook.test_connection()
    assert ok
    assert "321" in message
    assert requests_to(emulator, "generate") == 0
    monkeypatch.setenv("AIRFLOW_CONN_KONTEXT_DEFAULT", connection_json(emulator.base_url, api_key="wrong"))
    ok, message = KontextHook().test_connection()
    assert not ok
    assert "API key" in message


def test_download_falls_back_to_download_url_when_direct_fetch_is_refused(emulator: EmulatorServer) -> None:
    hook = KontextHook()
    record = hook.wait_for_task(hook.create_task("a cat"), poll_interval=0.1, timeout=30)
    emulator.inject_fault("file", "forbidden", count=1)
    buffer = io.BytesIO()
    image = hook.download_image(record.result_image_url or "", buffer)
    assert image.via_download_url
    assert buffer.getvalue()[:2] == b"\xff\xd8"  # JPEG, kie's default format
    assert requests_to(emulator, "download-url") == 1
    assert stats(emulator)["file_requests_with_auth"] == 0


def test_download_enforces_size_cap(emulator: EmulatorServer) -> None:
    hook = KontextHook()
    record = hook.wait_for_task(hook.create_task("a cat"), poll_interval=0.1, timeout=30)
    with pytest.raises(exc.KontextDownloadError, match="limit"):
        hook.download_image(record.result_image_url or "", io.BytesIO(), max_bytes=100)
    assert requests_to(emulator, "file") == 1, "an over-size image is not fetched again"


def test_download_retry_starts_the_file_over(emulator: EmulatorServer) -> None:
    hook = KontextHook()
    record = hook.wait_for_task(hook.create_task("a cat"), poll_interval=0.1, timeout=30)
    expected = io.BytesIO()
    hook.download_image(record.result_image_url or "", expected)
    emulator.inject_fault("file", "http", count=2, status=503)
    buffer = io.BytesIO(b"prefix:")
    buffer.seek(0, io.SEEK_END)
    hook.download_image(record.result_image_url or "", buffer)
    assert buffer.getvalue() == b"prefix:" + expected.getvalue()


def test_missing_api_key_names_the_connection(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_KONTEXT_DEFAULT", '{"conn_type": "kontext", "host": "http://127.0.0.1:1"}')
    with pytest.raises(exc.KontextConfigurationError, match="kontext_default"):
        KontextHook().get_credits()


def test_repr_has_no_secret(emulator: EmulatorServer) -> None:
    hook = KontextHook()
    hook.get_credits()
    assert API_KEY not in repr(hook)
    assert API_KEY not in repr(hook.settings)


def test_each_family_reads_its_own_tasks_and_a_wrong_family_is_not_found(emulator: EmulatorServer) -> None:
    from airflow_provider_kontext._protocol.polling import TaskWaiter, WaitStatus
    from airflow_provider_kontext._protocol.record import ApiFamily

    hook = KontextHook()
    kie_task_id = hook.create_market_task("z-image", {"prompt": "a kite", "aspect_ratio": "1:1"})
    assert hook.get_task(kie_task_id, api=ApiFamily.MARKET).api is ApiFamily.MARKET
    # Read as a Flux Kontext task it does not exist there: never misread as some other task.
    waiter = TaskWaiter([kie_task_id], end_time=None, not_found_grace=0.0)
    outcome = hook.poll(waiter)
    assert outcome is not None and outcome.status is WaitStatus.ERROR
    assert outcome.error_class == "KontextTaskNotFoundError"
