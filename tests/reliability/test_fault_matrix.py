"""The fault matrix: every endpoint the provider calls x every fault the emulator can inject.

Each cell asserts the defined outcome — retried then succeeded, or a typed error whose message
names the cause — and the emulator's create count: never two tasks for one image.

The billed create and the status read run once per API family (Flux Kontext's ``generate`` and
``record-info``, the Market's ``jobs-create`` and ``jobs-record-info``) with the same
expectations: the money rules do not depend on which endpoint took the money. The account and
file endpoints are shared by both families, so they run once.
"""

from __future__ import annotations

import io
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from airflow_provider_kontext import exceptions as exc
from airflow_provider_kontext._protocol.record import ApiFamily
from airflow_provider_kontext.emulator import EmulatorServer
from airflow_provider_kontext.hooks.kontext import KontextHook
from tests.conftest import connection_json, requests_to

# A short read timeout so "slow" faults time out quickly; the fault delay exceeds it.
READ_TIMEOUT = 0.5
SLOW = {"kind": "slow", "delay": 1.2}

FAULTS: dict[str, dict[str, Any]] = {
    **{f"code {code}": {"kind": "code", "code": code} for code in (401, 402, 404, 422, 429, 455, 500, 501, 505)},
    "http 429 + Retry-After": {"kind": "http", "status": 429, "retry_after": 0},
    "http 429 no Retry-After": {"kind": "http", "status": 429},
    **{f"http {status}": {"kind": "http", "status": status} for status in (500, 502, 503, 504)},
    "malformed json": {"kind": "malformed_json"},
    "html error page": {"kind": "html"},
    "empty body": {"kind": "empty_body"},
    "dropped before answer": {"kind": "drop"},
    "read timeout": SLOW,
}

RETRIED = "retried, then succeeded"
PERMANENT_READ_ERRORS: dict[str, type[Exception]] = {
    "code 401": exc.KontextAuthError,
    "code 402": exc.KontextInsufficientCreditsError,
    "code 404": exc.KontextNotFoundError,
    "code 422": exc.KontextValidationError,
    "code 501": exc.KontextGenerationFailedError,
    "code 505": exc.KontextFeatureDisabledError,
}


def create_outcome(fault: str) -> tuple[Any, int]:
    """(expected result, tasks kie created) for a fault on the billed create."""
    if fault in ("code 429", "code 455", "http 429 + Retry-After", "http 429 no Retry-After"):
        return RETRIED, 1  # kie dropped the request: safe to resend
    if fault in PERMANENT_READ_ERRORS:
        return PERMANENT_READ_ERRORS[fault], 0  # kie refused: nothing created
    # 5xx, unreadable answers, a dropped connection, a read timeout: kie may have created it.
    return exc.KontextSubmissionOutcomeUnknownError, 1 if fault == "read timeout" else 0


PENDING = "read as a task not persisted yet"


def read_outcome(endpoint: str, fault: str) -> Any:
    if endpoint == "status" and fault == "code 422":
        return PENDING  # kie's "recordInfo is null" quirk: code 422 on either status read means "not yet"
    return PERMANENT_READ_ERRORS.get(fault, RETRIED)


@dataclass(frozen=True)
class Family:
    """An API family as the matrix sees it: how to create one image, and the emulator's names of its two endpoints."""

    api: ApiFamily
    create_endpoint: str
    status_endpoint: str
    create: Callable[[KontextHook, str], str]


FAMILIES: dict[str, Family] = {
    "kontext": Family(
        ApiFamily.KONTEXT, "generate", "record-info", lambda hook, prompt: hook.create_task(prompt, output_format="png")
    ),
    "market": Family(
        ApiFamily.MARKET,
        "jobs-create",
        "jobs-record-info",
        lambda hook, prompt: hook.create_market_task(
            "flux-2/pro-text-to-image", {"prompt": prompt, "aspect_ratio": "1:1", "resolution": "1K"}
        ),
    ),
}


@pytest.fixture
def family(request: pytest.FixtureRequest) -> Family:
    """The API family of the cell (``indirect`` parametrization); Flux Kontext where the cell has none."""
    return FAMILIES[getattr(request, "param", "kontext")]


Call = Callable[[KontextHook, dict[str, Any]], Any]


def _status(hook: KontextHook, ctx: dict[str, Any]) -> Any:
    return hook.get_task(ctx["task_id"], api=ctx["family"].api)


def _credits(hook: KontextHook, ctx: dict[str, Any]) -> Any:
    return hook.get_credits()


def _download_url(hook: KontextHook, ctx: dict[str, Any]) -> Any:
    return hook.get_download_url(ctx["result_url"])


def _upload(hook: KontextHook, ctx: dict[str, Any]) -> Any:
    return hook.upload_file(ctx["image_path"])


#: read -> (the emulator's endpoint name, the call); ``None``: the status endpoint of the cell's family.
READS: dict[str, tuple[str | None, Call]] = {
    "status": (None, _status),
    "credits": ("credit", _credits),
    "download-url": ("download-url", _download_url),
    "upload": ("upload-base64", _upload),
}

#: Every family's billed create, parametrized ``indirect`` into the ``family`` fixture.
FAMILY_CELLS = [pytest.param(name, id=name) for name in FAMILIES]
#: (read, family): the status read once per family, the shared account and file reads once.
READ_CELLS = [
    pytest.param(read, name, id=f"{read}-{name}" if endpoint is None else read)
    for read, (endpoint, _) in READS.items()
    for name in (FAMILIES if endpoint is None else ["kontext"])
]
#: (endpoint, family) of the refused-connection cells: each family's create and status, the shared reads once.
CONNECT_CELLS = [pytest.param("create", name, id=f"create-{name}") for name in FAMILIES] + READ_CELLS


def endpoint_name(read: str, family: Family) -> str:
    name = READS[read][0]
    return family.status_endpoint if name is None else name


@pytest.fixture
def ready(emulator: EmulatorServer, family: Family, monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> dict[str, Any]:
    """A finished task of the cell's family, its result URL, an image on disk, a hook with a short read timeout."""
    emulator.configure(generation_seconds=0.2, record_info_null_seconds=0.0)
    hook = KontextHook()
    task_id = family.create(hook, "matrix fixture")
    record = hook.wait_for_task(task_id, poll_interval=0.05, timeout=30, api=family.api)
    buffer = io.BytesIO()
    hook.download_image(record.result_image_url or "", buffer)
    image = tmp_path / "in.png"
    image.write_bytes(buffer.getvalue())
    monkeypatch.setenv("AIRFLOW_CONN_KONTEXT_DEFAULT", connection_json(emulator.base_url, read_timeout=READ_TIMEOUT))
    return {"task_id": task_id, "result_url": record.result_image_url, "image_path": str(image), "family": family}


def created(emulator: EmulatorServer, family: Family) -> int:
    """Tasks the emulator accepted on ``family``'s create endpoint: the paid ones."""
    return int(emulator.stats()["creates_accepted_by_api"].get(family.api.value, 0))


@pytest.mark.parametrize("fault", list(FAULTS))
@pytest.mark.parametrize("family", FAMILY_CELLS, indirect=True)
def test_create(ready: dict[str, Any], emulator: EmulatorServer, family: Family, fault: str) -> None:
    name = family.create_endpoint
    before, all_before = created(emulator, family), int(emulator.stats()["creates_accepted"])
    sent_before = requests_to(emulator, name)
    expected, new_tasks = create_outcome(fault)
    emulator.inject_fault(name, count=1, **FAULTS[fault])
    if expected is RETRIED:
        assert family.create(KontextHook(), "a matrix image")
        assert requests_to(emulator, name) - sent_before == 2
    else:
        with pytest.raises(expected) as raised:
            family.create(KontextHook(), "a matrix image")
        assert requests_to(emulator, name) - sent_before == 1, "never resent"
        assert str(raised.value)
    assert created(emulator, family) - before == new_tasks
    assert created(emulator, family) - before <= 1, "never two tasks for one image"
    assert int(emulator.stats()["creates_accepted"]) - all_before == new_tasks, "nothing created on the other family"


@pytest.mark.parametrize("fault", list(FAULTS))
@pytest.mark.parametrize(("endpoint", "family"), READ_CELLS, indirect=["family"])
def test_reads(ready: dict[str, Any], emulator: EmulatorServer, endpoint: str, family: Family, fault: str) -> None:
    name, call = endpoint_name(endpoint, family), READS[endpoint][1]
    before_requests = requests_to(emulator, name)
    before_creates = int(emulator.stats()["creates_accepted"])
    emulator.inject_fault(name, count=1, **FAULTS[fault])
    expected = read_outcome(endpoint, fault)
    if expected is PENDING:
        assert call(KontextHook(), ready).status.value == "PENDING"
    elif expected is RETRIED:
        call(KontextHook(), ready)
        assert requests_to(emulator, name) - before_requests == 2
    else:
        with pytest.raises(expected) as raised:
            call(KontextHook(), ready)
        assert requests_to(emulator, name) - before_requests == 1, "permanent errors are not retried"
        if endpoint == "status":
            assert ready["task_id"] in str(raised.value), "the message names the kie task"
    assert int(emulator.stats()["creates_accepted"]) == before_creates, "reads create nothing"


FILE_FAULTS: dict[str, tuple[dict[str, Any], Any]] = {
    "http 429": ({"kind": "http", "status": 429, "retry_after": 0}, RETRIED),
    **{f"http {s}": ({"kind": "http", "status": s}, RETRIED) for s in (500, 502, 503, 504)},
    "html error page": ({"kind": "html"}, RETRIED),
    "dropped before answer": ({"kind": "drop"}, RETRIED),
    "read timeout": (SLOW, RETRIED),
    "refused by storage (403)": ({"kind": "forbidden"}, "download-url fallback"),
    "empty body": ({"kind": "empty_body"}, exc.KontextDownloadError),
}


@pytest.mark.parametrize("fault", list(FILE_FAULTS))
def test_result_download(ready: dict[str, Any], emulator: EmulatorServer, fault: str) -> None:
    spec, expected = FILE_FAULTS[fault]
    reference = io.BytesIO()
    KontextHook().download_image(ready["result_url"], reference)
    emulator.inject_fault("file", count=1, **spec)
    buffer = io.BytesIO()
    if expected is exc.KontextDownloadError:
        with pytest.raises(exc.KontextDownloadError):
            KontextHook().download_image(ready["result_url"], buffer)
        return
    image = KontextHook().download_image(ready["result_url"], buffer)
    assert buffer.getvalue() == reference.getvalue()
    assert image.via_download_url is (expected == "download-url fallback")
    assert emulator.stats()["file_requests_with_auth"] == 0


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.parametrize(("endpoint", "family"), CONNECT_CELLS, indirect=["family"])
def test_connection_refused(monkeypatch: pytest.MonkeyPatch, tmp_path: Any, endpoint: str, family: Family) -> None:
    url = f"http://127.0.0.1:{_closed_port()}"
    monkeypatch.setenv("AIRFLOW_CONN_KONTEXT_DEFAULT", connection_json(url, max_attempts=2))
    hook = KontextHook()
    image = tmp_path / "in.png"
    image.write_bytes(b"\x89PNG\r\n\x1a\n" + b"0" * 64)
    ctx = {"task_id": "t1", "result_url": f"{url}/files/results/t1.png", "image_path": str(image), "family": family}
    call: Call = (lambda h, _: family.create(h, "a matrix image")) if endpoint == "create" else READS[endpoint][1]
    with pytest.raises(exc.KontextTransportError) as raised:
        call(hook, ctx)
    assert raised.value.request_sent is False, "a refused connection provably sent nothing"
