"""The emulated URL paths and the endpoint names used for counters and faults.

One table shared by the routes and the fault layer, so a request is always counted and faulted
under the same name that the control API and ``stats()["requests"]`` use.
"""

from __future__ import annotations

__all__ = [
    "CREATE_ENDPOINTS",
    "CREDIT",
    "DOWNLOAD_URL",
    "FILES_PREFIX",
    "GENERATE",
    "JOBS_CREATE",
    "JOBS_RECORD_INFO",
    "READ_ENDPOINTS",
    "RECORD_INFO",
    "UPLOAD_BASE64",
    "UPLOAD_STREAM",
    "UPLOAD_URL",
    "endpoint_for",
]

GENERATE = "/api/v1/flux/kontext/generate"
RECORD_INFO = "/api/v1/flux/kontext/record-info"
JOBS_CREATE = "/api/v1/jobs/createTask"
JOBS_RECORD_INFO = "/api/v1/jobs/recordInfo"
CREDIT = "/api/v1/chat/credit"
DOWNLOAD_URL = "/api/v1/common/download-url"
UPLOAD_STREAM = "/api/file-stream-upload"
UPLOAD_URL = "/api/file-url-upload"
UPLOAD_BASE64 = "/api/file-base64-upload"
FILES_PREFIX = "/files/"

_API: dict[tuple[str, str], str] = {
    ("POST", GENERATE): "generate",
    ("GET", RECORD_INFO): "record-info",
    ("POST", JOBS_CREATE): "jobs-create",
    ("GET", JOBS_RECORD_INFO): "jobs-record-info",
    ("GET", CREDIT): "credit",
    ("POST", DOWNLOAD_URL): "download-url",
    ("POST", UPLOAD_STREAM): "upload-stream",
    ("POST", UPLOAD_URL): "upload-url",
    ("POST", UPLOAD_BASE64): "upload-base64",
}

#: Endpoints that create (billable) tasks, one per API: they share the account's create window.
CREATE_ENDPOINTS: frozenset[str] = frozenset({"generate", "jobs-create"})
#: Endpoints that poll one task by ``?taskId=``.
READ_ENDPOINTS: frozenset[str] = frozenset({"record-info", "jobs-record-info"})


def endpoint_for(method: str, path: str) -> str | None:
    """Endpoint name of a request, or None for control/unknown paths (never counted or faulted)."""
    if path.startswith(FILES_PREFIX):
        return "file" if method in ("GET", "HEAD") else None
    return _API.get((method, path))
