"""A kie task's record, its status, and what a failed one means, for both API families.

The Flux Kontext ``record-info`` and the Market ``jobs/recordInfo`` describe a task in different
words (``successFlag`` and ``response.resultImageUrl``; ``state`` and ``resultJson.resultUrls``)
but the provider needs one answer from both: is it done, where are its images, and if it failed,
why. :func:`parse_record` and :func:`parse_market_record` absorb each family's loose typing
(times as ISO strings or epoch milliseconds, codes as ints, strings or null, parameters and
results as JSON *strings*) into the same :class:`TaskRecord`, whose :meth:`~TaskRecord.to_dict`
is plain JSON, safe for trigger events and XCom. Everything downstream (the poll decision, the
typed errors, the results) reads only the record.
"""

from __future__ import annotations

import enum
import json
import math
import re
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any, Final

from airflow_provider_kontext.exceptions import (
    KontextContentPolicyError,
    KontextGenerationFailedError,
    KontextMissingResultError,
    KontextResponseError,
    KontextTaskCreateFailedError,
    KontextTaskFailedError,
)

#: How real clients tell a moderation refusal from a technical failure when the code is vague.
#: kie documents no Market refusal texts, so this takes the wordings seen from kie and its
#: upstream models. Two look-alikes are kept out on purpose: "safety tolerance" (Flux Kontext's
#: moderation *setting*, whose out-of-range value is a validation failure) and ``nsfw_checker``
#: (a Market input field, named in validation messages).
_MODERATION_PATTERN: Final = re.compile(
    r"prohibited|content polic|polic(?:y|ies)|violat|sensitive|flagged|moderat|inappropriate|unsafe"
    r"|nsfw(?!_checker)|safety(?![ _-]?tolerance)",
    re.IGNORECASE,
)


def looks_like_moderation(text: str | None) -> bool:
    """Whether kie's message reads as a content-policy refusal rather than a technical failure."""
    return bool(text) and _MODERATION_PATTERN.search(text or "") is not None


class ApiFamily(enum.StrEnum):
    """Which of kie's two task APIs a task belongs to: Flux Kontext's own endpoints or the Market jobs API."""

    KONTEXT = "kontext"
    MARKET = "market"


class TaskStatus(enum.StrEnum):
    """Where a kie task is. ``PENDING`` is ours: kie answered ``recordInfo is null``."""

    PENDING = "PENDING"
    GENERATING = "GENERATING"
    SUCCESS = "SUCCESS"
    CREATE_TASK_FAILED = "CREATE_TASK_FAILED"
    GENERATE_FAILED = "GENERATE_FAILED"

    @classmethod
    def from_success_flag(cls, flag: Any, *, task_id: str) -> TaskStatus:
        """Map kie's ``successFlag`` (0 running, 1 success, 2 create failed, 3 generate failed)."""
        mapping = {0: cls.GENERATING, 1: cls.SUCCESS, 2: cls.CREATE_TASK_FAILED, 3: cls.GENERATE_FAILED}
        if isinstance(flag, str) and flag.strip().isdigit():
            flag = int(flag)
        if isinstance(flag, bool) or flag not in mapping:
            raise KontextResponseError(
                f"kie record-info for task {task_id} has an unknown successFlag {flag!r}.",
                kie_task_id=task_id,
                endpoint="record-info",
            )
        return mapping[flag]

    @classmethod
    def from_market_state(cls, state: Any, *, task_id: str) -> TaskStatus:
        """
        Map the Market's ``state``: ``waiting``, ``queuing`` and ``generating`` run, ``success``, ``fail``.

        An unknown state is an error, as an unknown ``successFlag`` is: read as "running" it
        would hide a new terminal state until the wait times out.
        """
        status = _MARKET_STATES.get(state.strip().lower()) if isinstance(state, str) else None
        if status is None:
            raise KontextResponseError(
                f"kie recordInfo for task {task_id} has an unknown state {state!r}.",
                kie_task_id=task_id,
                endpoint="market-record-info",
            )
        return status

    @property
    def is_terminal(self) -> bool:
        return self in (TaskStatus.SUCCESS, TaskStatus.CREATE_TASK_FAILED, TaskStatus.GENERATE_FAILED)


#: The Market's ``state`` values. Its three running states are one for the provider: the
#: difference between queued and generating changes nothing about when to look again.
_MARKET_STATES: Final[dict[str, TaskStatus]] = {
    "waiting": TaskStatus.GENERATING,
    "queuing": TaskStatus.GENERATING,
    "generating": TaskStatus.GENERATING,
    "success": TaskStatus.SUCCESS,
    "fail": TaskStatus.GENERATE_FAILED,
}

#: How each family names the fields a failure message quotes.
_CODE_NAME: Final = {ApiFamily.KONTEXT: "errorCode", ApiFamily.MARKET: "failCode"}
_RESULT_NAME: Final = {ApiFamily.KONTEXT: "resultImageUrl", ApiFamily.MARKET: "resultJson.resultUrls"}


@dataclass(frozen=True)
class TaskRecord:
    """
    What the provider knows about one kie task, whichever API made it; :meth:`to_dict` is plain JSON.

    ``result_image_urls`` holds every image of the task (a Market model may return several);
    ``result_image_url`` is always its first, so a consumer that knows only one image per task
    keeps working. Either may be given: construction fills in the other. ``credits`` is what
    kie says the task consumed, ``None`` when it did not say. ``api`` names the family, because
    the two read a failure code differently (see :meth:`failure`).
    """

    kie_task_id: str
    status: TaskStatus
    result_image_url: str | None = None
    origin_image_url: str | None = None
    error_code: int | str | None = None
    error_message: str | None = None
    create_time: str | None = None
    complete_time: str | None = None
    prompt: str | None = None
    model: str | None = None
    aspect_ratio: str | None = None
    output_format: str | None = None
    input_image: str | None = None
    result_image_urls: tuple[str, ...] = ()
    credits: float | None = None
    api: ApiFamily = ApiFamily.KONTEXT

    def __post_init__(self) -> None:
        urls = tuple(self.result_image_urls)
        if not urls and self.result_image_url:
            urls = (self.result_image_url,)  # a Kontext record, or an event from before the list
        first = urls[0] if urls else None
        if self.result_image_url and self.result_image_url != first:
            raise ValueError(
                f"result_image_url {self.result_image_url!r} is not the first of result_image_urls {urls!r}."
            )
        object.__setattr__(self, "result_image_urls", urls)
        object.__setattr__(self, "result_image_url", first)

    @classmethod
    def pending(cls, kie_task_id: str, *, api: ApiFamily = ApiFamily.KONTEXT) -> TaskRecord:
        return cls(kie_task_id=kie_task_id, status=TaskStatus.PENDING, api=api)

    @property
    def is_terminal(self) -> bool:
        return self.status.is_terminal

    @property
    def failed(self) -> bool:
        """Terminal without an image to fetch."""
        return self.is_terminal and not self.succeeded

    @property
    def succeeded(self) -> bool:
        """Success in the sense that matters: an image exists to fetch."""
        return self.status is TaskStatus.SUCCESS and bool(self.result_image_url)

    def failure(self) -> KontextTaskFailedError | None:
        """The typed error this terminal record stands for, or ``None`` if it succeeded or is running."""
        if not self.is_terminal or self.succeeded:
            return None
        detail = f"kie task {self.kie_task_id}"
        common: dict[str, Any] = {
            "status": self.status.value,
            "error_code": self.error_code,
            "kie_task_id": self.kie_task_id,
            "kie_message": self.error_message,
            "code": self.error_code if isinstance(self.error_code, int) else None,
        }
        code_name = _CODE_NAME[self.api]
        said = (
            f" ({code_name} {self.error_code}): {self.error_message}"
            if self.error_message
            else (f" ({code_name} {self.error_code})" if self.error_code is not None else "")
        )
        if self.status is TaskStatus.SUCCESS:
            return KontextMissingResultError(
                f"{detail} reported success without a {_RESULT_NAME[self.api]}; credits were probably charged "
                "and resubmitting pays again.",
                **common,
            )
        if self._refused_by_moderation():
            return KontextContentPolicyError(f"{detail} was refused by content moderation{said}", **common)
        if self.status is TaskStatus.CREATE_TASK_FAILED:
            return KontextTaskCreateFailedError(f"{detail} could not be created upstream{said}", **common)
        return KontextGenerationFailedError(f"{detail} failed to generate{said}", **common)

    def _refused_by_moderation(self) -> bool:
        """
        Moderation is read from kie's text on both APIs, and from the code only where it is documented.

        Flux Kontext documents errorCode 400 as "flagged as violating content policy". The Market
        documents no failCode list, and on its model pages 400 means "invalid request
        parameters", so a Market ``failCode`` "400" without moderation wording is a plain failure.
        """
        documented_code = self.api is ApiFamily.KONTEXT and str(self.error_code) == "400"
        return documented_code or looks_like_moderation(self.error_message)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["status"] = self.status.value
        data["api"] = self.api.value
        data["result_image_urls"] = list(self.result_image_urls)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TaskRecord:
        """
        Inverse of :meth:`to_dict`; unknown keys are ignored so newer events still load.

        Missing keys take their defaults so older events load too: one without ``api`` is a
        Flux Kontext record, one without ``result_image_urls`` has its ``result_image_url`` as
        its only image.
        """
        known = {name: data[name] for name in cls.__dataclass_fields__ if name in data}
        known["status"] = TaskStatus(known["status"])
        known["api"] = ApiFamily(known.get("api") or ApiFamily.KONTEXT)
        urls = known.get("result_image_urls") or ()
        if not isinstance(urls, list | tuple) or not all(isinstance(url, str) for url in urls):
            raise TypeError(f"result_image_urls must be a list of strings, got {urls!r}.")
        known["result_image_urls"] = tuple(urls)
        return cls(**known)


def _require_record(data: Any, *, task_id: str, endpoint: str) -> None:
    """A status read's ``data`` must be the record object, whichever family answered."""
    if not isinstance(data, dict):
        raise KontextResponseError(
            f"kie {endpoint} for task {task_id} returned no record (data={data!r}).",
            kie_task_id=task_id,
            endpoint=endpoint,
        )


def parse_record(data: Any, *, task_id: str) -> TaskRecord:
    """Build a :class:`TaskRecord` from record-info's ``data`` (already known to be a success envelope)."""
    _require_record(data, task_id=task_id, endpoint="record-info")
    status = TaskStatus.from_success_flag(data.get("successFlag"), task_id=task_id)
    response = _response_urls(data.get("response"))
    params = _params(data.get("paramJson"))
    message = data.get("errorMessage")
    return TaskRecord(
        kie_task_id=str(data.get("taskId") or task_id),
        status=status,
        result_image_url=response.get("resultImageUrl"),
        origin_image_url=response.get("originImageUrl"),
        error_code=_error_code(data.get("errorCode")),
        error_message=message if isinstance(message, str) and message else None,
        create_time=normalize_time(data.get("createTime")),
        complete_time=normalize_time(data.get("completeTime")),
        prompt=_str_or_none(params.get("prompt")),
        model=_str_or_none(params.get("model")),
        aspect_ratio=_str_or_none(params.get("aspectRatio")),
        output_format=_str_or_none(params.get("outputFormat")),
        input_image=_str_or_none(params.get("inputImage")),
    )


def parse_market_record(data: Any, *, task_id: str) -> TaskRecord:
    """
    Build a :class:`TaskRecord` from the Market's ``recordInfo`` ``data`` or a Market callback's ``data``.

    Only ``state`` must make sense; the rest is kept as far as it can be read. ``param`` (the
    original create request) and ``resultJson`` are JSON strings per kie's docs and objects per
    some clients, so both are read, and an unreadable one is skipped rather than failing a task
    whose state is clear. The record names its prompt from ``param.input.prompt``; which input
    field holds the input images depends on the model, so ``input_image`` stays unset.
    """
    _require_record(data, task_id=task_id, endpoint="market-record-info")
    status = TaskStatus.from_market_state(data.get("state"), task_id=task_id)
    param = _params(data.get("param"))
    given = _params(param.get("input"))
    message = data.get("failMsg")
    return TaskRecord(
        kie_task_id=str(data.get("taskId") or task_id),
        status=status,
        result_image_urls=_result_urls(data.get("resultJson")),
        error_code=_error_code(data.get("failCode")),
        error_message=message.strip() if isinstance(message, str) and message.strip() else None,
        create_time=normalize_time(data.get("createTime")),
        complete_time=normalize_time(data.get("completeTime")),
        prompt=_str_or_none(given.get("prompt")),
        model=_str_or_none(data.get("model")) or _str_or_none(param.get("model")),
        aspect_ratio=_str_or_none(given.get("aspect_ratio")),
        output_format=_str_or_none(given.get("output_format")),
        credits=_credits(data),
        api=ApiFamily.MARKET,
    )


def normalize_time(value: Any) -> str | None:
    """kie times arrive as ISO strings or epoch milliseconds; return ISO-8601 UTC, or None."""
    if value is None or value == "":
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = value / 1000 if value > 1e11 else value
        return datetime.fromtimestamp(seconds, tz=UTC).isoformat()
    if isinstance(value, str):
        text = value.strip()
        if text.isdigit():
            return normalize_time(int(text))
        try:
            parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            return text  # keep what kie said rather than lose it
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        return parsed.astimezone(UTC).isoformat()
    return None


def _response_urls(response: Any) -> dict[str, str]:
    """``response`` is an object on the Flux endpoint; tolerate null and a JSON string too."""
    if isinstance(response, str):
        try:
            response = json.loads(response)
        except ValueError:
            return {}
    if not isinstance(response, dict):
        return {}
    return {
        key: value.strip()
        for key in ("resultImageUrl", "originImageUrl")
        if isinstance(value := response.get(key), str) and value.strip()
    }


def _result_urls(result_json: Any) -> tuple[str, ...]:
    """``resultJson.resultUrls``, in kie's order; a JSON string or an object, anything else reads as none."""
    result = _params(result_json) if not isinstance(result_json, list) else {"resultUrls": result_json}
    urls = result.get("resultUrls")
    if isinstance(urls, str):
        urls = [urls]
    if not isinstance(urls, list):
        return ()
    return tuple(url.strip() for url in urls if isinstance(url, str) and url.strip())


def _credits(data: dict[str, Any]) -> float | None:
    """
    Credits the task consumed: ``creditsConsumed`` in a record, ``consumeCredits`` in a callback.

    ``None`` when kie gave neither as a number, which is not the same as 0 (a refunded failure).
    """
    for key in ("creditsConsumed", "consumeCredits"):
        value = data.get(key)
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            continue
        try:
            number = float(value)
        except ValueError:
            continue
        if math.isfinite(number):
            return number
    return None


def _params(param_json: Any) -> dict[str, Any]:
    if isinstance(param_json, dict):
        return param_json
    if isinstance(param_json, str) and param_json.strip():
        try:
            parsed = json.loads(param_json)
        except ValueError:
            return {}
        return parsed if isinstance(parsed, dict) else {}
    return {}


def _error_code(value: Any) -> int | str | None:
    if value is None or value == "" or isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value)
    return str(value)


def _str_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None
