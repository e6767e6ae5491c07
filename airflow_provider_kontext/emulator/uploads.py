"""Rules of kie's File Upload API (stream, URL and base64 variants) without the HTTP plumbing.

All three endpoints end in the same place: bytes stored under ``uploadPath/fileName`` (a random
name when ``fileName`` is omitted, overwritten when the same path is uploaded again) and the same
``{success, code, msg, data}`` answer, so that part lives here once.
"""

from __future__ import annotations

import base64
import binascii
import re
import uuid
from typing import TYPE_CHECKING, Any

from airflow_provider_kontext.emulator.mime import extension_for, guess_content_type
from airflow_provider_kontext.emulator.payloads import file_url, iso_millis

if TYPE_CHECKING:
    from airflow_provider_kontext.emulator.state import EmulatorState

__all__ = ["UploadError", "decode_base64_data", "store_upload", "upload_envelope"]

_DATA_URL = re.compile(r"^data:(?P<mime>[^;,]*)(?P<params>(?:;[^;,]*)*),(?P<data>.*)$", re.DOTALL)


class UploadError(Exception):
    """A refused upload: body ``code`` (400 bad parameters, 500 fetch failure) and message."""

    def __init__(self, code: int, msg: str) -> None:
        super().__init__(msg)
        self.code = code
        self.msg = msg


def upload_envelope(code: int, msg: str, data: Any = None) -> dict[str, Any]:
    """The upload API's envelope, which adds ``success`` to kie's usual one."""
    return {"success": code == 200, "code": code, "msg": msg, "data": data}


def _clean_upload_path(upload_path: object) -> str:
    if not isinstance(upload_path, str) or not upload_path.strip("/ "):
        raise UploadError(400, "uploadPath is required")
    parts = [p for p in upload_path.strip().strip("/").split("/") if p]
    if any(p in (".", "..") or "\\" in p for p in parts):
        raise UploadError(400, "uploadPath must not contain '.', '..' or backslashes")
    return "/".join(parts)


def _clean_file_name(file_name: object, content_type: str) -> str:
    if file_name is None or file_name == "":
        return uuid.uuid4().hex[:16] + extension_for(content_type)
    if not isinstance(file_name, str) or "/" in file_name or "\\" in file_name or file_name in (".", ".."):
        raise UploadError(400, "fileName must be a plain file name")
    return file_name


def decode_base64_data(base64_data: object) -> tuple[bytes, str | None]:
    """Bytes and the declared MIME type (data: URLs only) of a ``base64Data`` value."""
    if not isinstance(base64_data, str) or not base64_data.strip():
        raise UploadError(400, "base64Data is required")
    declared: str | None = None
    payload = base64_data.strip()
    match = _DATA_URL.match(payload)
    if match:
        declared = match.group("mime") or None
        if ";base64" not in match.group("params"):
            raise UploadError(400, "base64Data data URL must be base64-encoded")
        payload = match.group("data")
    try:
        data = base64.b64decode("".join(payload.split()), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise UploadError(400, f"base64Data is not valid base64: {exc}") from exc
    return data, declared


def store_upload(
    state: EmulatorState,
    base_url: str,
    data: bytes,
    upload_path: object,
    file_name: object,
    *,
    declared_type: str | None = None,
    name_hint: str | None = None,
) -> dict[str, Any]:
    """Store an upload and return the ``data`` object of the success answer."""
    if not data:
        raise UploadError(400, "file is empty")
    folder = _clean_upload_path(upload_path)
    hint = file_name if isinstance(file_name, str) and file_name else name_hint
    content_type = declared_type or guess_content_type(data, hint)
    name = _clean_file_name(file_name, content_type)
    key = f"uploads/{folder}/{name}"
    stored = state.store_upload(key, data, content_type)
    return {
        "fileName": name,
        "filePath": f"{folder}/{name}",
        "downloadUrl": file_url(base_url, key),
        "fileSize": len(data),
        "mimeType": content_type,
        "uploadedAt": iso_millis(stored.created_at),
    }
