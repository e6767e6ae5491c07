"""The outermost ASGI layer: counts every request and plays injected faults.

It sits *outside* FastAPI's own middleware on purpose. Starlette's error middleware turns any
exception into an HTTP 500, but a ``drop`` fault must look to the client like a dead connection
(``RemoteDisconnected``), not like an answer. Out here ``send`` is still uvicorn's own bound
method, whose owner holds the socket's transport, so the layer can close the TCP connection
without writing a single byte.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from email.utils import formatdate
from http import HTTPStatus
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote_to_bytes

from airflow_provider_kontext.emulator.payloads import BODY_CODE_MESSAGES, dumps, envelope
from airflow_provider_kontext.emulator.routes import CREATE_ENDPOINTS, READ_ENDPOINTS, endpoint_for

if TYPE_CHECKING:
    from collections.abc import Callable

    from starlette.types import ASGIApp, Message, Receive, Scope, Send

    from airflow_provider_kontext.emulator.state import EmulatorState, Fault

__all__ = ["serve_with_faults"]

log = logging.getLogger(__name__)

#: What a client sees for ``malformed_json``: a body cut off mid-string.
TRUNCATED_JSON = b'{"code":200,"msg":"success","data":{"taskId":"'
_UPLOAD_ENDPOINTS = frozenset({"upload-stream", "upload-url", "upload-base64"})
_HTML_PAGE = """<!DOCTYPE html>
<html lang="en"><head><title>{status} {reason}</title></head>
<body><center><h1>{status} {reason}</h1></center><hr><center>cloudflare</center></body></html>
"""
_FORBIDDEN_XML = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>AccessDenied</Code><Message>Access Denied</Message></Error>'
)


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return bytes(value).decode("latin-1")
    return None


async def serve_with_faults(state: EmulatorState, scope: Scope, receive: Receive, send: Send, app: ASGIApp) -> None:
    """Count the request, then either apply the next matching fault or pass it to ``app``."""
    if scope["type"] != "http":
        await app(scope, receive, send)
        return
    path: str = scope["path"]
    endpoint = endpoint_for(scope["method"], path)
    if endpoint is None:
        await app(scope, receive, send)
        return
    has_auth = _header(scope, b"authorization") is not None
    state.count_request(endpoint, user_agent=_header(scope, b"user-agent"), has_auth=has_auth)
    polled = _query_value(scope, b"taskId") if endpoint in READ_ENDPOINTS else None
    applied = state.apply_fault(endpoint, path, task_id=polled)
    if applied is None:
        await app(scope, receive, send)
        return
    fault, entry = applied
    if endpoint in CREATE_ENDPOINTS:
        # Name the image this fault hit (the prompt), and later the task it created if any.
        body = await _read_body(receive)
        receive = _replay(body, receive)
        state.annotate_fault(entry, prompt=_prompt_of(body))
        send = _capturing_task_id(send, lambda task_id: state.annotate_fault(entry, task_id=task_id))
    if fault.kind == "drop":
        await _drop_connection(receive, send)
    elif fault.kind == "drop_after_accept":
        await app(scope, receive, _discard_but(send))
        await _drop_connection(receive, send)
    elif fault.kind == "slow":
        await app(scope, receive, _delayed(send, float(fault.params["delay"])))
    else:
        status, headers, body = canned_response(fault)
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body, "more_body": False})


def canned_response(fault: Fault) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    """Status, headers and body for the faults that answer (everything but drop/slow)."""
    params: dict[str, Any] = fault.params
    kind = fault.kind
    status = 200
    content_type = b"application/json"
    if kind == "code":
        code = int(params["code"])
        default = "recordInfo is null" if code == 422 and fault.endpoint in READ_ENDPOINTS else None
        msg = str(params.get("msg") or default or BODY_CODE_MESSAGES[code])
        body = dumps(_with_upload_flag(fault.endpoint, envelope(code, msg)))
    elif kind == "http":
        status = int(params["status"])
        msg = str(params.get("msg") or _reason(status))
        body = dumps(_with_upload_flag(fault.endpoint, envelope(status, msg)))
    elif kind == "malformed_json":
        body = TRUNCATED_JSON
    elif kind == "html":
        status = int(params["status"])
        content_type = b"text/html; charset=utf-8"
        body = _HTML_PAGE.format(status=status, reason=_reason(status)).encode()
    elif kind == "empty_body":
        body = b""
    elif kind == "forbidden":
        status = 403
        content_type = b"application/xml"
        body = _FORBIDDEN_XML
    else:  # pragma: no cover - kinds are validated at injection
        raise ValueError(f"fault kind {kind!r} has no canned response")
    headers = [(b"content-type", content_type), (b"content-length", str(len(body)).encode())]
    retry_after = params.get("retry_after")
    if retry_after is not None:
        headers.append((b"retry-after", str(retry_after).encode("latin-1")))
    return status, headers, body


def http_date(epoch_seconds: float) -> str:
    """An HTTP-date (RFC 9110) as a ``retry_after`` fault parameter may use."""
    return formatdate(epoch_seconds, usegmt=True)


def _reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def _with_upload_flag(endpoint: str, body: dict[str, Any]) -> dict[str, Any]:
    """Upload endpoints add ``success`` to the envelope."""
    if endpoint in _UPLOAD_ENDPOINTS:
        return {"success": False, **body}
    return body


def _discard_but(send: Send) -> Send:
    """A ``send`` that swallows the answer of a request whose connection is dropped afterwards.

    It keeps ``send``'s owner reachable (``__self__``-free wrappers would hide uvicorn's
    transport), and still lets a capturing wrapper see the body first.
    """

    async def discard(message: Message) -> None:
        observe = getattr(send, "observe", None)
        if callable(observe):
            observe(message)

    return discard


def _query_value(scope: Scope, name: bytes) -> str | None:
    for pair in bytes(scope.get("query_string", b"")).split(b"&"):
        key, _, value = pair.partition(b"=")
        if key == name and value:
            return unquote_to_bytes(value).decode("utf-8", "replace")
    return None


async def _read_body(receive: Receive) -> bytes:
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that hands the already-read body to the app once, then defers to ``receive``."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()  # the disconnect, when it comes

    return replay


def _prompt_of(body: bytes) -> str | None:
    """The prompt of a create body: top-level for Flux Kontext, ``input.prompt`` for Market jobs."""
    try:
        payload = json.loads(body)
    except ValueError:
        return None
    if not isinstance(payload, dict):
        return None
    prompt = payload.get("prompt")
    market_input = payload.get("input")
    if prompt is None and isinstance(market_input, dict):
        prompt = market_input.get("prompt")
    return prompt if isinstance(prompt, str) else None


class _CapturingSend:
    """Wraps ``send``: reports the ``taskId`` of a create answer, keeps uvicorn's owner reachable."""

    def __init__(self, send: Send, on_task_id: Callable[[str], None]) -> None:
        self._send = send
        self._on_task_id = on_task_id
        self.__self__ = getattr(send, "__self__", None)  # what _transport_of looks for

    def observe(self, message: Message) -> None:
        if message["type"] != "http.response.body":
            return
        try:
            payload = json.loads(message.get("body", b""))
        except ValueError:
            return
        data = payload.get("data") if isinstance(payload, dict) else None
        task_id = data.get("taskId") if isinstance(data, dict) else None
        if isinstance(task_id, str):
            self._on_task_id(task_id)

    async def __call__(self, message: Message) -> None:
        self.observe(message)
        await self._send(message)


def _capturing_task_id(send: Send, on_task_id: Callable[[str], None]) -> Send:
    return _CapturingSend(send, on_task_id)


def _delayed(send: Send, delay: float) -> Send:
    """Wrap ``send`` so the answer starts ``delay`` seconds after the app produced it.

    The request is fully processed first (for generate: the task exists), which is exactly what
    makes a client-side read timeout ambiguous.
    """

    async def delayed_send(message: Message) -> None:
        if message["type"] == "http.response.start":
            await asyncio.sleep(delay)
        await send(message)

    return delayed_send


def _transport_of(send: Send) -> Any:
    """uvicorn's ``send`` is ``RequestResponseCycle.send``; its owner keeps the transport.

    Duck-typed because uvloop's transports do not subclass ``asyncio.BaseTransport``.
    """
    owner = getattr(send, "__self__", None)
    transport = getattr(owner, "transport", None)
    return transport if callable(getattr(transport, "close", None)) else None


async def _drop_connection(receive: Receive, send: Send) -> None:
    """Close the TCP connection without any answer, then wait until the server has noticed.

    Waiting for ``http.disconnect`` matters: if the app returned first, uvicorn would think no
    response was started and try to write its own 500 (and log an error).
    """
    transport = _transport_of(send)
    if transport is None:
        raise RuntimeError("drop faults need uvicorn: no transport reachable from the ASGI send callable")
    transport.close()
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(2.0):
            while (await receive())["type"] != "http.disconnect":
                pass
