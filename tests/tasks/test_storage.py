"""Result persistence: file names, output paths, and streaming an emulator image to ObjectStoragePath."""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from airflow.sdk import ObjectStoragePath
from airflow.sdk.io import attach
from fsspec.implementations.memory import MemoryFileSystem

from airflow_provider_kontext import exceptions as exc
from airflow_provider_kontext._tasks.storage import (
    StoredImage,
    extension_for_content_type,
    guess_image_extension,
    image_file_name,
    persist_image,
    resolve_output_path,
    safe_segment,
)
from airflow_provider_kontext.emulator import EmulatorServer
from airflow_provider_kontext.hooks.kontext import KontextHook

IDS: dict[str, Any] = {
    "dag_id": "product_shots",
    "run_id": "manual__2025-01-01T00:00:00+00:00",
    "task_id": "generate",
    "map_index": -1,
    "kie_task_id": "fluxkontext_abc123",
    "ext": "png",
}


# ----------------------------------------------------------------------------- file names


def test_default_file_name() -> None:
    assert (
        image_file_name(None, **IDS)
        == "product_shots/manual__2025-01-01T00_00_00_00_00/generate/-1-fluxkontext_abc123.png"
    )


def test_default_file_name_with_index_and_is_deterministic() -> None:
    name = image_file_name(None, **{**IDS, "map_index": 3}, index=1)
    assert name == "product_shots/manual__2025-01-01T00_00_00_00_00/generate/3-fluxkontext_abc123-1.png"
    assert image_file_name(None, **{**IDS, "map_index": 3}, index=1) == name


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("{dag_id}/{map_index:03d}.{ext}", "product_shots/-01.png"),
        ("images/{kie_task_id}.{ext}", "images/fluxkontext_abc123.png"),
        ("{run_id}-{index}.{ext}", "manual__2025-01-01T00_00_00_00_00-0.png"),
        ("./a//{task_id}/./b.{ext}", "a/generate/b.png"),
        ("{dag_id!r}.{ext}", "_product_shots_.png"),
    ],
)
def test_template_file_names(template: str, expected: str) -> None:
    assert image_file_name(template, **IDS) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("scheduled__2025-06-01T12:30:00+00:00", "scheduled__2025-06-01T12_30_00_00_00"),
        ("my run with spaces", "my_run_with_spaces"),
        ("a/b\\c", "a_b_c"),
        ("ünïcödé", "_n_c_d_"),
        ("", "_"),
        ("keep.me-too_1", "keep.me-too_1"),
    ],
)
def test_values_are_made_filesystem_safe(value: str, expected: str) -> None:
    assert safe_segment(value) == expected
    name = image_file_name("{run_id}/x.{ext}", **{**IDS, "run_id": value})
    assert name == f"{expected}/x.png"


def test_extension_is_normalised() -> None:
    assert image_file_name("{kie_task_id}.{ext}", **{**IDS, "ext": ".PNG"}) == "fluxkontext_abc123.png"


@pytest.mark.parametrize(
    ("template", "ids"),
    [
        ("../{dag_id}.{ext}", {}),
        ("{dag_id}/../../etc/passwd", {}),
        ("/abs/{dag_id}.{ext}", {}),
        ("C:/{dag_id}.{ext}", {}),
        ("a\\{dag_id}.{ext}", {}),
        ("s3://bucket/{dag_id}.{ext}", {}),
        ("{kie_task_id}/x.{ext}", {"kie_task_id": ".."}),
        ("{unknown}.{ext}", {}),
        ("{dag_id.__class__}.{ext}", {}),
        ("{dag_id[0]}.{ext}", {}),
        ("{}.{ext}", {}),
        ("{dag_id", {}),
        ("{map_index:zz}", {}),
        ("", {}),
        ("   ", {}),
        ("/", {}),
        ("{dag_id}\n.{ext}", {}),
        ("x" * 300 + ".{ext}", {}),
    ],
)
def test_bad_templates_are_refused(template: str, ids: dict) -> None:
    with pytest.raises(exc.KontextValidationError) as info:
        image_file_name(template, **{**IDS, **ids})
    assert info.value.field == "output_path"


@pytest.mark.parametrize(
    ("content_type", "ext"),
    [
        ("image/png", "png"),
        ("image/jpeg", "jpeg"),
        ("IMAGE/JPEG; charset=binary", "jpeg"),
        ("image/webp", "webp"),
        ("image/gif", "gif"),
        ("text/html", "bin"),
        (None, "bin"),
    ],
)
def test_extension_for_content_type(content_type: str | None, ext: str) -> None:
    assert extension_for_content_type(content_type) == ext


@pytest.mark.parametrize(
    ("url", "default", "ext"),
    [
        ("https://tempfile.aiquickdraw.com/r/abc.png", "jpeg", "png"),
        ("https://tempfile.aiquickdraw.com/r/abc.JPG?x=1", "png", "jpeg"),
        ("https://tempfile.aiquickdraw.com/r/abc.webp", "jpeg", "webp"),
        ("https://tempfile.aiquickdraw.com/r/abc", "png", "png"),
        ("https://tempfile.aiquickdraw.com/r/abc.exe", "jpeg", "jpeg"),
    ],
)
def test_guess_image_extension(url: str, default: str, ext: str) -> None:
    assert guess_image_extension(url, default) == ext


# ----------------------------------------------------------------------------- output paths


@pytest.mark.parametrize(
    ("value", "protocol", "path"),
    [
        ("file:///tmp/kontext-out", "file", "/tmp/kontext-out"),
        ("file://localhost/tmp/kontext-out", "file", "/tmp/kontext-out"),
        ("file:/tmp/kontext-out", "file", "/tmp/kontext-out"),
        ("/tmp/kontext-out/", "file", "/tmp/kontext-out"),
        (Path("/tmp/kontext-out"), "file", "/tmp/kontext-out"),
        ("  /tmp/with space  ", "file", "/tmp/with space"),
        ("s3://bucket/prefix", "s3", "bucket/prefix"),
        ("s3://aws_default@bucket/prefix", "s3", "bucket/prefix"),
        ("gs://bucket/prefix/", "gs", "bucket/prefix"),
        ("abfs://container@account/x", "abfs", None),
        ("local:///tmp/kontext-out", "file", "/tmp/kontext-out"),
        (ObjectStoragePath("file:///tmp/kontext-out"), "file", "/tmp/kontext-out"),
        (ObjectStoragePath("/tmp/kontext-out"), "file", "/tmp/kontext-out"),
        (ObjectStoragePath("s3://bucket/p"), "s3", "bucket/p"),
    ],
)
def test_resolve_output_path_accepts(value: object, protocol: str, path: str | None) -> None:
    resolved = resolve_output_path(value)
    assert isinstance(resolved, ObjectStoragePath)
    assert resolved.protocol == protocol
    if path is not None:
        assert str(resolved.path).rstrip("/") == path


def test_resolve_output_path_expands_home() -> None:
    resolved = resolve_output_path("~/kontext-images")
    assert resolved.protocol == "file"
    assert str(resolved.path) == os.path.expanduser("~/kontext-images")


def test_resolve_output_path_keeps_connection_id() -> None:
    # str() carries the connection id on every Airflow (``.conn_id`` exists from 3.2 only).
    assert str(resolve_output_path("s3://aws_default@bucket/prefix")) == "s3://aws_default@bucket/prefix"


@pytest.mark.parametrize(
    "value",
    [
        "",
        "   ",
        None,
        42,
        b"/tmp/bytes",
        ["s3://bucket"],
        "http://example.com/images",
        "https://example.com/images",
        "ftp://example.com/images",
        "data:,hello",
        "relative/dir",
        "./out",
        "file://otherhost/tmp/x",
        "file:relative",
        "s3://",
        "gs:///no-bucket",
        "memory://not-durable/x",
        ObjectStoragePath("http://example.com/x"),
    ],
)
def test_resolve_output_path_refuses(value: object) -> None:
    with pytest.raises(exc.KontextValidationError) as info:
        resolve_output_path(value)
    assert info.value.field == "output_path"


# ----------------------------------------------------------------------------- persisting


@pytest.fixture
def result_url(emulator: EmulatorServer) -> str:
    hook = KontextHook()
    task_id = hook.create_task("a teapot", output_format="png", aspect_ratio="1:1")
    record = hook.wait_for_task(task_id, poll_interval=0.1, timeout=30)
    assert record.result_image_url
    return record.result_image_url


def reference_bytes(url: str) -> bytes:
    buffer = io.BytesIO()
    KontextHook().download_image(url, buffer)
    return buffer.getvalue()


def test_persist_image_to_a_local_object_storage_path(
    emulator: EmulatorServer, result_url: str, tmp_path: Path
) -> None:
    out = resolve_output_path(f"file://{tmp_path}/images")
    name = image_file_name(None, **{**IDS, "ext": guess_image_extension(result_url, "png")})
    target = out / name
    stored = persist_image(KontextHook(), result_url, target, max_bytes=10 * 1024 * 1024)
    written = (tmp_path / "images" / name).read_bytes()
    assert written == reference_bytes(result_url)
    assert stored == StoredImage(path=str(target), size=len(written), content_type="image/png", via_download_url=False)
    assert stored.path.startswith("file://")
    assert emulator.stats()["file_requests_with_auth"] == 0


@pytest.fixture
def memory_store() -> Iterator[MemoryFileSystem]:
    """An object store without directories, registered with Airflow like a provider's would be."""
    fs = MemoryFileSystem()
    attach("memory", fs=fs)
    yield fs
    if fs.exists("/kontext-tests"):
        fs.rm("/kontext-tests", recursive=True)


def test_persist_image_to_an_object_store(
    emulator: EmulatorServer, result_url: str, memory_store: MemoryFileSystem
) -> None:
    target = ObjectStoragePath("memory://kontext-tests/out/one.png")
    stored = persist_image(KontextHook(), result_url, target, max_bytes=10 * 1024 * 1024)
    assert target.read_bytes() == reference_bytes(result_url)
    assert stored.size == len(target.read_bytes())
    # Airflow's own spelling of the URI: memory:///kontext-tests/... below 3.2 (universal-pathlib 0.2).
    assert stored.path == str(target)
    assert stored.path.replace(":///", "://") == "memory://kontext-tests/out/one.png"


def test_failed_download_to_an_object_store_leaves_no_object(
    emulator: EmulatorServer, result_url: str, memory_store: MemoryFileSystem
) -> None:
    target = ObjectStoragePath("memory://kontext-tests/out/partial.png")
    with pytest.raises(exc.KontextDownloadError):
        persist_image(KontextHook(), result_url, target, max_bytes=100)
    assert not target.exists()


def test_persist_image_falls_back_to_download_url(emulator: EmulatorServer, result_url: str, tmp_path: Path) -> None:
    emulator.inject_fault("file", "forbidden", count=1)
    target = ObjectStoragePath(f"file://{tmp_path}/x.png")
    stored = persist_image(KontextHook(), result_url, target, max_bytes=10 * 1024 * 1024)
    assert stored.via_download_url
    assert (tmp_path / "x.png").read_bytes() == reference_bytes(result_url)


def test_failed_download_leaves_no_file(emulator: EmulatorServer, result_url: str, tmp_path: Path) -> None:
    emulator.inject_fault("file", "http", status=500, count=10)
    target = ObjectStoragePath(f"file://{tmp_path}/run/x.png")
    with pytest.raises(exc.KontextServerError):
        persist_image(KontextHook(), result_url, target, max_bytes=10 * 1024 * 1024)
    assert not (tmp_path / "run" / "x.png").exists()


def test_oversized_download_leaves_no_partial_file(emulator: EmulatorServer, result_url: str, tmp_path: Path) -> None:
    target = ObjectStoragePath(f"file://{tmp_path}/x.png")
    with pytest.raises(exc.KontextDownloadError, match="limit"):
        persist_image(KontextHook(), result_url, target, max_bytes=100)
    assert not (tmp_path / "x.png").exists()


def test_partially_written_file_is_removed(emulator: EmulatorServer, tmp_path: Path) -> None:
    emulator.configure(image_long_side=1024)  # a result larger than one 64 KiB download chunk
    hook = RecordingHook()
    task_id = hook.create_task("a big noisy teapot", output_format="png")
    url = hook.wait_for_task(task_id, poll_interval=0.1, timeout=30).result_image_url or ""
    size = len(reference_bytes(url))
    assert size > 70 * 1024
    target = ObjectStoragePath(f"file://{tmp_path}/big.png")
    with pytest.raises(exc.KontextDownloadError, match="limit"):
        persist_image(hook, url, target, max_bytes=70 * 1024)
    assert hook.written_before_failure > 0, "the test must really leave a partial file behind"
    assert not (tmp_path / "big.png").exists()


class RecordingHook(KontextHook):
    """Remembers how many bytes reached the target before ``download_image`` failed."""

    written_before_failure = 0

    def download_image(self, url: str, destination: Any, **kwargs: Any) -> Any:
        try:
            return super().download_image(url, destination, **kwargs)
        except Exception:
            self.written_before_failure = destination.written
            raise


def test_bad_url_creates_nothing(emulator: EmulatorServer, tmp_path: Path) -> None:
    target = ObjectStoragePath(f"file://{tmp_path}/sub/x.png")
    with pytest.raises(exc.KontextValidationError):
        persist_image(KontextHook(), "not-a-url", target, max_bytes=100)
    assert not (tmp_path / "sub").exists()
    assert sum(emulator.stats()["requests"].values()) == 0
