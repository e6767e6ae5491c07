"""The exact JSON shapes kie sends, built from emulator state (pure functions).

Kept apart from the HTTP layer so that the record-info shape, the callback shape (which names
the same URLs differently: ``data.info`` vs ``data.response``) and the webhook signature can be
read and tested in one place against the reference. Market jobs have shapes of their own
(``state``, ``param`` and ``resultJson`` as JSON strings, Unix-ms times) built here too.
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
    "MARKET_CALLBACK_MESSAGES",
    "callback_payload",
    "credit_number",
    "dumps",
    "envelope",
    "file_url",
    "format_time",
    "iso_millis",
    "market_callback_payload",
    "market_record_data",
    "record_data",
    "result_urls",
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
#: ``msg`` of a Market callback by success, as in kie's documented examples.
MARKET_CALLBACK_MESSAGES: dict[bool, str] = {
    True: "Playground task completed successfully.",
    False: "Playground task failed.",
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


def credit_number(credits: float) -> int | float:
    """Credits as JSON: an int when whole (``1000``, not ``1000.0``), else rounded off float noise."""
    rounded = round(credits, 6)
    return int(rounded) if rounded.is_integer() else rounded


def _ms(ts: float) -> int:
    return int(ts * 1000)


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


def result_urls(task: Task, base_url: str) -> list[str]:
    """A Market task's ``resultUrls``: one per image, each a distinct file (none for ``[emulator:no_url]``)."""
    if not task.outcome.has_result_url:
        return []
    return [file_url(base_url, task.result_key_at(index)) for index in range(task.image_count)]


def market_record_data(task: Task, now: float, base_url: str) -> dict[str, Any]:
    """``data`` of a jobs/recordInfo answer for a Market task past the ``recordInfo is null`` phase."""
    state, since, progress = task.market_phase(now)
    terminal = state in ("success", "fail")
    done = task.completes_at() if terminal else None
    succeeded = state == "success"
    result_json = dumps({"resultUrls": result_urls(task, base_url)}).decode() if succeeded else ""
    return {
        "taskId": task.task_id,
        "model": task.model,
        "state": state,
        "param": task.param_json,
        "resultJson": result_json,
        "failCode": task.outcome.fail_code if state == "fail" else "",
        "failMsg": task.outcome.fail_msg if state == "fail" else "",
        "costTime": _ms(done) - _ms(task.created_at) if done is not None else 0,
        "completeTime": _ms(done) if done is not None else None,
        "createTime": _ms(task.created_at),
        "updateTime": _ms(since),
        "progress": progress,
        "creditsConsumed": credit_number(task.price if succeeded else 0.0),
    }


def market_callback_payload(task: Task, now: float, base_url: str, remained_credits: float) -> dict[str, Any]:
    """
    Body POSTed to a Market ``callBackUrl``: the recordInfo ``data`` plus the credit fields.

    kie's example names the charge ``consumeCredits`` there (``creditsConsumed`` in recordInfo);
    both are sent so a client may read either.
    """
    data = market_record_data(task, now, base_url)
    data["consumeCredits"] = data["creditsConsumed"]
    data["remainedCredits"] = credit_number(remained_credits)
    succeeded = data["state"] == "success"
    return envelope(200 if succeeded else 501, MARKET_CALLBACK_MESSAGES[succeeded], data)
