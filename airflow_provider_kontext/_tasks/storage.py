"""Copy result images somewhere durable before kie deletes them (14 days; ``originImageUrl``: 10 minutes).

Three pieces, usable from an operator or a ``@task``:

* :func:`image_file_name` names a result deterministically from the Airflow and kie ids, so a
  rerun of the same task instance overwrites its own file instead of piling up copies, and a
  run id such as ``manual__2025-01-01T00:00:00+00:00`` becomes a name every filesystem and
  object store accepts.
* :func:`resolve_output_path` turns what a DAG author writes (``"s3://bucket/prefix"``,
  ``"/data/images"``, an ``ObjectStoragePath``) into an ``ObjectStoragePath``, refusing schemes
  that are not storage (``http://``) while the DAG is still cheap to fix.
* :func:`persist_image` streams one image into a target with
  :meth:`~airflow_provider_kontext.hooks.kontext.KontextHook.download_image` (no Authorization
  header to the image host, download-url fallback) and removes the partial file on failure.

**Extensions.** The content type is only known once the download has started, and object
stores have no cheap rename, so :func:`persist_image` does not rename: the caller picks the
extension up front, normally with :func:`guess_image_extension` (from the URL, falling back to
the requested ``output_format``). :attr:`StoredImage.content_type` reports what was actually
written, and a mismatch with the file's suffix is logged.
"""

from __future__ import annotations

import contextlib
import logging
import os
import posixpath
import re
import string
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING, Any, Final, cast
from urllib.parse import urlsplit

from airflow.sdk import ObjectStoragePath

from airflow_provider_kontext._protocol.request import check_http_url
from airflow_provider_kontext.exceptions import KontextResponseError, KontextValidationError

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from airflow_provider_kontext.hooks.kontext import KontextHook

log = logging.getLogger(__name__)

#: The default layout: one folder per DAG run and task, one file per (map index, kie task).
DEFAULT_FILE_NAME_TEMPLATE: Final = "{dag_id}/{run_id}/{task_id}/{map_index}-{kie_task_id}.{ext}"
#: The default when one kie task yields several files (``index`` is given).
DEFAULT_INDEXED_FILE_NAME_TEMPLATE: Final = "{dag_id}/{run_id}/{task_id}/{map_index}-{kie_task_id}-{index}.{ext}"

#: Fields a file name template may use (``str.format`` names; no attribute or index access).
TEMPLATE_FIELDS: Final = frozenset({"dag_id", "run_id", "task_id", "map_index", "kie_task_id", "ext", "index", "image"})

#: URI schemes accepted for ``output_path``: local files and the object stores Airflow providers
#: register (amazon: ``s3``; google: ``gs``/``gcs``; microsoft-azure: ``abfs``/``az``/``adl``;
#: sftp; alibaba: ``oss``; apache-hdfs). The provider must be installed on the worker that
#: writes; web schemes (``http``, ``ftp``...) are not storage and are refused.
STORAGE_SCHEMES: Final = frozenset(
    {"file", "local", "s3", "s3a", "gs", "gcs", "abfs", "abfss", "az", "adl", "oss", "sftp", "hdfs", "webhdfs"}
)

#: Content type -> file extension; ``jpeg`` (not ``jpg``) to match kie's ``output_format`` values.
IMAGE_EXTENSIONS: Final[Mapping[str, str]] = {
    "image/png": "png",
    "image/jpeg": "jpeg",
    "image/jpg": "jpeg",
    "image/pjpeg": "jpeg",
    "image/webp": "webp",
    "image/gif": "gif",
}
_SUFFIX_EXTENSIONS: Final[Mapping[str, str]] = {
    "png": "png",
    "jpg": "jpeg",
    "jpeg": "jpeg",
    "webp": "webp",
    "gif": "gif",
}

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
_MAX_SEGMENT_BYTES: Final = 255
_LOCAL_PROTOCOLS: Final = frozenset({"file", "local", ""})


@dataclass(frozen=True)
class StoredImage:
    """One persisted image: where it went (a URI), how big it is and what it is."""

    path: str
    size: int
    content_type: str
    via_download_url: bool


# ----------------------------------------------------------------------------- file names


def safe_segment(value: object) -> str:
    """
    ``value`` as one file-name segment: runs of anything but ``[A-Za-z0-9._-]`` become ``_``.

    Deterministic (same input, same name) so reruns overwrite rather than duplicate.
    ``manual__2025-01-01T00:00:00+00:00`` becomes ``manual__2025-01-01T00_00_00_00_00``.
    """
    return _UNSAFE.sub("_", str(value)) or "_"


class _FileNameFormatter(string.Formatter):
    """``str.format`` limited to :data:`TEMPLATE_FIELDS`, each value made filesystem-safe."""

    def __init__(self, values: Mapping[str, Any]) -> None:
        super().__init__()
        self._values = values

    def get_field(self, field_name: str, args: Sequence[Any], kwargs: Mapping[str, Any]) -> Any:
        # Refusing "a.b"/"a[0]" keeps templates from reaching into objects (format-string injection).
        if field_name not in self._values:
            raise KontextValidationError(
                f"output file name template uses {{{field_name}}}; allowed fields: {sorted(TEMPLATE_FIELDS)}.",
                field="output_path",
            )
        return self._values[field_name], field_name

    def format_field(self, value: Any, format_spec: str) -> str:
        return safe_segment(super().format_field(value, format_spec))


def image_file_name(
    template: str | None,
    *,
    dag_id: str,
    run_id: str,
    task_id: str,
    map_index: int,
    kie_task_id: str,
    ext: str,
    index: int | None = None,
    image: int | None = None,
) -> str:
    """
    The relative path (``/``-separated) to store one result image under.

    :param template: ``str.format`` template over :data:`TEMPLATE_FIELDS`, e.g.
        ``"{dag_id}/{run_id}/{map_index:03d}.{ext}"``; ``None`` for
        :data:`DEFAULT_FILE_NAME_TEMPLATE` (or the indexed default when ``index`` is given).
        Each field's value is made filesystem-safe; the template's own text is not rewritten,
        but a result that is absolute, climbs out with ``..`` or holds a backslash is refused
        with :class:`KontextValidationError` for ``output_path``. ``{index}`` renders ``0``
        when no index is given. ``map_index`` is ``-1`` for unmapped tasks, as in Airflow.
    :param ext: Extension without the dot (``png``, ``jpeg``); see :func:`guess_image_extension`.
    :param image: The image's place among its task's images, for a task that returned several (a
        Market model's ``max_images``, ``num_images`` or ``n``); ``{image}`` in the template. A
        template without ``{image}`` gets ``-<image>`` before the extension, so images of one
        task never overwrite each other.
    """
    if template is None:
        template = DEFAULT_FILE_NAME_TEMPLATE if index is None else DEFAULT_INDEXED_FILE_NAME_TEMPLATE
    if not isinstance(template, str) or not template.strip():
        raise KontextValidationError("output file name template must be a non-empty string.", field="output_path")
    values: dict[str, Any] = {
        "dag_id": dag_id,
        "run_id": run_id,
        "task_id": task_id,
        "map_index": map_index,
        "kie_task_id": kie_task_id,
        "ext": str(ext).lower().lstrip("."),
        "index": 0 if index is None else index,
        "image": 0 if image is None else image,
    }
    if image is not None and "{image" not in template:
        head, dot, tail = template.rpartition(".")
        template = f"{head}-{{image}}.{tail}" if dot and "/" not in tail else f"{template}-{{image}}"
    try:
        rendered = _FileNameFormatter(values).format(template)
    except KontextValidationError:
        raise
    except (ValueError, IndexError, KeyError, TypeError) as err:
        raise KontextValidationError(
            f"output file name template {template!r} is not a valid format string: {err}.", field="output_path"
        ) from None
    return _check_relative_path(rendered, template)


def _check_relative_path(rendered: str, template: str) -> str:
    problem = None
    if "\\" in rendered or "://" in rendered:
        problem = "contains a backslash or a URI"
    elif rendered.startswith("/") or re.match(r"^[A-Za-z]:", rendered):
        problem = "is absolute"
    elif not rendered.isprintable():
        problem = "contains control characters"
    segments = [s for s in rendered.split("/") if s not in ("", ".")]
    if problem is None and any(s == ".." for s in segments):
        problem = "climbs out of the output path with '..'"
    if problem is None and not segments:
        problem = "is empty"
    if problem is None and any(len(s.encode()) > _MAX_SEGMENT_BYTES for s in segments):
        problem = f"has a component longer than {_MAX_SEGMENT_BYTES} bytes"
    if problem is not None:
        raise KontextValidationError(
            f"output file name {rendered!r} (from template {template!r}) {problem}; "
            "it must be a relative path inside output_path.",
            field="output_path",
        )
    return "/".join(segments)


def extension_for_content_type(content_type: str | None, default: str = "bin") -> str:
    """``image/png`` -> ``png``, ``image/jpeg`` -> ``jpeg`` ...; ``default`` for anything else."""
    key = (content_type or "").split(";")[0].strip().lower()
    return IMAGE_EXTENSIONS.get(key, default)


def guess_image_extension(url: str, default: str = "jpeg") -> str:
    """
    The extension a result image will have, before downloading it: the URL's suffix, else ``default``.

    kie names result files after their format (``....png``); pass the task's ``output_format``
    as ``default`` for URLs without a telling suffix.
    """
    suffix = posixpath.splitext(urlsplit(url).path)[1].lower().lstrip(".")
    return _SUFFIX_EXTENSIONS.get(suffix, default)


# ----------------------------------------------------------------------------- output paths


def resolve_output_path(value: object) -> ObjectStoragePath:
    """
    Where results go, as an ``ObjectStoragePath``; anything unusable raises for ``output_path``.

    Accepts an ``ObjectStoragePath``, a URI string of a :data:`STORAGE_SCHEMES` scheme
    (``s3://bucket/prefix``, ``gs://...``, ``file:///data/x``; Airflow's
    ``s3://conn_id@bucket/...`` form included) or an absolute local path (``str``/``PathLike``,
    ``~`` expanded), which becomes ``file://``. Relative local paths are refused: a worker's
    working directory is a temporary one, so files written there would silently vanish.
    """
    if isinstance(value, ObjectStoragePath):
        protocol = str(value.protocol or "")
        if protocol in ("", "local"):
            return _local_path(str(value.path), value)
        if protocol not in STORAGE_SCHEMES:
            raise _unsupported_scheme(value, protocol)
        return value
    if isinstance(value, os.PathLike):
        path = os.fspath(value)
        if not isinstance(path, str):
            raise KontextValidationError(f"output_path must be a text path, got {value!r}.", field="output_path")
        return _local_path(path, value)
    if not isinstance(value, str):
        raise KontextValidationError(
            f"output_path must be a URI string, a local path or an ObjectStoragePath, got {type(value).__name__}.",
            field="output_path",
        )
    text = value.strip()
    if not text:
        raise KontextValidationError("output_path must not be empty.", field="output_path")
    scheme = urlsplit(text).scheme.lower() if re.match(r"^[A-Za-z][A-Za-z0-9+.-]+:", text) else ""
    if not scheme:
        return _local_path(text, value)
    if scheme not in STORAGE_SCHEMES:
        raise _unsupported_scheme(value, scheme)
    parts = urlsplit(text)
    if scheme in ("file", "local"):
        if parts.netloc not in ("", "localhost"):
            raise KontextValidationError(
                f"output_path {value!r}: a file URI needs an absolute path (file:///path), not host {parts.netloc!r}.",
                field="output_path",
            )
        return _local_path(parts.path, value)
    if not parts.netloc:
        raise KontextValidationError(f"output_path {value!r} names no bucket or container.", field="output_path")
    return ObjectStoragePath(text)


def _local_path(path: str, original: object) -> ObjectStoragePath:
    expanded = os.path.expanduser(path)
    if not expanded or not os.path.isabs(expanded):
        raise KontextValidationError(
            f"output_path {original!r} is a relative local path; use an absolute path or a URI "
            "(a worker's working directory is temporary).",
            field="output_path",
        )
    return ObjectStoragePath("file://" + os.path.normpath(expanded))


def _unsupported_scheme(value: object, scheme: str) -> KontextValidationError:
    return KontextValidationError(
        f"output_path {value!r} uses scheme {scheme!r}, which is not storage; use one of {sorted(STORAGE_SCHEMES)} "
        "or a local path.",
        field="output_path",
    )


# ----------------------------------------------------------------------------- persisting


class _CountingWriter:
    """Counts what reaches the target, so bytes left by a failed earlier attempt cannot go unnoticed."""

    def __init__(self, handle: IO[bytes]) -> None:
        self._handle = handle
        self.written = 0

    def write(self, data: bytes) -> int:
        self._handle.write(data)
        self.written += len(data)
        return len(data)


def persist_image(hook: KontextHook, url: str, target: ObjectStoragePath, *, max_bytes: int) -> StoredImage:
    """
    Stream the image at ``url`` into ``target`` and describe what was written.

    Parent folders are created for local targets (object stores have none to create; an
    ``mkdir`` there could even try to create a bucket). On any failure the partial file is
    closed and removed, so a retry of the task never finds a truncated image that looks done.
    ``target`` is written as named: choose its extension first (see the module docstring).

    :param max_bytes: Refuse images larger than this (passed to ``download_image``).
    """
    check_http_url(url, field="url")  # before creating anything at the target
    if str(target.protocol or "") in _LOCAL_PROTOCOLS:
        target.parent.mkdir(parents=True, exist_ok=True)
    handle: IO[bytes] = target.open("wb")
    try:
        try:
            writer = _CountingWriter(handle)
            image = hook.download_image(url, cast("IO[bytes]", writer), max_bytes=max_bytes)
            if writer.written != image.size:
                raise KontextResponseError(
                    f"Writing {url} to {target} produced {writer.written} bytes for a {image.size}-byte image "
                    "(a retried download wrote twice); the file was removed."
                )
        finally:
            handle.close()  # on object stores this is where the upload is committed
    except BaseException:
        _remove_quietly(target)
        raise
    suffix = posixpath.splitext(str(target.name))[1].lower().lstrip(".")
    actual = extension_for_content_type(image.content_type, default="")
    if suffix and actual and _SUFFIX_EXTENSIONS.get(suffix, suffix) != actual:
        log.warning("%s was saved as %s but is %s.", url, target, image.content_type)
    log.info("Saved %s (%d bytes, %s) to %s.", url, image.size, image.content_type, target)
    return StoredImage(
        path=str(target), size=image.size, content_type=image.content_type, via_download_url=image.via_download_url
    )


def _remove_quietly(target: ObjectStoragePath) -> None:
    """Best effort: the original error matters more than a failed cleanup."""
    with contextlib.suppress(Exception):
        if target.exists():
            target.unlink()
            log.info("Removed the partial file %s.", target)


__all__ = [
    "DEFAULT_FILE_NAME_TEMPLATE",
    "STORAGE_SCHEMES",
    "StoredImage",
    "extension_for_content_type",
    "guess_image_extension",
    "image_file_name",
    "persist_image",
    "resolve_output_path",
    "safe_segment",
]
