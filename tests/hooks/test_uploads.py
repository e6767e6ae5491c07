"""Uploads over real HTTP against the emulator: base64 vs stream, sources, retries, validation first."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path
from typing import Any

import pytest
import requests
from airflow.sdk import ObjectStoragePath
from PIL import Image

from airflow_provider_kontext import exceptions as exc
from airflow_provider_kontext._protocol.envelope import (
    BASE64_UPLOAD_MAX_BYTES,
    Endpoint,
    check_upload_file_name,
    check_upload_path,
    parse_upload_response,
    upload_base64_request,
    upload_stream_request,
    upload_url_request,
)
from airflow_provider_kontext._protocol.record import TaskStatus
from airflow_provider_kontext._protocol.retry import is_retryable
from airflow_provider_kontext._protocol.settings import USER_AGENT
from airflow_provider_kontext.emulator import EmulatorServer
from airflow_provider_kontext.hooks.kontext import UPLOAD_PATH_PREFIX, KontextHook
from tests.conftest import connection_json, requests_to

MIB = 1024 * 1024


def png_bytes(size: int = 64, color: tuple[int, int, int] = (200, 40, 40)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (size, size), color).save(buffer, format="PNG")
    return buffer.getvalue()


def noisy_png_bytes(min_bytes: int) -> bytes:
    """A real PNG larger than ``min_bytes``: random pixels do not compress."""
    side = int((min_bytes / 3) ** 0.5) + 16
    image = Image.frombytes("RGB", (side, side), os.urandom(side * side * 3))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=0)
    data = buffer.getvalue()
    assert len(data) > min_bytes
    return data


def fetch(url: str) -> bytes:
    response = requests.get(url, timeout=10)
    assert response.status_code == 200
    return response.content


def kie_requests(emulator: EmulatorServer) -> dict[str, int]:
    """Requests per endpoint that saw any."""
    return {name: count for name, count in emulator.stats()["requests"].items() if count}


class SpySource:
    """An ``ObjectStoragePath`` stand-in that records every read size and how often it is opened."""

    def __init__(self, data: bytes, *, seekable: bool = True, name: str = "spy.bin") -> None:
        self.data = data
        self.seekable = seekable
        self.name = name
        self.reads: list[int] = []
        self.opens = 0

    def is_file(self) -> bool:
        return True

    def open(self, mode: str) -> Any:
        assert mode == "rb"
        self.opens += 1
        return _SpyFile(self)


class _SpyFile(io.BytesIO):
    def __init__(self, source: SpySource) -> None:
        super().__init__(source.data)
        self._source = source

    def read(self, size: int | None = -1) -> bytes:
        self._source.reads.append(-1 if size is None else size)
        return super().read(size)

    def seekable(self) -> bool:
        return self._source.seekable


# ----------------------------------------------------------------------------- protocol (no I/O)


def test_base64_and_url_request_bodies() -> None:
    request = upload_base64_request(b"\x89PNG...", upload_path="/a/b/", file_name="x.png", content_type="image/png")
    assert request.endpoint is Endpoint.UPLOAD_BASE64
    assert request.endpoint.on_upload_host
    assert request.json_body == {
        "base64Data": "data:image/png;base64,iVBORy4uLg==",
        "uploadPath": "a/b",
        "fileName": "x.png",
    }
    plain = upload_base64_request(b"abc", upload_path="p", content_type="application/octet-stream")
    assert plain.json_body == {"base64Data": "YWJj", "uploadPath": "p"}
    url_request = upload_url_request("https://example.com/in.png", upload_path="p", file_name=None)
    assert url_request.endpoint is Endpoint.UPLOAD_URL
    assert url_request.json_body == {"fileUrl": "https://example.com/in.png", "uploadPath": "p"}


def test_stream_request_framing_is_exact() -> None:
    request = upload_stream_request(
        upload_path="p/q", file_name="n.png", part_file_name="n.png", content_type="image/png"
    )
    body = request.head() + b"FILEBYTES" + request.tail()
    assert request.body_length(9) == len(body)
    assert request.content_type == f"multipart/form-data; boundary={request.boundary}"
    assert b'name="uploadPath"\r\n\r\np/q\r\n' in body
    assert b'name="fileName"\r\n\r\nn.png\r\n' in body
    assert b'name="file"; filename="n.png"\r\nContent-Type: image/png\r\n\r\nFILEBYTES\r\n' in body
    assert body.endswith(f"--{request.boundary}--\r\n".encode())


@pytest.mark.parametrize("bad", ["", "/", "a/../b", "..", "a\\b", 7])
def test_bad_upload_path_is_refused(bad: object) -> None:
    with pytest.raises(exc.KontextValidationError) as info:
        check_upload_path(bad)
    assert info.value.field == "upload_path"


@pytest.mark.parametrize("bad", ["", "a/b", "..", 'a"b', "a\nb", "x" * 300, 3])
def test_bad_upload_file_name_is_refused(bad: object) -> None:
    with pytest.raises(exc.KontextValidationError) as info:
        check_upload_file_name(bad)
    assert info.value.field == "file_name"


NEW_SHAPE = {
    "success": True,
    "code": 200,
    "msg": "File uploaded successfully",
    "data": {
        "fileName": "a.png",
        "filePath": "p/a.png",
        "downloadUrl": "https://tempfile.redpandaai.co/p/a.png",
        "fileSize": 3,
        "mimeType": "image/png",
        "uploadedAt": "2025-01-01T12:00:00.000Z",
    },
}
OLD_SHAPE = {
    "code": 200,
    "msg": "success",
    "data": {
        "fileId": "f1",
        "originalName": "a.png",
        "uploadPath": "p",
        "fileUrl": "https://x/p/a.png",
        "downloadUrl": "https://tempfile.redpandaai.co/old/a.png",
        "uploadTime": "2025-01-01",
        "expiresAt": "2025-01-04",
    },
}


@pytest.mark.parametrize("payload", [NEW_SHAPE, OLD_SHAPE], ids=["new", "old"])
def test_parse_upload_response_reads_both_documented_shapes(payload: dict) -> None:
    url = parse_upload_response(200, json.dumps(payload).encode(), {}, endpoint=Endpoint.UPLOAD_BASE64)
    assert url == payload["data"]["downloadUrl"]


@pytest.mark.parametrize(
    ("status", "payload", "error"),
    [
        (200, {**NEW_SHAPE, "success": False}, exc.KontextResponseError),
        (
            200,
            {"success": False, "code": 400, "msg": "uploadPath is required", "data": None},
            exc.KontextValidationError,
        ),
        (200, {"success": False, "code": 401, "msg": "no", "data": None}, exc.KontextAuthError),
        (500, {"success": False, "code": 500, "msg": "File download failed", "data": None}, exc.KontextServerError),
        (200, {"success": True, "code": 200, "msg": "ok", "data": {"fileName": "a"}}, exc.KontextResponseError),
        (200, {"success": True, "code": 200, "msg": "ok", "data": "https://x/a.png"}, exc.KontextResponseError),
    ],
    ids=["success-false", "400-is-bad-parameters", "401", "500", "no-download-url", "bare-string-data"],
)
def test_parse_upload_response_failures(status: int, payload: dict, error: type[Exception]) -> None:
    with pytest.raises(error) as info:
        parse_upload_response(status, json.dumps(payload).encode(), {}, endpoint=Endpoint.UPLOAD_URL)
    assert isinstance(info.value, exc.KontextError)
    assert info.value.endpoint == "upload-url"
    assert not isinstance(info.value, exc.KontextContentPolicyError)


def test_uploads_are_retried_like_reads() -> None:
    for endpoint in (Endpoint.UPLOAD_STREAM, Endpoint.UPLOAD_URL, Endpoint.UPLOAD_BASE64):
        assert not endpoint.creates_billable_work
        assert is_retryable(endpoint, exc.KontextServerError("x"))
        assert is_retryable(endpoint, exc.KontextTransportError("x", request_sent=True))
        assert not is_retryable(endpoint, exc.KontextValidationError("x"))


# ----------------------------------------------------------------------------- over HTTP


@pytest.mark.parametrize("kind", ["str", "pathlike", "object_storage"])
def test_small_file_goes_through_base64(emulator: EmulatorServer, tmp_path: Path, kind: str) -> None:
    data = png_bytes()
    path = tmp_path / "red square.png"
    path.write_bytes(data)
    source: Any = {"str": str(path), "pathlike": path, "object_storage": ObjectStoragePath(f"file://{path}")}[kind]
    url = KontextHook().upload_file(source)
    assert fetch(url) == data
    assert f"/{UPLOAD_PATH_PREFIX}/" in url
    assert url.endswith("/red_square.png")  # the source's name, made safe
    counts = kie_requests(emulator)
    assert counts.get("upload-base64") == 1
    assert "upload-stream" not in counts
    assert emulator.stats()["uploads"] == 1


@pytest.mark.parametrize("kind", ["str", "object_storage"])
def test_large_file_is_streamed(emulator: EmulatorServer, tmp_path: Path, kind: str) -> None:
    data = os.urandom(BASE64_UPLOAD_MAX_BYTES + MIB // 2)
    path = tmp_path / "big.bin"
    path.write_bytes(data)
    source: Any = str(path) if kind == "str" else ObjectStoragePath(f"file://{path}")
    url = KontextHook().upload_file(source, upload_path="my/folder", file_name="big-one.bin")
    assert url.endswith("/my/folder/big-one.bin")
    assert fetch(url) == data
    counts = kie_requests(emulator)
    assert counts.get("upload-stream") == 1
    assert "upload-base64" not in counts


@pytest.mark.parametrize(
    ("size", "endpoint"), [(BASE64_UPLOAD_MAX_BYTES, "upload-base64"), (BASE64_UPLOAD_MAX_BYTES + 1, "upload-stream")]
)
def test_one_mebibyte_is_the_boundary(emulator: EmulatorServer, tmp_path: Path, size: int, endpoint: str) -> None:
    path = tmp_path / "edge.bin"
    data = os.urandom(size)
    path.write_bytes(data)
    assert fetch(KontextHook().upload_file(path)) == data
    assert kie_requests(emulator).get(endpoint) == 1


def test_stream_upload_reads_the_file_in_chunks(emulator: EmulatorServer) -> None:
    data = os.urandom(3 * MIB)
    source = SpySource(data)
    url = KontextHook().upload_file(source)
    assert fetch(url) == data
    assert max(source.reads) <= 64 * 1024, "the file must never be read whole"
    assert sum(r for r in source.reads if r > 0) >= len(data)


def test_unseekable_large_source_is_streamed_chunked(emulator: EmulatorServer) -> None:
    data = os.urandom(BASE64_UPLOAD_MAX_BYTES + 12345)
    source = SpySource(data, seekable=False)
    url = KontextHook().upload_file(source)
    assert fetch(url) == data
    assert kie_requests(emulator).get("upload-stream") == 1
    assert source.opens == 2  # once to size it up, once to send it


def test_each_default_upload_gets_its_own_folder(emulator: EmulatorServer, tmp_path: Path) -> None:
    path = tmp_path / "same.png"
    path.write_bytes(png_bytes())
    hook = KontextHook()
    first, second = hook.upload_file(path), hook.upload_file(path)
    assert first != second  # kie would overwrite the same folder + name


def test_uploaded_image_drives_an_edit(emulator: EmulatorServer, tmp_path: Path) -> None:
    data = noisy_png_bytes(BASE64_UPLOAD_MAX_BYTES + 1)  # the stream path, with a real image
    path = tmp_path / "input.png"
    path.write_bytes(data)
    hook = KontextHook()
    input_url = hook.resolve_input_image(ObjectStoragePath(f"file://{path}"))
    assert input_url is not None
    assert kie_requests(emulator).get("upload-stream") == 1
    task_id = hook.create_task("make it blue", input_image=input_url, output_format="png")
    record = hook.wait_for_task(task_id, poll_interval=0.1, timeout=30)
    assert record.status is TaskStatus.SUCCESS
    result = fetch(record.result_image_url or "")
    assert result.startswith(b"\x89PNG")
    assert result != data
    assert emulator.stats()["tasks_by_success_flag"]["1"] == 1


def test_upload_url_copies_a_remote_file(emulator: EmulatorServer, tmp_path: Path) -> None:
    data = png_bytes(color=(0, 120, 0))
    path = tmp_path / "green.png"
    path.write_bytes(data)
    hook = KontextHook()
    original = hook.upload_file(path)
    copy = hook.upload_url(original, file_name="copy.png")
    assert copy != original
    assert copy.endswith("/copy.png")
    assert fetch(copy) == data
    assert kie_requests(emulator).get("upload-url") == 1


def test_base64_upload_fault_is_retried(emulator: EmulatorServer, tmp_path: Path) -> None:
    path = tmp_path / "a.png"
    path.write_bytes(png_bytes())
    emulator.inject_fault("upload-base64", "http", status=503)
    url = KontextHook().upload_file(path)
    assert fetch(url) == path.read_bytes()
    assert requests_to(emulator, "upload-base64") == 2


@pytest.mark.parametrize("fault", [{"kind": "http", "status": 502}, {"kind": "drop"}, {"kind": "html", "status": 504}])
def test_stream_upload_fault_is_retried_from_the_start(emulator: EmulatorServer, fault: dict) -> None:
    data = os.urandom(BASE64_UPLOAD_MAX_BYTES + 1000)
    source = SpySource(data)
    emulator.inject_fault("upload-stream", **fault)
    url = KontextHook().upload_file(source)
    assert fetch(url) == data
    assert requests_to(emulator, "upload-stream") == 2
    assert source.opens == 3  # sizing, then one fresh open per attempt


def test_upload_url_fault_is_retried(emulator: EmulatorServer, tmp_path: Path) -> None:
    path = tmp_path / "a.png"
    path.write_bytes(png_bytes())
    hook = KontextHook()
    original = hook.upload_file(path)
    emulator.inject_fault("upload-url", "malformed_json")
    assert fetch(hook.upload_url(original)) == path.read_bytes()
    assert requests_to(emulator, "upload-url") == 2


def test_refused_upload_is_not_retried(emulator: EmulatorServer, tmp_path: Path) -> None:
    path = tmp_path / "a.png"
    path.write_bytes(png_bytes())
    emulator.inject_fault("upload-base64", "http", status=400)
    with pytest.raises(exc.KontextValidationError, match="upload-base64"):
        KontextHook().upload_file(path)
    assert requests_to(emulator, "upload-base64") == 1


def test_persistent_upload_failure_gives_up_after_max_attempts(emulator: EmulatorServer, tmp_path: Path) -> None:
    path = tmp_path / "a.png"
    path.write_bytes(png_bytes())
    emulator.inject_fault("upload-base64", "http", status=500, count=10)
    with pytest.raises(exc.KontextServerError):
        KontextHook().upload_file(path)
    assert requests_to(emulator, "upload-base64") == 5


@pytest.mark.parametrize(
    "source",
    [
        "/no/such/file.png",
        "",
        "s3://bucket/key.png",
        "not a url or a file",
        42,
        b"/tmp/bytes-path",
        "DIR",
        ObjectStoragePath("file:///no/such/object.png"),
    ],
)
def test_bad_source_fails_before_any_request(emulator: EmulatorServer, tmp_path: Path, source: Any) -> None:
    if source == "DIR":
        source = str(tmp_path)
    hook = KontextHook()
    with pytest.raises(exc.KontextValidationError) as info:
        hook.upload_file(source)
    assert info.value.field == "source"
    with pytest.raises(exc.KontextValidationError) as info:
        hook.resolve_input_image(source)
    assert info.value.field == "input_image"
    assert kie_requests(emulator) == {}


def test_empty_file_and_bad_names_fail_before_any_request(emulator: EmulatorServer, tmp_path: Path) -> None:
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    good = tmp_path / "good.png"
    good.write_bytes(png_bytes())
    hook = KontextHook()
    with pytest.raises(exc.KontextValidationError, match="empty"):
        hook.upload_file(empty)
    with pytest.raises(exc.KontextValidationError) as info:
        hook.upload_file(good, upload_path="../escape")
    assert info.value.field == "upload_path"
    with pytest.raises(exc.KontextValidationError) as info:
        hook.upload_file(good, file_name="a/b.png")
    assert info.value.field == "file_name"
    with pytest.raises(exc.KontextValidationError) as info:
        hook.upload_url("ftp://example.com/a.png")
    assert info.value.field == "file_url"
    assert kie_requests(emulator) == {}


def test_resolve_input_image_passes_urls_and_none_through(emulator: EmulatorServer, tmp_path: Path) -> None:
    hook = KontextHook()
    assert hook.resolve_input_image(None) is None
    url = "https://example.com/cat.png?sig=abc"
    assert hook.resolve_input_image(url) == url
    assert hook.resolve_input_image("HTTP://example.com/a.png") == "HTTP://example.com/a.png"
    with pytest.raises(exc.KontextValidationError) as info:
        hook.resolve_input_image("https:// spaced.example/a.png")
    assert info.value.field == "input_image"
    assert kie_requests(emulator) == {}
    path = tmp_path / "local.png"
    path.write_bytes(png_bytes())
    uploaded = hook.resolve_input_image(str(path))
    assert uploaded is not None
    assert fetch(uploaded) == path.read_bytes()


def test_upload_is_authenticated_and_identified(emulator: EmulatorServer, tmp_path: Path) -> None:
    path = tmp_path / "a.png"
    path.write_bytes(png_bytes())
    KontextHook().upload_file(path)
    stats = emulator.stats()
    assert stats["auth_failures"] == 0
    assert stats["last_user_agent"] == USER_AGENT


@pytest.mark.parametrize("size", [100, BASE64_UPLOAD_MAX_BYTES + 1])
def test_wrong_key_on_upload_is_an_auth_error_not_retried(
    emulator: EmulatorServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, size: int
) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_KONTEXT_DEFAULT", connection_json(emulator.base_url, api_key="wrong-key"))
    path = tmp_path / "a.bin"
    path.write_bytes(os.urandom(size))
    with pytest.raises(exc.KontextAuthError) as info:
        KontextHook().upload_file(path)
    assert "wrong-key" not in str(info.value)
    assert sum(kie_requests(emulator).values()) == 1
