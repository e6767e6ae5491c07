"""kie's endpoints, the requests to them, and the reading of their ``{code, msg, data}`` answers.

kie answers most failures with HTTP 200 and the real outcome in the body's ``code`` (401 for a
bad key, 402 for no credits, 422 for bad input...). An answer is a success only when the HTTP
status is 2xx **and** the body's ``code`` is 200. Errors are classified by the body code first
and by the HTTP status when the body has none (an HTML gateway page, an empty body).

Both API families speak this envelope: Flux Kontext's own endpoints (``generate``,
``record-info``) and the Market jobs API (``createTask``, ``recordInfo``), which serves every
other image model. One reader and one classifier serve both; the few places where the Market
words a code differently are marked where the code is read. Each family's create is a
*create* (:attr:`Endpoint.creates_billable_work`), and every rule about money keys on that, not
on which endpoint it is.

This module does no I/O. The sync hook and the async client build requests with the
``*_request`` functions, send them however they like, and hand the status, headers and raw
body back to :func:`parse_envelope`/:func:`parse_generate_response`.
"""

from __future__ import annotations

import base64
import email.utils
import enum
import json
import re
import time
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

from airflow_provider_kontext._protocol.catalog import check_uncatalogued_input, validate_input
from airflow_provider_kontext._protocol.record import (
    ApiFamily,
    TaskRecord,
    looks_like_moderation,
    parse_market_record,
    parse_record,
)
from airflow_provider_kontext._protocol.request import (
    WIRE_NAMES,
    CreateRequest,
    GenerateRequest,
    MarketRequest,
    check_http_url,
    check_task_id,
)
from airflow_provider_kontext.exceptions import (
    KontextAuthError,
    KontextContentPolicyError,
    KontextError,
    KontextFeatureDisabledError,
    KontextGenerationFailedError,
    KontextInsufficientCreditsError,
    KontextKeyLimitError,
    KontextNotFoundError,
    KontextRateLimitError,
    KontextResponseError,
    KontextServerError,
    KontextServiceUnavailableError,
    KontextSubmissionOutcomeUnknownError,
    KontextTransportError,
    KontextValidationError,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

#: Longest wait a ``Retry-After`` header may impose on us; a larger value is clamped.
MAX_RETRY_AFTER_SECONDS: Final = 60.0

#: kie's ``msg`` for a task it has no record of (yet).
RECORD_INFO_NULL_MESSAGE: Final = "recordInfo is null"

SUCCESS_CODE: Final = 200


class Endpoint(enum.Enum):
    """
    Every kie endpoint the provider calls: label, method, path, API family, and what sending it does.

    ``creates_billable_work`` marks a create: it makes (and bills) a task, so it must never be
    sent twice after an ambiguous outcome. Every other endpoint reads, uploads or fetches, and
    is safe to resend. ``api`` is ``None`` for what both families share (credits, uploads, files).
    """

    GENERATE = ("generate", "POST", "/api/v1/flux/kontext/generate", ApiFamily.KONTEXT, True)
    RECORD_INFO = ("record-info", "GET", "/api/v1/flux/kontext/record-info", ApiFamily.KONTEXT)
    MARKET_CREATE = ("market-create", "POST", "/api/v1/jobs/createTask", ApiFamily.MARKET, True)
    MARKET_RECORD_INFO = ("market-record-info", "GET", "/api/v1/jobs/recordInfo", ApiFamily.MARKET)
    CREDIT = ("credit", "GET", "/api/v1/chat/credit")
    DOWNLOAD_URL = ("download-url", "POST", "/api/v1/common/download-url")
    UPLOAD_STREAM = ("upload-stream", "POST", "/api/file-stream-upload", None, False, True)
    UPLOAD_URL = ("upload-url", "POST", "/api/file-url-upload", None, False, True)
    UPLOAD_BASE64 = ("upload-base64", "POST", "/api/file-base64-upload", None, False, True)
    #: A result image on kie's storage host; the URL comes from the task record.
    FILE = ("file", "GET", "")

    def __init__(
        self,
        label: str,
        method: str,
        path: str,
        api: ApiFamily | None = None,
        creates_billable_work: bool = False,
        on_upload_host: bool = False,
    ) -> None:
        self.label = label
        self.method = method
        self.path = path
        self.api = api
        self.creates_billable_work = creates_billable_work
        #: Uploads live on a different host (``kieai.redpandaai.co``) from the API.
        self.on_upload_host = on_upload_host


@dataclass(frozen=True)
class ApiRequest:
    """A transport-neutral description of one API call: what to send, not how."""

    endpoint: Endpoint
    params: Mapping[str, str] = field(default_factory=dict)
    json_body: Mapping[str, Any] | None = None

    @property
    def method(self) -> str:
        return self.endpoint.method

    @property
    def path(self) -> str:
        return self.endpoint.path


def generate_request(request: GenerateRequest) -> ApiRequest:
    return ApiRequest(Endpoint.GENERATE, json_body=request.to_payload())


def create_request(request: CreateRequest) -> ApiRequest:
    """The create of either family: a Kontext ``generate`` or a Market ``createTask``."""
    if isinstance(request, MarketRequest):
        return market_create_request(request.model, request.input, request.callback_url, validate=request.catalogued)
    return generate_request(request)


def status_endpoint(api: ApiFamily) -> Endpoint:
    """Where a task of family ``api`` is read."""
    return Endpoint.MARKET_RECORD_INFO if api is ApiFamily.MARKET else Endpoint.RECORD_INFO


def status_request(task_id: str, api: ApiFamily) -> ApiRequest:
    """The status read of a task of family ``api``: each family has its own endpoint."""
    return market_record_request(task_id) if api is ApiFamily.MARKET else record_info_request(task_id)


def parse_create_response(
    endpoint: Endpoint, http_status: int, body: bytes, headers: Mapping[str, str] | None = None
) -> str:
    """The new task id of a create of either family (``endpoint`` says which), or the error."""
    return _parse_create_response(endpoint, http_status, body, headers)


def parse_status_response(
    api: ApiFamily, http_status: int, body: bytes, headers: Mapping[str, str] | None = None, *, task_id: str
) -> TaskRecord:
    """A task's record from the status endpoint of its family."""
    if api is ApiFamily.MARKET:
        return parse_market_record_response(http_status, body, headers, task_id=task_id)
    return parse_record_info_response(http_status, body, headers, task_id=task_id)


def record_info_request(task_id: str) -> ApiRequest:
    return ApiRequest(Endpoint.RECORD_INFO, params={"taskId": check_task_id(task_id)})


def market_create_request(
    model: str, input: Mapping[str, Any], callback_url: str | None = None, *, validate: bool = True
) -> ApiRequest:
    """
    ``POST /api/v1/jobs/createTask``: ``{"model", "input", "callBackUrl"?}``, checked before anything is sent.

    ``input`` goes through the model catalog (:func:`~.catalog.validate_input`), whose result
    is what is sent: kie ignores unknown fields, so a typo would otherwise be paid for.
    ``validate=False`` is the catalog's opt-out for a model it lacks or gets wrong: then only the
    shape is checked. ``callBackUrl`` is sent only when given, since kie posts to whatever it gets.
    """
    checked = validate_input(model, input) if validate else check_uncatalogued_input(model, input)
    body: dict[str, Any] = {"model": model, "input": checked}
    if callback_url is not None:
        body["callBackUrl"] = check_http_url(callback_url, field="callback_url")
    return ApiRequest(Endpoint.MARKET_CREATE, json_body=body)


def market_record_request(task_id: str) -> ApiRequest:
    """``GET /api/v1/jobs/recordInfo?taskId=``: one status endpoint for every Market model."""
    return ApiRequest(Endpoint.MARKET_RECORD_INFO, params={"taskId": check_task_id(task_id)})


def credit_request() -> ApiRequest:
    return ApiRequest(Endpoint.CREDIT)


def download_url_request(url: str) -> ApiRequest:
    return ApiRequest(Endpoint.DOWNLOAD_URL, json_body={"url": check_http_url(url, field="url")})


@dataclass(frozen=True)
class Envelope:
    """A parsed kie answer: body ``code``/``msg``/``data`` plus the HTTP facts."""

    http_status: int
    code: int | None
    msg: str
    data: Any
    retry_after: float | None

    @property
    def ok(self) -> bool:
        return 200 <= self.http_status < 300 and self.code == SUCCESS_CODE

    @property
    def is_record_info_null(self) -> bool:
        """kie's "no such task (yet)" answer: HTTP 200, code 422, ``recordInfo is null``."""
        return self.code == 422 and RECORD_INFO_NULL_MESSAGE.lower() in self.msg.lower()


def read_envelope(
    endpoint: Endpoint, http_status: int, body: bytes, headers: Mapping[str, str] | None = None
) -> Envelope:
    """
    Decode an answer without judging it; raise :class:`KontextResponseError` only when it is unreadable.

    A non-JSON body on a non-2xx status is not "unreadable": it becomes an envelope with no
    code, classified later by its HTTP status (a gateway's HTML error page).
    """
    retry_after = parse_retry_after(_header(headers, "retry-after"))
    try:
        payload = json.loads(body) if body.strip() else None
    except (ValueError, UnicodeDecodeError):
        payload = None
        if 200 <= http_status < 300:
            raise KontextResponseError(
                f"kie {endpoint.label} answered HTTP {http_status} with a body that is not JSON ({_snippet(body)}).",
                http_status=http_status,
                endpoint=endpoint.label,
            ) from None
    if payload is None:
        if 200 <= http_status < 300:
            raise KontextResponseError(
                f"kie {endpoint.label} answered HTTP {http_status} with an empty body.",
                http_status=http_status,
                endpoint=endpoint.label,
            )
        return Envelope(http_status, None, _snippet(body), None, retry_after)
    if not isinstance(payload, dict):
        raise KontextResponseError(
            f"kie {endpoint.label} answered with JSON that is not an object ({_snippet(body)}).",
            http_status=http_status,
            endpoint=endpoint.label,
        )
    code = payload.get("code")
    if isinstance(code, str) and code.strip().isdigit():
        code = int(code)
    if not isinstance(code, int) or isinstance(code, bool):
        code = None
    return Envelope(
        http_status=http_status,
        code=code,
        msg=_message(payload),
        data=payload.get("data"),
        retry_after=retry_after,
    )


def _message(payload: Mapping[str, Any]) -> str:
    """kie's text: ``msg`` in its schemas, ``message`` in some of its examples, so ``msg ?? message``."""
    for key in ("msg", "message"):
        value = payload.get(key)
        if isinstance(value, str) and value:
            return value
    return ""


def parse_envelope(
    endpoint: Endpoint,
    http_status: int,
    body: bytes,
    headers: Mapping[str, str] | None = None,
    *,
    task_id: str | None = None,
) -> Any:
    """Return ``data`` of a successful answer, else raise the typed error for it."""
    envelope = read_envelope(endpoint, http_status, body, headers)
    if not envelope.ok:
        raise error_for_envelope(endpoint, envelope, task_id=task_id)
    return envelope.data


def parse_generate_response(http_status: int, body: bytes, headers: Mapping[str, str] | None = None) -> str:
    """The new task id of a Flux Kontext ``generate``, or the error; see :func:`_parse_create_response`."""
    return _parse_create_response(Endpoint.GENERATE, http_status, body, headers)


def parse_market_create_response(http_status: int, body: bytes, headers: Mapping[str, str] | None = None) -> str:
    """The new task id of a Market ``createTask``, or the error; see :func:`_parse_create_response`."""
    return _parse_create_response(Endpoint.MARKET_CREATE, http_status, body, headers)


def _parse_create_response(endpoint: Endpoint, http_status: int, body: bytes, headers: Mapping[str, str] | None) -> str:
    """
    Return the new kie task id of a create, or raise.

    Errors that mean kie *refused* the request (401, 402, 422, 429, 433, 455, ...) pass through
    unchanged. Errors that leave open whether kie accepted it (a 5xx, an unreadable answer, a
    success without a task id) become :class:`KontextSubmissionOutcomeUnknownError`, because a
    task may exist and be billed, and sending the request again could pay twice. Both families
    answer a create with ``data.taskId``.
    """
    try:
        data = parse_envelope(endpoint, http_status, body, headers)
    except (KontextServerError, KontextResponseError) as err:
        raise submission_outcome_unknown(str(err), http_status=http_status, code=err.code, endpoint=endpoint) from err
    task_id = data.get("taskId") if isinstance(data, dict) else None
    if not isinstance(task_id, str) or not task_id.strip():
        raise submission_outcome_unknown(
            f"kie {endpoint.label} answered success but without a taskId (data={data!r}).",
            http_status=http_status,
            code=SUCCESS_CODE,
            endpoint=endpoint,
        )
    return task_id.strip()


def submission_outcome_unknown(
    cause: str, *, http_status: int | None = None, code: int | None = None, endpoint: Endpoint = Endpoint.GENERATE
) -> KontextSubmissionOutcomeUnknownError:
    """The error of a create that kie may have accepted: never sent again, the caller is told to check kie's logs."""
    return KontextSubmissionOutcomeUnknownError(
        f"The {endpoint.label} request may or may not have created a task ({cause}). It was NOT sent again: "
        "a task may have been created and billed. Check https://kie.ai/logs before resubmitting.",
        http_status=http_status,
        code=code,
        endpoint=endpoint.label,
    )


class TransportFailure(enum.Enum):
    """How an HTTP exchange failed, in the terms that decide whether a create may be resent."""

    #: The connection was never established (refused, DNS, connect timeout): nothing was sent.
    CONNECT = "connect"
    #: The request went out but no answer came before the read timeout.
    READ_TIMEOUT = "read_timeout"
    #: The connection broke after the request was (or may have been) sent.
    DISCONNECTED = "disconnected"


def transport_error(endpoint: Endpoint, failure: TransportFailure, detail: str) -> KontextError:
    """
    The typed error for a failed exchange.

    Only a create that may have reached kie is ambiguous; every other case is a
    :class:`KontextTransportError` that says whether the request was sent.
    """
    sent = failure is not TransportFailure.CONNECT
    if sent and endpoint.creates_billable_work:
        return submission_outcome_unknown(f"{failure.value}: {detail}", endpoint=endpoint)
    return KontextTransportError(
        f"kie {endpoint.label} request failed ({failure.value}): {detail}",
        request_sent=sent,
        endpoint=endpoint.label,
    )


#: Body code -> (error class, what it means), kie's documented table.
_CODE_ERRORS: Final[dict[int, tuple[type[KontextError], str]]] = {
    400: (KontextContentPolicyError, "content refused by moderation"),
    401: (KontextAuthError, "missing or invalid API key"),
    402: (KontextInsufficientCreditsError, "insufficient credits"),
    404: (KontextNotFoundError, "resource or endpoint not found"),
    408: (KontextServerError, "upstream timeout"),
    422: (KontextValidationError, "request rejected as invalid"),
    429: (KontextRateLimitError, "rate limited, request dropped"),
    433: (KontextKeyLimitError, "the API key's usage limit is reached"),
    455: (KontextServiceUnavailableError, "service under maintenance"),
    500: (KontextServerError, "server error"),
    501: (KontextGenerationFailedError, "generation failed"),
    505: (KontextFeatureDisabledError, "feature disabled"),
}


def error_for_envelope(endpoint: Endpoint, envelope: Envelope, *, task_id: str | None = None) -> KontextError:
    """Classify a non-success answer: body code first, then the HTTP status, then kie's words where they decide."""
    code = envelope.code if envelope.code not in (None, SUCCESS_CODE) else None
    key = code if code is not None else _code_for_http_status(envelope.http_status)
    fallback = (KontextServerError, "server error") if key >= 500 else (KontextResponseError, "unexpected answer")
    cls, meaning = _CODE_ERRORS.get(key, fallback)
    shown_code = code if code is not None else envelope.code
    message = (
        f"kie {endpoint.label} failed: {meaning} (code {shown_code}, HTTP {envelope.http_status})"
        + (f" for task {task_id}" if task_id else "")
        + (f": {envelope.msg}" if envelope.msg else "")
    )
    common: dict[str, Any] = {
        "code": key,
        "http_status": envelope.http_status,
        "kie_task_id": task_id,
        "kie_message": envelope.msg or None,
        "endpoint": endpoint.label,
    }
    invalid = _worded_as_invalid(endpoint, key, envelope.msg, message, common)
    if invalid is not None:
        return invalid
    if cls in (KontextRateLimitError, KontextServiceUnavailableError):
        return cls(message, retry_after=envelope.retry_after, **common)
    return cls(message, **common)


#: kie's words when it answers bad input with code 500 instead of 422 (reported for the Market's
#: createTask: "… is required", "… is not within the range of allowed options"). A bare lower-case
#: name right before the phrase is taken as the field; a quoted word is more likely a value, so
#: it names nothing.
_VALIDATION_WORDING: Final = re.compile(
    r"(?:\b(?!(?:field|param|parameter|value|it|is)\b)(?P<field>[a-z][A-Za-z0-9_]*(?:\.[A-Za-z0-9_]+)*)\s+)?"
    r"(?i:is required|(?:is )?not within the range of allowed options|is invalid|must be (?:between|one of))"
)
#: kie's answer to a Market ``model`` it does not have (or has not published).
_UNKNOWN_MODEL_WORDING: Final = "does not exist or is not published"
#: Top-level createTask fields by the names this provider gives them.
_MARKET_BODY_FIELDS: Final = {"model": "model", "input": "input", "callBackUrl": "callback_url"}
_KONTEXT_FIELDS: Final = {wire: name for name, wire in WIRE_NAMES.items()}


def _worded_as_invalid(
    endpoint: Endpoint, key: int, msg: str, message: str, common: dict[str, Any]
) -> KontextValidationError | None:
    """
    The validation error of an answer whose *text* overrides its code, else ``None``.

    * 500 "safety tolerance ...": Flux Kontext's out-of-range tolerance, a validation failure.
    * 500 worded as a validation failure, on a create: kie refused the input. A create's plain
      500 stays ambiguous (it may have been accepted); a read's stays retryable, because a retry
      is free and mistaking a server fault for a permanent one would fail a wait on paid images.
    * Market 400: its model pages mean "invalid request parameters"; only moderation wording makes
      it a content-policy refusal, as Flux Kontext's code 400 always is.
    * Market 422 "The page does not exist or is not published": kie has no such ``model``.
    """
    lowered = msg.lower()
    field: str | None
    if key == 500 and "tolerance" in lowered:
        field = "safety_tolerance"
    elif key == 500 and endpoint.creates_billable_work and (match := _VALIDATION_WORDING.search(msg)):
        field = _field_named(endpoint, match.group("field"))
    elif endpoint.api is ApiFamily.MARKET and key == 400 and not looks_like_moderation(msg):
        field = None
    elif endpoint is Endpoint.MARKET_CREATE and key == 422 and _UNKNOWN_MODEL_WORDING in lowered:
        field = "model"
        message += " (kie has no published Market model by that name)"
    else:
        return None
    return KontextValidationError(message, field=field, **common)


def _field_named(endpoint: Endpoint, name: str | None) -> str | None:
    """The provider's name for a field kie named in its message (Market input fields as ``input.<name>``)."""
    if name is None:
        return None
    if endpoint.api is ApiFamily.MARKET:
        return _MARKET_BODY_FIELDS.get(name) or f"input.{name.removeprefix('input.')}"
    return name if name in WIRE_NAMES else _KONTEXT_FIELDS.get(name)


def _code_for_http_status(http_status: int) -> int:
    if http_status == 403:
        # kie's CDN answers 403 ("error code: 1010") to clients it does not trust; the key is
        # not the problem there, but the request was refused all the same.
        return 401
    return http_status


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """``Retry-After`` as seconds (delta-seconds or an HTTP date), clamped to [0, MAX_RETRY_AFTER_SECONDS]."""
    if value is None or not value.strip():
        return None
    value = value.strip()
    seconds: float
    if value.replace(".", "", 1).isdigit():
        seconds = float(value)
    else:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when is None:
            return None
        seconds = when.timestamp() - (time.time() if now is None else now)
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_SECONDS)


def _header(headers: Mapping[str, str] | None, name: str) -> str | None:
    if not headers:
        return None
    for key, value in headers.items():
        if key.lower() == name:
            return value
    return None


def _snippet(body: bytes, limit: int = 120) -> str:
    text = body[:limit].decode("utf-8", "replace").strip().replace("\n", " ")
    return text + ("..." if len(body) > limit else "") if text else "empty"


def parse_record_info_response(
    http_status: int, body: bytes, headers: Mapping[str, str] | None = None, *, task_id: str
) -> TaskRecord:
    """A Flux Kontext task's record; see :func:`_parse_status_response`."""
    return _parse_status_response(Endpoint.RECORD_INFO, parse_record, http_status, body, headers, task_id=task_id)


def parse_market_record_response(
    http_status: int, body: bytes, headers: Mapping[str, str] | None = None, *, task_id: str
) -> TaskRecord:
    """A Market task's record; see :func:`_parse_status_response`."""
    return _parse_status_response(
        Endpoint.MARKET_RECORD_INFO, parse_market_record, http_status, body, headers, task_id=task_id
    )


def _parse_status_response(
    endpoint: Endpoint,
    parse: Callable[..., TaskRecord],
    http_status: int,
    body: bytes,
    headers: Mapping[str, str] | None,
    *,
    task_id: str,
) -> TaskRecord:
    """
    The task's record; ``recordInfo is null`` becomes a ``PENDING`` record, not an error.

    Both families answer a task kie has not persisted yet with code 422 ``recordInfo is null``.
    Whether "pending" has lasted too long is the poll loop's call
    (:class:`~airflow_provider_kontext._protocol.polling.TaskWaiter`), not this parser's.
    """
    envelope = read_envelope(endpoint, http_status, body, headers)
    if envelope.is_record_info_null:
        return TaskRecord.pending(task_id, api=endpoint.api or ApiFamily.KONTEXT)
    if not envelope.ok:
        raise error_for_envelope(endpoint, envelope, task_id=task_id)
    return parse(envelope.data, task_id=task_id)


def parse_credit_response(http_status: int, body: bytes, headers: Mapping[str, str] | None = None) -> float:
    """The remaining credit balance; kie sends ``data`` as a bare number."""
    data = parse_envelope(Endpoint.CREDIT, http_status, body, headers)
    if isinstance(data, bool) or not isinstance(data, (int, float, str)):
        raise KontextResponseError(f"kie credit answered a non-numeric balance {data!r}.", endpoint="credit")
    try:
        return float(data)
    except ValueError:
        raise KontextResponseError(f"kie credit answered a non-numeric balance {data!r}.", endpoint="credit") from None


def parse_download_url_response(http_status: int, body: bytes, headers: Mapping[str, str] | None = None) -> str:
    """The temporary (20-minute) download link; kie sends ``data`` as a bare string."""
    data = parse_envelope(Endpoint.DOWNLOAD_URL, http_status, body, headers)
    if not isinstance(data, str) or not data.startswith(("http://", "https://")):
        raise KontextResponseError(f"kie download-url answered without a URL (data={data!r}).", endpoint="download-url")
    return data


# ----------------------------------------------------------------------------- file uploads
#
# kie's File Upload API lives on its own host (``Endpoint.*.on_upload_host``) and adds
# ``success`` to the usual envelope. Uploads are free and create nothing billable, so
# :func:`~airflow_provider_kontext._protocol.retry.is_retryable` treats them like reads.

#: Files up to this size go through the base64 endpoint (kie's quickstart: base64 for <= 1 MB);
#: larger ones are streamed as multipart, which costs a third less traffic and no memory.
BASE64_UPLOAD_MAX_BYTES: Final = 1024 * 1024

#: Name of the multipart part that carries the file bytes on ``/api/file-stream-upload``.
UPLOAD_STREAM_FILE_FIELD: Final = "file"

_UPLOAD_ENDPOINTS: Final = frozenset({Endpoint.UPLOAD_STREAM, Endpoint.UPLOAD_URL, Endpoint.UPLOAD_BASE64})


def check_upload_path(upload_path: Any) -> str:
    """
    kie's ``uploadPath``: a relative folder such as ``images/user-uploads``.

    Refused locally rather than by kie's 400, because ``..`` or backslashes would be a request
    bug, and leading/trailing slashes are normalised away so ``/a/b/`` and ``a/b`` name one folder.
    """
    if not isinstance(upload_path, str):
        raise KontextValidationError(
            f"upload_path must be a string, got {type(upload_path).__name__}.", field="upload_path"
        )
    parts = [part for part in upload_path.strip().strip("/").split("/") if part]
    if not parts:
        raise KontextValidationError("upload_path must not be empty.", field="upload_path")
    if any(part in (".", "..") or "\\" in part or not part.isprintable() for part in parts):
        raise KontextValidationError(
            f"upload_path must be a plain relative folder without '.', '..' or backslashes, got {upload_path!r}.",
            field="upload_path",
        )
    return "/".join(parts)


def check_upload_file_name(file_name: Any) -> str | None:
    """
    kie's optional ``fileName``: a plain name (``None`` lets kie pick a random one).

    Quotes and control characters are refused as well as separators: the name is also written
    into a multipart ``Content-Disposition`` header, where they would break the framing.
    """
    if file_name is None:
        return None
    if not isinstance(file_name, str):
        raise KontextValidationError(f"file_name must be a string, got {type(file_name).__name__}.", field="file_name")
    name = file_name.strip()
    if (
        not name
        or name in (".", "..")
        or any(c in name for c in '/\\"')
        or not name.isprintable()
        or len(name.encode()) > 255
    ):
        raise KontextValidationError(
            f"file_name must be a plain file name (no path separators, quotes or control characters), "
            f"got {file_name!r}.",
            field="file_name",
        )
    return name


def _upload_fields(upload_path: str, file_name: str | None) -> dict[str, str]:
    fields = {"uploadPath": check_upload_path(upload_path)}
    name = check_upload_file_name(file_name)
    if name is not None:
        fields["fileName"] = name
    return fields


def upload_url_request(file_url: str, *, upload_path: str, file_name: str | None = None) -> ApiRequest:
    """``POST /api/file-url-upload``: kie fetches a public http(s) URL itself (30 s timeout)."""
    return ApiRequest(
        Endpoint.UPLOAD_URL,
        json_body={"fileUrl": check_http_url(file_url, field="file_url"), **_upload_fields(upload_path, file_name)},
    )


def upload_base64_request(
    data: bytes, *, upload_path: str, file_name: str | None = None, content_type: str | None = None
) -> ApiRequest:
    """
    ``POST /api/file-base64-upload`` for small files.

    With a known ``content_type`` the bytes are sent as a ``data:`` URL, which kie documents, so
    the stored file gets the right type even when ``file_name`` has no telling extension.
    """
    if not isinstance(data, bytes) or not data:
        raise KontextValidationError("An upload needs at least one byte of data.", field="source")
    encoded = base64.b64encode(data).decode("ascii")
    if content_type and content_type != "application/octet-stream":
        encoded = f"data:{content_type};base64,{encoded}"
    return ApiRequest(
        Endpoint.UPLOAD_BASE64, json_body={"base64Data": encoded, **_upload_fields(upload_path, file_name)}
    )


@dataclass(frozen=True)
class StreamUploadRequest:
    """
    ``POST /api/file-stream-upload`` as multipart/form-data, minus the file bytes themselves.

    ``requests`` reads a file passed through ``files=`` into memory whole, so the transport sends
    :meth:`head`, then the file in chunks, then :meth:`tail`: the framing is built here, once, and
    the I/O stays in the hook. :meth:`body_length` gives the exact ``Content-Length`` for a file
    of known size, so no chunked transfer encoding is needed.
    """

    fields: Mapping[str, str]
    part_file_name: str
    part_content_type: str
    boundary: str = field(default_factory=lambda: "kontext-" + uuid.uuid4().hex)

    @property
    def endpoint(self) -> Endpoint:
        return Endpoint.UPLOAD_STREAM

    @property
    def content_type(self) -> str:
        """The request's ``Content-Type`` header value."""
        return f"multipart/form-data; boundary={self.boundary}"

    def head(self) -> bytes:
        """The form fields and the headers of the file part, up to where the file bytes start."""
        out = bytearray()
        for name, value in self.fields.items():
            out += f'--{self.boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'.encode()
            out += value.encode() + b"\r\n"
        out += (
            f"--{self.boundary}\r\n"
            f'Content-Disposition: form-data; name="{UPLOAD_STREAM_FILE_FIELD}"; filename="{self.part_file_name}"\r\n'
            f"Content-Type: {self.part_content_type}\r\n\r\n"
        ).encode()
        return bytes(out)

    def tail(self) -> bytes:
        """Everything after the file bytes: the closing boundary."""
        return f"\r\n--{self.boundary}--\r\n".encode()

    def body_length(self, file_size: int) -> int:
        return len(self.head()) + file_size + len(self.tail())


def upload_stream_request(
    *, upload_path: str, file_name: str | None = None, part_file_name: str, content_type: str | None = None
) -> StreamUploadRequest:
    """
    The multipart upload of one file.

    :param file_name: kie's ``fileName`` field (``None``: kie picks a random name).
    :param part_file_name: The ``filename`` of the file part; kie wants one even without ``fileName``.
    """
    return StreamUploadRequest(
        fields=_upload_fields(upload_path, file_name),
        part_file_name=check_upload_file_name(part_file_name) or "upload.bin",
        part_content_type=content_type or "application/octet-stream",
    )


def parse_upload_response(
    http_status: int,
    body: bytes,
    headers: Mapping[str, str] | None = None,
    *,
    endpoint: Endpoint = Endpoint.UPLOAD_STREAM,
) -> str:
    """
    ``data.downloadUrl`` of a successful upload: the URL to send as ``inputImage``.

    kie documents two answer shapes (``fileName/filePath/downloadUrl/...`` and an older
    ``fileId/fileUrl/downloadUrl/...``); only ``downloadUrl`` is common, so nothing else is read.
    ``success: false`` is a failure whatever ``code`` says. A 400 here means "bad or missing
    parameters", not a moderation refusal as on generate, so it becomes a
    :class:`KontextValidationError` instead of error_for_envelope's content-policy error.
    Pass the real ``endpoint`` so messages name it.
    """
    if endpoint not in _UPLOAD_ENDPOINTS:
        raise ValueError(f"{endpoint} is not an upload endpoint")
    envelope = read_envelope(endpoint, http_status, body, headers)
    if envelope.ok and _upload_success_flag(body) is False:
        envelope = Envelope(http_status, None, envelope.msg or "success: false", envelope.data, envelope.retry_after)
    if not envelope.ok:
        error = error_for_envelope(endpoint, envelope)
        if error.code == 400:
            raise KontextValidationError(
                f"kie {endpoint.label} refused the upload as invalid (code 400, HTTP {http_status})"
                + (f": {envelope.msg}" if envelope.msg else "")
                + ".",
                code=400,
                http_status=http_status,
                kie_message=envelope.msg or None,
                endpoint=endpoint.label,
            )
        raise error
    data = envelope.data
    url = data.get("downloadUrl") if isinstance(data, dict) else None
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        raise KontextResponseError(
            f"kie {endpoint.label} answered success without a downloadUrl (data={_snippet(repr(data).encode())}).",
            http_status=http_status,
            endpoint=endpoint.label,
        )
    return url


def _upload_success_flag(body: bytes) -> bool | None:
    """The upload envelope's ``success`` flag, ``None`` when absent (the body is known to be JSON here)."""
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError):  # pragma: no cover - read_envelope already parsed it
        return None
    flag = payload.get("success") if isinstance(payload, dict) else None
    return flag if isinstance(flag, bool) else None
