"""A kie task's record (``record-info``'s ``data``), its status, and what a failed one means.

kie's record is loosely typed: times come as ISO strings or epoch milliseconds, ``errorCode``
as an int, a string or null, ``paramJson`` as a JSON *string*, ``response`` as null while the
task runs. :func:`parse_record` absorbs all of that into one :class:`TaskRecord` whose
:meth:`~TaskRecord.to_dict` is plain JSON, safe for trigger events and XCom.
"""

from __future__ import annotations

import enum
import json
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

#: How real clients tell a moderation refusal from a technical failure when errorCode is vague.
_MODERATION_PATTERN: Final = re.compile(r"prohibited|content polic|sensitive|flagged|moderat", re.IGNORECASE)


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

    @property
    def is_terminal(self) -> bool:
        return self in (TaskStatus.SUCCESS, TaskStatus.CREATE_TASK_FAILED, TaskStatus.GENERATE_FAILED)


@dataclass(frozen=True)
class TaskRecord:
    """What the provider knows about one kie task; every field is plain JSON."""

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

    @classmethod
    def pending(cls, kie_task_id: str) -> TaskRecord:
        return cls(kie_task_id=kie_task_id, status=TaskStatus.PENDING)

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
        said = (
            f" (errorCode {self.error_code}): {self.error_message}"
            if self.error_message
            else (f" (errorCode {self.error_code})" if self.error_code is not None else "")
        )
        if self.status is TaskStatus.SUCCESS:
            return KontextMissingResultError(
                f"{detail} reported success without a resultImageUrl; credits were probably charged "
                "and resubmitting pays again.",
                **common,
            )
        if str(self.error_code) == "400" or _MODERATION_PATTERN.search(self.error_message or ""):
            return KontextContentPolicyError(f"{detail} was refused by content moderation{said}", **common)
        if self.status is TaskStatus.CREATE_TASK_FAILED:
            return KontextTaskCreateFailedError(f"{detail} could not be created upstream{said}", **common)
        return KontextGenerationFailedError(f"{detail} failed to generate{said}", **common)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["status"] = self.status.value
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TaskRecord:
        """Inverse of :meth:`to_dict`; unknown keys are ignored so newer events still load."""
        known = {name: data[name] for name in cls.__dataclass_fields__ if name in data}
        known["status"] = TaskStatus(known["status"])
        return cls(**known)


def parse_record(data: Any, *, task_id: str) -> TaskRecord:
    """Build a :class:`TaskRecord` from record-info's ``data`` (already known to be a success envelope)."""
    if not isinstance(data, dict):
        raise KontextResponseError(
            f"kie record-info for task {task_id} returned no record (data={data!r}).",
            kie_task_id=task_id,
            endpoint="record-info",
        )
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
