"""Verify and read kie's task callbacks (``callBackUrl``), for whoever runs the receiving endpoint.

kie POSTs when a task ends, in one of two shapes, one per API family:

* Flux Kontext: ``{code, msg, data: {taskId, info: {originImageUrl, resultImageUrl}}}``;
* Market jobs: ``{code, msg, data: <the recordInfo data>}`` (``state``, ``resultJson``,
  ``consumeCredits``, ...): kie says the callback is the status answer's ``data``.

:func:`parse_kie_callback` reads both into a :class:`KieCallback` whose ``record`` is the same
:class:`~airflow_provider_kontext._protocol.record.TaskRecord` a status poll gives.

Anyone who learns the URL can POST the same shape, so with a webhook HMAC key set in the
kie dashboard every callback (of either family) carries ``X-Webhook-Timestamp`` (Unix seconds) and
``X-Webhook-Signature`` = base64(HMAC-SHA256(key, ``taskId + "." + timestamp``)). Note what that
signs: the task id and the time, **not** the body. A verified callback proves kie sent a callback
for that task recently; it does not vouch for the URLs in the body, so treat it as a signal to read
the task (``KontextHook.get_task``) rather than as the result itself when that matters.

kie publishes no replay window; five minutes either way is used here by default. kie may deliver
the same callback more than once, so a receiver must be idempotent on the task id.

No I/O and no Airflow import: this runs as well inside a FastAPI plugin or a small web service.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from airflow_provider_kontext._protocol.record import TaskRecord, TaskStatus, parse_market_record
from airflow_provider_kontext.exceptions import (
    KontextConfigurationError,
    KontextResponseError,
    KontextWebhookSignatureError,
)

TIMESTAMP_HEADER: Final = "X-Webhook-Timestamp"
SIGNATURE_HEADER: Final = "X-Webhook-Signature"

#: Default replay window: kie documents none, its own example suggests rejecting > 5 minutes.
DEFAULT_TOLERANCE_SECONDS: Final = 300.0

#: The callback ``code`` of a successful task; 400 (content policy), 500 and 501 are failures.
CALLBACK_SUCCESS_CODE: Final = 200

#: Keys of a Market callback's ``data`` (its recordInfo record); a Kontext callback has ``info`` instead.
_MARKET_DATA_KEYS: Final = frozenset({"state", "resultJson", "param", "model"})

_SHA256_DIGEST_SIZE: Final = 32


@dataclass(frozen=True)
class KieCallback:
    """
    One parsed callback. URLs are ``None`` when kie sent ``""`` (every failure) or nothing.

    ``origin_image_url`` (Flux Kontext only) is valid for only 10 minutes, ``result_image_url``
    (the first image) for 14 days. ``record`` is the task as a status poll would describe it,
    with every image, kie's failure code and text and, on the Market, the credits consumed;
    :func:`parse_kie_callback` always sets it (it is left out of ``==``, being derived from the
    same body).
    """

    task_id: str
    code: int
    msg: str
    result_image_url: str | None
    origin_image_url: str | None
    record: TaskRecord | None = field(default=None, compare=False)

    @property
    def succeeded(self) -> bool:
        """kie says the task succeeded. The result URL may still be missing (a known kie quirk)."""
        if self.record is not None:
            return self.record.status is TaskStatus.SUCCESS
        return self.code == CALLBACK_SUCCESS_CODE


def sign_kie_webhook(*, task_id: str, timestamp: str | int, secret: str) -> str:
    """The signature kie sends for ``task_id`` at ``timestamp``: for tests and local emulation."""
    message = f"{task_id}.{_timestamp_text(timestamp)}".encode()
    return base64.b64encode(hmac.new(secret.encode(), message, hashlib.sha256).digest()).decode("ascii")


def verify_kie_signature(
    *,
    task_id: str,
    timestamp: str | int,
    signature: str,
    secret: str,
    now: float | None = None,
    tolerance_seconds: float = DEFAULT_TOLERANCE_SECONDS,
) -> None:
    """
    Raise :class:`KontextWebhookSignatureError` unless ``signature`` is kie's for this task and time.

    The comparison is constant-time (``hmac.compare_digest``) over the decoded digests, and the
    timestamp must lie within ``tolerance_seconds`` of ``now`` in either direction, which bounds
    replays and tolerates clock skew. An empty ``secret`` is a configuration error, not a
    signature failure: HMAC with an empty key would accept forgeries.

    :param timestamp: The ``X-Webhook-Timestamp`` value exactly as received (Unix seconds).
    """
    if not isinstance(secret, str) or not secret:
        raise KontextConfigurationError("No webhook HMAC key configured: cannot verify kie callbacks.")
    if not isinstance(task_id, str) or not task_id:
        raise KontextWebhookSignatureError("Callback has no task id to verify.", reason="missing_header")
    ts_text = _timestamp_text(timestamp)
    if not ts_text.isascii() or not ts_text.isdigit():
        raise KontextWebhookSignatureError(
            f"Callback for task {_short(task_id)} has a malformed {TIMESTAMP_HEADER} ({_short(ts_text)}).",
            reason="timestamp_malformed",
            kie_task_id=task_id,
        )
    current = time.time() if now is None else now
    if not math.isfinite(tolerance_seconds) or tolerance_seconds < 0:
        raise ValueError("tolerance_seconds must be a finite number >= 0")
    age = current - int(ts_text)
    if abs(age) > tolerance_seconds:
        raise KontextWebhookSignatureError(
            f"Callback for task {_short(task_id)} has a timestamp {age:.0f} s "
            f"{'old' if age > 0 else 'in the future'}, outside the {tolerance_seconds:g} s window.",
            reason="timestamp_out_of_window",
            kie_task_id=task_id,
        )
    try:
        received = base64.b64decode(signature.strip(), validate=True) if isinstance(signature, str) else b""
    except (binascii.Error, ValueError):
        received = b""
    if len(received) != _SHA256_DIGEST_SIZE:
        raise KontextWebhookSignatureError(
            f"Callback for task {_short(task_id)} has a malformed {SIGNATURE_HEADER} "
            "(not a base64 HMAC-SHA256 digest).",
            reason="signature_malformed",
            kie_task_id=task_id,
        )
    expected = hmac.new(secret.encode(), f"{task_id}.{ts_text}".encode(), hashlib.sha256).digest()
    if not hmac.compare_digest(received, expected):
        raise KontextWebhookSignatureError(
            f"Callback for task {_short(task_id)} has a signature that does not match the webhook HMAC key.",
            reason="signature_mismatch",
            kie_task_id=task_id,
        )


def parse_kie_callback(body: bytes | str | Mapping[str, Any]) -> KieCallback:
    """
    Read a callback body of either family; raise :class:`KontextResponseError` when it is not kie's shape.

    The task id is ``data.taskId``, falling back to ``data.task_id`` (kie's sample code reads
    that name), then to ``taskId``/``task_id`` beside ``data``. On Flux Kontext ``code`` is
    authoritative; on the Market ``data.state`` is (``code`` only stands in when a callback lacks
    it: kie sends callbacks for finished tasks only). ``msg`` is for humans only.
    """
    payload: Any = body
    if isinstance(body, (bytes, bytearray, str)):
        try:
            payload = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            raise KontextResponseError("kie callback body is not JSON.", endpoint="callback") from None
    if not isinstance(payload, Mapping):
        raise KontextResponseError("kie callback body is not a JSON object.", endpoint="callback")
    code = payload.get("code")
    if isinstance(code, str) and code.strip().isdigit():
        code = int(code)
    if not isinstance(code, int) or isinstance(code, bool):
        raise KontextResponseError(f"kie callback has no integer code (code={_short(code)}).", endpoint="callback")
    data = payload.get("data")
    if not isinstance(data, Mapping):
        raise KontextResponseError("kie callback has no data object.", endpoint="callback", code=code)
    task_id = _callback_task_id(payload, data)
    if task_id is None:
        raise KontextResponseError("kie callback has no data.taskId.", endpoint="callback", code=code)
    msg = next((text for key in ("msg", "message") if isinstance(text := payload.get(key), str) and text), "")
    if "info" not in data and _MARKET_DATA_KEYS & data.keys():
        return _market_callback(task_id, code, msg, data)
    return _kontext_callback(task_id, code, msg, data)


def _callback_task_id(payload: Mapping[str, Any], data: Mapping[str, Any]) -> str | None:
    """The first task id found where kie's docs and samples put it; the docs and the sample disagree."""
    for where, key in ((data, "taskId"), (data, "task_id"), (payload, "taskId"), (payload, "task_id")):
        value = where.get(key)
        if isinstance(value, str) and value.strip():
            return value.strip()
    return None


def _kontext_callback(task_id: str, code: int, msg: str, data: Mapping[str, Any]) -> KieCallback:
    """A Flux Kontext callback: ``code`` is the outcome (400 moderation, 500, 501), ``data.info`` the URLs."""
    info = data.get("info")
    info = info if isinstance(info, Mapping) else {}
    result_url = _url_or_none(info.get("resultImageUrl"))
    origin_url = _url_or_none(info.get("originImageUrl"))
    failed = code != CALLBACK_SUCCESS_CODE
    record = TaskRecord(
        kie_task_id=task_id,
        status=TaskStatus.GENERATE_FAILED if failed else TaskStatus.SUCCESS,
        result_image_url=result_url,
        origin_image_url=origin_url,
        error_code=code if failed else None,
        error_message=(msg or None) if failed else None,
    )
    return KieCallback(task_id, code, msg, result_url, origin_url, record)


def _market_callback(task_id: str, code: int, msg: str, data: Mapping[str, Any]) -> KieCallback:
    """A Market callback: its ``data`` is a recordInfo record, read by the same parser as a poll."""
    record_data = {**data, "taskId": task_id}
    if not isinstance(data.get("state"), str):
        record_data["state"] = "success" if code == CALLBACK_SUCCESS_CODE else "fail"
    record = parse_market_record(record_data, task_id=task_id)
    return KieCallback(task_id, code, msg, record.result_image_url, None, record)


def verify_and_parse(
    headers: Mapping[str, str],
    body: bytes,
    secret: str,
    *,
    now: float | None = None,
    tolerance_seconds: float = DEFAULT_TOLERANCE_SECONDS,
) -> KieCallback:
    """
    Parse a callback request and verify its signature headers (names matched case-insensitively).

    The body is parsed first because the signed string contains its task id; a request without
    the headers fails as ``missing_header``, so an unsigned callback is never accepted here.
    """
    callback = parse_kie_callback(body)
    timestamp = _header(headers, TIMESTAMP_HEADER)
    signature = _header(headers, SIGNATURE_HEADER)
    if timestamp is None or signature is None:
        missing = TIMESTAMP_HEADER if timestamp is None else SIGNATURE_HEADER
        raise KontextWebhookSignatureError(
            f"Callback for task {_short(callback.task_id)} has no {missing} header; is HMAC signing enabled?",
            reason="missing_header",
            kie_task_id=callback.task_id,
        )
    verify_kie_signature(
        task_id=callback.task_id,
        timestamp=timestamp,
        signature=signature,
        secret=secret,
        now=now,
        tolerance_seconds=tolerance_seconds,
    )
    return callback


def _timestamp_text(timestamp: object) -> str:
    if isinstance(timestamp, bool):
        return repr(timestamp)  # never digits: refused as malformed
    if isinstance(timestamp, int):
        return str(timestamp)
    if isinstance(timestamp, bytes):
        return timestamp.decode("ascii", "replace").strip()
    return str(timestamp).strip()


def _header(headers: Mapping[str, str], name: str) -> str | None:
    wanted = name.lower()
    for key, value in headers.items():
        if key.lower() == wanted:
            return value
    return None


def _url_or_none(value: object) -> str | None:
    return value.strip() if isinstance(value, str) and value.strip() else None


def _short(value: object, limit: int = 80) -> str:
    """Attacker-controlled text, quoted and clipped so a log line stays one short line."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


__all__ = [
    "SIGNATURE_HEADER",
    "TIMESTAMP_HEADER",
    "KieCallback",
    "parse_kie_callback",
    "sign_kie_webhook",
    "verify_and_parse",
    "verify_kie_signature",
]
