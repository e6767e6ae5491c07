"""The exact JSON shapes kie sends, built from emulator state (pure functions).

Kept apart from the HTTP layer so that the record-info shape, the callback shape (which names
the same URLs differently: ``data.info`` vs ``data.response``) and the webhook signature can be
read and tested in one place against the reference.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

if TYPE_CHECKING:
    from airflow_provider_kontext.emulator.config import TimeFormat
    from airflow_provider_kontext.emulator.state import Task

__all__ = [
    "BODY_CODE_MESSAGES",
    "callback_payload",
    "dumps",
    "envelope",
    "file_url",
    "format_time",
    "iso_millis",
    "record_data",
    "sign_webhook",
]

#: Realistic ``msg`` texts for each documented body code.
BODY_CODE_MESSAGES: dict[int, str] = {
    400: "Bad request: missing or invalid parameters",
    401: "You do not have access permissions",
    402: "Credits insufficient",
    404: "Resource not found",
    422: "Validation error",
    429: "Rate limit exceeded",
    455: "Service unavailable: system maintenance in progress",
    500: "Server exception, please try again later",
    501: "Image generation task failed",
    505: "The feature is disabled",
}


def dumps(body: Any) -> bytes:
    """Compact JSON bytes; compact because record-info is polled by thousands of clients."""
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()


def envelope(code: int, msg: str, data: Any = None) -> dict[str, Any]:
    """kie's ``{code, msg, data}`` envelope."""
    return {"code": code, "msg": msg, "data": data}


def iso_millis(ts: float) -> str:
    """ISO-8601 UTC with milliseconds, the ``uploadedAt`` style of the upload API."""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def format_time(ts: float, time_format: TimeFormat) -> str | int:
    """``createTime``/``completeTime``: ISO strings per the Flux docs, or epoch ms like siblings."""
    if time_format == "epoch_ms":
        return int(ts * 1000)
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def file_url(base_url: str, key: str) -> str:
    """Public URL of a file-store key, each path segment percent-encoded."""
    return f"{base_url.rstrip('/')}/files/{quote(key, safe='/')}"


def record_data(task: Task, now: float, base_url: str, time_format: TimeFormat) -> dict[str, Any]:
    """``data`` of a record-info answer for a task that is past the ``recordInfo is null`` phase."""
    terminal = task.is_terminal(now)
    outcome = task.outcome
    response: dict[str, str] | None = None
    if terminal and outcome.succeeded:
        response = {"originImageUrl": file_url(base_url, task.origin_key)}
        if outcome.has_result_url:
            response["resultImageUrl"] = file_url(base_url, task.result_key)
    done = task.completes_at()
    return {
        "taskId": task.task_id,
        "paramJson": task.param_json,
        "completeTime": format_time(done, time_format) if terminal and done is not None else None,
        "response": response,
        "successFlag": outcome.success_flag if terminal else 0,
        "errorCode": outcome.error_code if terminal else None,
        "errorMessage": outcome.error_message if terminal else "",
        "createTime": format_time(task.created_at, time_format),
    }


def callback_payload(task: Task, base_url: str) -> dict[str, Any]:
    """Body POSTed to ``callBackUrl``; failures carry ``""`` for both URLs, as documented."""
    outcome = task.outcome
    info: dict[str, str] = {"originImageUrl": "", "resultImageUrl": ""}
    if outcome.succeeded:
        info["originImageUrl"] = file_url(base_url, task.origin_key)
        if outcome.has_result_url:
            info["resultImageUrl"] = file_url(base_url, task.result_key)
        else:
            del info["resultImageUrl"]
    return envelope(outcome.callback_code, outcome.callback_msg, {"taskId": task.task_id, "info": info})


def sign_webhook(key: str, task_id: str, timestamp: str) -> str:
    """``X-Webhook-Signature``: base64(HMAC-SHA256(key, taskId + "." + timestamp))."""
    digest = hmac.new(key.encode(), f"{task_id}.{timestamp}".encode(), hashlib.sha256).digest()
    return base64.b64encode(digest).decode()
