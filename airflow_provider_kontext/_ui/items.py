"""What a task instance's XCom says about its images, and where each image may be shown from.

Pure: no database, no files, no network. The images view and the review operator both start
here, so they agree on what counts as a Kontext result and on where a picture comes from.

**An image is addressed by its position in one task instance's results, never by a path, a URL
or a kie task id.** Whatever a request carries, the only files the app can read and the only
URLs a page can point at are the ones this task instance's own results name.

An item is one kie task's result; a Market model may return several images for one task, so an
item holds one :class:`Picture` per image, in kie's order. An item with one image is named by
its position alone (``2``, as before there were several); each image of an item with several
by position and image (``2.0``, ``2.1``, ...). People read the same names 1-based
(``Image 3``, ``Image 3.2``): :func:`image_address` and :func:`image_number` are the one place
both are made.
"""

from __future__ import annotations

import enum
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final
from urllib.parse import urlsplit

from airflow_provider_kontext._protocol.record import ApiFamily, TaskRecord, TaskStatus, normalize_time
from airflow_provider_kontext.exceptions import KontextValidationError
from airflow_provider_kontext.results import NOT_CREATED_STATUS, image_urls

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
class Picture:
    """
    One image of an item: its stored copy and kie's URL (either may be missing), and its review.

    ``review`` is the reviewer's decision on this image when the item has several (the record's
    ``reviews``), else the item's own ``review``.
    """

    stored_path: str | None = None
    result_image_url: str | None = None
    review: str | None = None

    @property
    def viewable(self) -> bool:
        """Whether there is anything to show: a stored copy or a kie URL."""
        return self.stored_path is not None or self.result_image_url is not None


@dataclass(frozen=True)
class ImageItem:
    """
    One kie task's result (or the failure in its place) in one task instance, at ``index`` in its results.

    ``pictures`` holds its images in kie's order: none for a failure or a task still running,
    one for Flux Kontext, one or more for a Market model. ``credits`` is what the task cost
    (kie's figure, or the catalog's price when ``credits_estimated``), ``None`` when the
    result does not say (results from before credits were recorded).
    """

    index: int
    status: str
    kie_task_id: str | None = None
    prompt: str | None = None
    model: str | None = None
    api: ApiFamily | None = None
    aspect_ratio: str | None = None
    output_format: str | None = None
    pictures: tuple[Picture, ...] = ()
    error: str | None = None
    created_at: datetime | None = None
    create_stats: Mapping[str, Any] | None = None
    review: str | None = None
    credits: float | None = None
    credits_estimated: bool = False

    @property
    def stored_path(self) -> str | None:
        """The first image's stored copy (what a one-image consumer reads)."""
        return self.pictures[0].stored_path if self.pictures else None

    @property
    def result_image_url(self) -> str | None:
        """The first image's kie URL (what a one-image consumer reads)."""
        return self.pictures[0].result_image_url if self.pictures else None

    @property
    def several(self) -> bool:
        """Whether this task returned more than one image (which changes how each is named)."""
        return len(self.pictures) > 1

    @property
    def expires_at(self) -> datetime | None:
        """When kie deletes the result, if the record says when it was made."""
        return self.created_at + KIE_RETENTION if self.created_at is not None else None

    def source(self, now: datetime | None = None, *, image: int = 0) -> Source:
        """Where picture ``image`` comes from: its stored copy, else kie's URL while kie still keeps it."""
        if not 0 <= image < len(self.pictures):
            return Source.NONE
        picture = self.pictures[image]
        if picture.stored_path is not None:
            return Source.STORED
        if picture.result_image_url is None:
            return Source.NONE
        expires = self.expires_at
        if expires is not None and (now or datetime.now(UTC)) >= expires:
            return Source.EXPIRED
        return Source.KIE

    def offered(self) -> list[int]:
        """The images a person can look at and approve: those with a picture, of a task that succeeded."""
        if self.status != TaskStatus.SUCCESS.value:
            return []
        return [position for position, picture in enumerate(self.pictures) if picture.viewable]

    @property
    def reviewable(self) -> bool:
        """Whether any image of this item can be looked at and approved."""
        return bool(self.offered())


def image_address(item: ImageItem, image: int) -> str:
    """How a request names an image (0-based): ``"2"`` for item 2's only image, ``"2.1"`` for its second of several."""
    return f"{item.index}.{image}" if item.several else str(item.index)


def image_number(item: ImageItem, image: int) -> str:
    """How a person names an image (1-based): ``"3"`` for item 2's only image, ``"3.2"`` for its second of several."""
    return f"{item.index + 1}.{image + 1}" if item.several else str(item.index + 1)


@dataclass(frozen=True)
class Spend:
    """What some kie tasks cost: ``credits`` in all, ``estimated`` of them from the catalog's prices."""

    credits: float
    estimated: float
    tasks: int


def spend(items: Iterable[ImageItem]) -> Spend | None:
    """
    The credits ``items`` cost, counting each kie task once; ``None`` when no item says.

    Once per kie task because the same task shows up in several task instances (the generate
    task, the review that looked at it, a ``@task`` that passed it on): the run paid for it once.
    Of two figures for one task kie's own wins over an estimate.
    """
    by_task: dict[str, ImageItem] = {}
    unnamed: list[ImageItem] = []
    for item in items:
        if item.credits is None:
            continue
        if item.kie_task_id is None:
            unnamed.append(item)
            continue
        known = by_task.get(item.kie_task_id)
        if known is None or (known.credits_estimated and not item.credits_estimated):
            by_task[item.kie_task_id] = item
    counted = [*by_task.values(), *unnamed]
    if not counted:
        return None
    return Spend(
        credits=math.fsum(item.credits or 0.0 for item in counted),
        estimated=math.fsum(item.credits or 0.0 for item in counted if item.credits_estimated),
        tasks=len(counted),
    )


def format_credits(value: float) -> str:
    """``15``, ``7.5``, ``1,250``: credits as kie's pricing pages write them."""
    return f"{value:,.2f}".rstrip("0").rstrip(".")


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
    review = _text(record.get("review"))
    credits = _credits(record.get("credits"))
    return ImageItem(
        index=index,
        status=status,
        kie_task_id=_text(record.get("kie_task_id")),
        prompt=_text(record.get("prompt")),
        model=_text(record.get("model")),
        api=_api(record.get("api")),
        aspect_ratio=_text(record.get("aspect_ratio")),
        output_format=_text(record.get("output_format")),
        pictures=pictures(record, review=review),
        error=typed_error(record),
        created_at=_created_at(record),
        create_stats=dict(stats) if isinstance(stats, Mapping) and stats else None,
        review=review,
        credits=credits,
        credits_estimated=credits is not None and record.get("credits_estimated") is True,
    )


def pictures(record: Mapping[str, Any], *, review: str | None = None) -> tuple[Picture, ...]:
    """
    The images of one result dict, in kie's order, each with its stored copy and its review.

    Position ``n`` is the ``n``-th URL of :func:`~airflow_provider_kontext.results.image_urls`
    and the ``n``-th of ``stored_paths`` (``stored_path`` alone when the task has one image),
    as the core stores them; a position stays even when its URL or path is refused, so an
    address never shifts to another image. Only a succeeded task's URLs are shown.
    """
    urls = [http_url(url) for url in image_urls(dict(record))] if record.get("status") == TaskStatus.SUCCESS else []
    listed = record.get("stored_paths")
    raw_paths = listed if isinstance(listed, list) and listed else [record.get("stored_path")]
    paths = [storage_uri(path) for path in raw_paths]
    if not any(paths):
        paths = []
    count = max(len(urls), len(paths))
    listed_reviews = record.get("reviews")
    if isinstance(listed_reviews, list) and len(listed_reviews) == count > 1:
        reviews = [_text(decision) for decision in listed_reviews]
    else:
        reviews = [review if count == 1 else None] * count
    return tuple(
        Picture(
            stored_path=paths[position] if position < len(paths) else None,
            result_image_url=urls[position] if position < len(urls) else None,
            review=reviews[position],
        )
        for position in range(count)
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


def find_picture(items: Sequence[ImageItem], raw: str) -> Picture:
    """
    The picture a request's ``index`` names: ``"<item>"`` (its first image) or ``"<item>.<image>"``.

    Each part passes :func:`parse_index` against what this task instance's results hold, so an
    item or an image past the end is refused like a path would be.
    """
    item_part, dot, image_part = raw.partition(".")
    item = items[parse_index(item_part, len(items))]
    image = parse_index(image_part, len(item.pictures)) if dot else 0
    if image >= len(item.pictures):
        raise KontextValidationError(f"item {item.index} has no image.", field="index")
    return item.pictures[image]


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


def _api(value: Any) -> ApiFamily | None:
    """The record's API family; none named is Flux Kontext (as :meth:`TaskRecord.from_dict` reads it)."""
    try:
        return ApiFamily(value or ApiFamily.KONTEXT)
    except ValueError:
        return None


def _credits(value: Any) -> float | None:
    """A finite, non-negative number of credits, else ``None`` (an edited value is not shown as a cost)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        return None
    return float(value)


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
    "Picture",
    "Source",
    "Spend",
    "find_picture",
    "format_credits",
    "http_url",
    "image_address",
    "image_number",
    "is_result_record",
    "item_from_record",
    "items_from_value",
    "parse_index",
    "pictures",
    "spend",
    "storage_uri",
    "typed_error",
]
