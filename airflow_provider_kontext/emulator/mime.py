"""Content-type guessing for uploaded bytes, without Pillow.

Uploads must report a ``mimeType`` and the file server must send a ``Content-Type``; sniffing the
magic bytes is enough for that and keeps Pillow out of the upload path.
"""

from __future__ import annotations

import mimetypes

__all__ = ["extension_for", "guess_content_type"]

_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
    (b"BM", "image/bmp"),
)
_EXTENSIONS = {
    "image/png": ".png",
    "image/jpeg": ".jpg",
    "image/gif": ".gif",
    "image/webp": ".webp",
    "image/bmp": ".bmp",
    "application/octet-stream": ".bin",
}


def guess_content_type(data: bytes, file_name: str | None = None) -> str:
    """MIME type from the bytes' signature, else from the file name, else octet-stream."""
    for magic, mime in _MAGIC:
        if data.startswith(magic):
            return mime
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    if file_name:
        guessed, _ = mimetypes.guess_type(file_name)
        if guessed:
            return guessed
    return "application/octet-stream"


def extension_for(content_type: str) -> str:
    """File extension (with dot) for a generated name when the client gives no ``fileName``."""
    return _EXTENSIONS.get(content_type) or mimetypes.guess_extension(content_type) or ".bin"
