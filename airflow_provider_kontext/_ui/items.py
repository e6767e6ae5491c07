"""What a task instance's XCom says about its images, and where each image may be shown from.

Pure: no database, no files, no network. The images view and the review operator both start
here, so they agree on what counts as a Kontext result and on where a picture comes from.

**An image is addressed by its position in one task instance's results, never by a path, a URL
or a kie task id.** Whatever a request carries, the only files the app can read and the only
URLs a page can point at are the ones this task instance's own results name.
"""

from __future__ import annotations

import enum
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final
from urllib.parse import urlsplit

from airflow_provider_kontext._protocol.record import TaskRecord, TaskStatus, normalize_time
from airflow_provider_kontext.exceptions import KontextValidationError
from airflow_provider_kontext.results import NOT_CREATED_STATUS

#: kie deletes result images this long after they were generated.
KIE_RETENTION: Final = timedelta(days=14)
#: ``status`` of an item known only by its kie task id (created, result not collected yet).
SUBMITTED_STATUS: Final = "SUBMITTED"
#: An index is a small non-negative decimal number; anything else is refused before any lookup.
_MAX_INDEX_DIGITS: Final = 6


class Source(enum.StrEnum):
    """Where the picture of an item comes from."""

    STORED = "stored"  #: the stored copy (``stored_path``), served by the app
    KIE = "kie"  #: kie's result URL, linked (the browser loads it; it needs no key)
    EXPIRED = "expired"  #: kie's URL is past its 14 days and there is no stored copy
    NONE = "none"  #: no image: failed, refused, not created or still running


@dataclass(frozen=True)
class ImageItem:
    """One image (or the failure in its place) of one task instance, at ``index`` in its results."""

    index: int
    status: str
    kie_task_id: str | None = None
    prompt: str | None = None
    model: str | None = None
    aspect_ratio: str | None = None
    output_format: str | None = None
    stored_path: str | None = None
    result_image_url: str | None = None
    error: str | None = None
    created_at: datetime | None = None
    create_stats: Mapping[str, Any] | None = None
    review: str | None = None

    @property
    def expires_at(self) -> datetime | None:
        """When kie deletes the result, if the record says when it was made."""
        return self.created_at + KIE_RETENTION if self.created_at is not None else None

    def source(self, now: datetime | None = None) -> Source:
        """The stored copy when there is one, else kie's URL while kie still keeps it."""
        if self.stored_path is not None:
            return Source.STORED
        if self.result_image_url is None:
            return Source.NONE
        expires = self.expires_at
        if expires is not None and (now or datetime.now(UTC)) >= expires:
            return Source.EXPIRED
        return Source.KIE

    @property
    def reviewable(self) -> bool:
        """An image a person can look at and approve: it succeeded and has a picture."""
        return self.status == TaskStatus.SUCCESS.value and (
            self.stored_path is not None or self.result_image_url is not None
        )


def is_result_record(value: Any) -> bool:
    """Whether ``value`` looks like one result dict of the operators, the sensor or the decorator."""
    return isinstance(value, Mapping) and "kie_task_id" in value and isinstance(value.get("status"), str)


def items_from_value(value: Any, *, ids_allowed: bool = False) -> list[ImageItem] | None:
    """
    The items one XCom value describes, or ``None`` if it is not Kontext output at all.

    Understands a result dict (generate operator, one-id sensor), a list of them (batch, sensor
    with several ids; ``None`` entries allowed) and, with ``ids_allowed``, kie task ids as the
    operators push them before waiting (``kie_task_id``/``kie_task_ids``). Plain
    strings are ids only there: any other task may return a string.
    """
    if is_result_record(value):
        return [item_from_record(0, value)]
    if ids_allowed and isinstance(value, str) and value.strip():
        return [ImageItem(index=0, status=SUBMITTED_STATUS, kie_task_id=value.strip())]
    if not isinstance(value, Sequence) or isinstance(value, (str, bytes)) or not value:
        return None
    entries = list(value)
    if not all(_is_entry(entry, ids_allowed) for entry in entries):
        return None
    if not any(entry is not None for entry in entries):
        return None
    items: list[ImageItem] = []
    for index, entry in enumerate(entries):
        if is_result_record(entry):
            items.append(item_from_record(index, entry))
        elif isinstance(entry, str):
            items.append(ImageItem(index=index, status=SUBMITTED_STATUS, kie_task_id=entry.strip()))
        else:
            items.append(ImageItem(index=index, status=NOT_CREATED_STATUS))
    return items


def _is_entry(entry: Any, ids_allowed: bool) -> bool:
    return entry is None or is_result_record(entry) or (ids_allowed and isinstance(entry, str) and bool(entry.strip()))


def item_from_record(index: int, record: Mapping[str, Any]) -> ImageItem:
    """
    One result dict as an item. Values of the wrong type are dropped rather than trusted.

    ``stored_path`` survives only as a storage URI or an absolute local path, and
    ``result_image_url`` only as an absolute http(s) URL: an XCom value edited to say
    ``javascript:...`` or ``http://metadata.internal/`` shows no picture instead.
    """
    status = str(record.get("status"))
    stats = record.get("create_stats")
    review = record.get("review")
    return ImageItem(
        index=index,
        status=status,
        kie_task_id=_text(record.get("kie_task_id")),
        prompt=_text(record.get("prompt")),
        model=_text(record.get("model")),
        aspect_ratio=_text(record.get("aspect_ratio")),
        output_format=_text(record.get("output_format")),
        stored_path=storage_uri(record.get("stored_path")),
        result_image_url=http_url(record.get("result_image_url")) if status == TaskStatus.SUCCESS.value else None,
        error=typed_error(record),
        created_at=_created_at(record),
        create_stats=dict(stats) if isinstance(stats, Mapping) and stats else None,
        review=review if isinstance(review, str) else None,
    )


def typed_error(record: Mapping[str, Any]) -> str | None:
    """``"KontextContentPolicyError: ..."`` for a failed or refused item, ``None`` for anything else."""
    status = record.get("status")
    if status == NOT_CREATED_STATUS:
        name = _text(record.get("error_class")) or "KontextError"
        message = _text(record.get("error_message")) or "the create failed"
        return f"{name}: {message}"
    try:
        failure = TaskRecord.from_dict(dict(record)).failure()
    except (KeyError, TypeError, ValueError):
        return None
    return f"{type(failure).__name__}: {failure}" if failure is not None else None


def storage_uri(value: Any) -> str | None:
    """``value`` if it names a stored copy (storage URI or absolute local path), else ``None``."""
    if not isinstance(value, str) or not value.strip() or not value.isprintable():
        return None
    # Imported here: storage's object-store machinery is not for DAG parsing (the review operator
    # imports this module), only for the moment a result is looked at.
    from airflow_provider_kontext._tasks.storage import STORAGE_SCHEMES

    text = value.strip()
    scheme = urlsplit(text).scheme.lower() if "://" in text else ""
    if scheme:
        return text if scheme in STORAGE_SCHEMES else None
    return text if os.path.isabs(text) else None


def http_url(value: Any) -> str | None:
    """``value`` if it is an absolute http(s) URL without whitespace, else ``None``."""
    if not isinstance(value, str) or not value.isprintable() or any(c.isspace() for c in value):
        return None
    try:
        parts = urlsplit(value)
    except ValueError:
        return None
    return value if parts.scheme in ("http", "https") and parts.netloc else None


def parse_index(raw: str, count: int) -> int:
    """
    The item index a request names, or :class:`KontextValidationError` for ``index``.

    Only a plain decimal number below ``count`` passes: ``../x``, ``/etc/passwd``, a URL, a kie
    task id, ``-1`` or ``1e3`` are all refused before anything is looked up.
    """
    if not (raw.isascii() and raw.isdigit() and 0 < len(raw) <= _MAX_INDEX_DIGITS):
        raise KontextValidationError(f"image index must be a small non-negative number, got {raw!r}.", field="index")
    index = int(raw)
    if index >= count:
        raise KontextValidationError(f"image index {index} is out of range (this task has {count}).", field="index")
    return index


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _created_at(record: Mapping[str, Any]) -> datetime | None:
    for key in ("complete_time", "create_time"):
        text = normalize_time(record.get(key))
        if text is None:
            continue
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            continue
        return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
    return None


__all__ = [
    "KIE_RETENTION",
    "ImageItem",
    "Source",
    "http_url",
    "is_result_record",
    "item_from_record",
    "items_from_value",
    "parse_index",
    "storage_uri",
    "typed_error",
]
