"""Read a stored copy for the images view: only regular files, only images, only up to a size.

The path comes from XCom, which a user with XCom write access can edit. Addressing by index
(:mod:`.items`) already keeps requests from naming files; this module is the second wall: even
a ``stored_path`` edited to ``/etc/passwd`` or ``/dev/zero`` yields nothing, because only files
whose first bytes are PNG, JPEG, WebP or GIF are served, with the content type taken from those
bytes rather than from the name.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING, Final

from airflow_provider_kontext._protocol.defaults import DEFAULT_MAX_IMAGE_BYTES
from airflow_provider_kontext.exceptions import KontextValidationError

if TYPE_CHECKING:
    from collections.abc import Iterator

_CHUNK_BYTES: Final = 64 * 1024
_HEAD_BYTES: Final = 16


def sniff_image_type(head: bytes) -> str | None:
    """The image content type the first bytes of a file announce, or ``None`` if they are no image."""
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if head.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if head.startswith((b"GIF87a", b"GIF89a")):
        return "image/gif"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    return None


@dataclass
class StoredImageStream:
    """An open stored image: its sniffed content type, its size, and its bytes as chunks."""

    content_type: str
    size: int
    chunks: Iterator[bytes]


def open_stored_image(uri: str, *, max_bytes: int = DEFAULT_MAX_IMAGE_BYTES) -> StoredImageStream:
    """
    Open the stored copy at ``uri`` (a storage URI or an absolute local path) for streaming.

    Raises :class:`KontextValidationError` (field ``stored_path``) when it is missing, not a
    regular file, larger than ``max_bytes`` or not an image. Runs where the api-server runs:
    a ``file://`` copy must be on a filesystem it mounts, an object store needs its connection.
    """
    from airflow.sdk import ObjectStoragePath

    path = ObjectStoragePath(uri if "://" in uri else f"file://{uri}")
    try:
        if not path.is_file():
            raise _refused(uri, "is not a file")
        size = int(path.stat().st_size)
    except (OSError, ValueError) as err:
        raise _refused(uri, f"cannot be read ({type(err).__name__})") from None
    if size > max_bytes:
        raise _refused(uri, f"is larger than {max_bytes} bytes")
    handle: IO[bytes] = path.open("rb")
    try:
        head = handle.read(_HEAD_BYTES)
        content_type = sniff_image_type(head)
        if content_type is None:
            raise _refused(uri, "is not a PNG, JPEG, WebP or GIF image")
    except BaseException:
        handle.close()
        raise
    return StoredImageStream(content_type=content_type, size=size, chunks=_chunks(handle, head, size))


def _chunks(handle: IO[bytes], head: bytes, size: int) -> Iterator[bytes]:
    """``head`` then the rest, never more than ``size`` bytes in all (a file growing meanwhile is cut)."""
    with contextlib.closing(handle):
        sent = len(head)
        yield head
        while sent < size:
            chunk = handle.read(min(_CHUNK_BYTES, size - sent))
            if not chunk:
                return
            sent += len(chunk)
            yield chunk


def _refused(uri: str, why: str) -> KontextValidationError:
    return KontextValidationError(f"stored copy {uri!r} {why}; it is not served.", field="stored_path")


__all__ = ["StoredImageStream", "open_stored_image", "sniff_image_type"]
