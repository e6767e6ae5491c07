"""Server-side HTML for the images view: one page, inline CSS, no JavaScript build.

Every value from XCom is escaped; the only URLs a page holds are the app's own image links
(by index) and kie result URLs that :func:`.items.http_url` accepted. kie URLs are linked, not
proxied: the api-server then never fetches anything a result names (no request forgery through
an edited XCom), and kie's URLs need no key. ``referrerpolicy="no-referrer"`` keeps the Airflow
address out of kie's logs.
"""

from __future__ import annotations

import base64
import hashlib
from datetime import UTC, datetime
from html import escape
from typing import TYPE_CHECKING, Final
from urllib.parse import urlencode

from airflow_provider_kontext._protocol.record import ApiFamily
from airflow_provider_kontext._ui.items import Source, format_credits, image_address, image_number, spend

if TYPE_CHECKING:
    from collections.abc import Iterable

    from airflow_provider_kontext._ui.items import ImageItem, Spend
    from airflow_provider_kontext._ui.store import TaskImages

#: Task instance states in which a created image may still be collected.
_RUNNING_STATES: Final = frozenset({"queued", "scheduled", "running", "deferred", "up_for_retry", "up_for_reschedule"})
#: Longer stored-copy URIs show as ``scheme://…/folder/file``.
_LOCATION_CHARS: Final = 56
#: The one script on the page: a kie URL that dies before its 14 days shows a note, not a broken image.
_ON_ERROR: Final = "this.closest('.pic').classList.add('broken')"
_ON_ERROR_HASH: Final = base64.b64encode(hashlib.sha256(_ON_ERROR.encode()).digest()).decode()
#: How the page names each API family.
_API_NAMES: Final = {ApiFamily.KONTEXT: "Flux Kontext", ApiFamily.MARKET: "Market"}
#: Why a figure is marked estimated.
_ESTIMATED_TITLE: Final = "kie reported no figure: the catalog's price"

#: For the HTML pages. Images: this app and http(s) (kie); the handler above by hash only.
PAGE_CSP: Final = (
    "default-src 'none'; img-src 'self' https: http:; style-src 'unsafe-inline'; "
    f"script-src 'unsafe-hashes' 'sha256-{_ON_ERROR_HASH}'; frame-ancestors 'self'; base-uri 'none'; "
    "form-action 'none'"
)

_STYLE: Final = """
:root { color-scheme: light dark; --card: Canvas; --muted: #6b7280; --line: #d1d5db; }
* { box-sizing: border-box; }
body { font: 14px/1.45 system-ui, sans-serif; margin: 0; padding: 16px 20px; background: Canvas; color: CanvasText; }
h1 { font-size: 20px; margin: 0 0 2px; }
h2 { font-size: 15px; margin: 22px 0 8px; display: flex; gap: 8px; align-items: baseline; flex-wrap: wrap; }
.where, .summary { color: var(--muted); margin: 0; }
.where code { font-size: 13px; }
.grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(230px, 1fr)); gap: 14px; }
figure { margin: 0; border: 1px solid var(--line); border-radius: 8px; overflow: hidden; background: var(--card); }
.thumb { display: flex; align-items: center; justify-content: center; height: 170px; background: #8881; }
.thumb img { max-width: 100%; max-height: 170px; object-fit: contain; display: block; }
.pic { position: relative; display: flex; align-items: center; justify-content: center; min-width: 0; height: 100%; }
.pic > .badge { position: absolute; left: 3px; bottom: 3px; }
.thumb.multi { display: grid; grid-template-columns: repeat(auto-fit, minmax(72px, 1fr)); gap: 4px; padding: 4px;
  align-content: center; overflow-y: auto; }
.thumb.multi .pic { height: 80px; }
.thumb.multi img { max-height: 80px; }
.note { padding: 0 14px; text-align: center; color: var(--muted); font-size: 13px; }
.thumb.multi .note { padding: 0 4px; font-size: 11px; }
.pic.broken img { display: none; }
.pic.broken::after {
  content: "Image no longer available at kie (results are deleted 14 days after generation)";
  padding: 0 14px; text-align: center; color: var(--muted); font-size: 13px; }
.thumb.multi .pic.broken::after { content: "Gone at kie"; padding: 0 4px; font-size: 11px; }
figcaption { padding: 8px 10px 10px; border-top: 1px solid var(--line); }
.prompt { margin: 0 0 6px; font-weight: 600; overflow-wrap: anywhere; }
dl { display: grid; grid-template-columns: auto 1fr; gap: 1px 8px; margin: 0; font-size: 12.5px; }
dt { color: var(--muted); }
dd { margin: 0; overflow-wrap: anywhere; }
.error { color: #b91c1c; }
.badge { display: inline-block; padding: 0 7px; border-radius: 9px; font-size: 12px; font-weight: 600;
  background: #9ca3af33; }
.s-SUCCESS, .r-approved { background: #16a34a2e; color: #15803d; }
.s-GENERATE_FAILED, .s-CREATE_TASK_FAILED, .s-NOT_CREATED, .r-rejected { background: #dc26262e; color: #b91c1c; }
.s-GENERATING, .s-PENDING, .s-SUBMITTED, .r-pending, .est { background: #d977062e; color: #b45309; }
.empty { color: var(--muted); padding: 24px 0; }
"""


def image_link(*, dag_id: str, run_id: str, task_id: str, map_index: int, index: str, prefix: str = "image") -> str:
    """The app's URL of one stored image: the task instance and the image's address in it, nothing else."""
    query = {"dag_id": dag_id, "run_id": run_id, "task_id": task_id, "map_index": map_index, "index": index}
    return f"{prefix}?{urlencode(query)}"


def render_page(
    *, dag_id: str, run_id: str, task_id: str | None, groups: Iterable[TaskImages], now: datetime | None = None
) -> str:
    """The whole page: one section per task, one card per kie task, every image of it on the card."""
    now = now or datetime.now(UTC)
    groups = list(groups)
    where = f"<code>{escape(dag_id)}</code> · run <code>{escape(run_id)}</code>"
    if task_id is not None:
        where += f" · task <code>{escape(task_id)}</code>"
    items = [item for group in groups for item in group.items]
    failed = sum(1 for item in items if item.error is not None)
    images = sum(
        1
        for item in items
        for position in range(len(item.pictures))
        if item.source(now, image=position) is not Source.NONE
    )
    summary = f"{_count(images, 'image')} in {_count(len(groups), 'task instance')}"
    if failed:
        summary += f" · {failed} failed or refused"
    spent = spend(items)
    if spent is not None:
        summary += f" · {_spend_text(spent)} for {_count(spent.tasks, 'kie task')}, each counted once"
    sections = [_section(dag_id, run_id, task_groups, now) for task_groups in _by_task(groups)]
    body = "\n".join(sections) or (
        '<p class="empty">No Kontext images here. The view lists what Kontext tasks returned (or created, '
        "while they still wait); other tasks have none.</p>"
    )
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>Kontext images · {escape(dag_id)}</title><style>{_STYLE}</style></head>\n<body>\n"
        f'<header><h1>Kontext images</h1><p class="where">{where}</p><p class="summary">{summary}</p></header>\n'
        f"{body}\n</body></html>\n"
    )


def _section(dag_id: str, run_id: str, task_groups: list[TaskImages], now: datetime) -> str:
    """One task: an unmapped one with its state, a mapped one with every map index's cards together."""
    first = task_groups[0]
    title = f"<code>{escape(first.task_id)}</code>"
    mapped = any(group.map_index >= 0 for group in task_groups)
    if mapped:
        title += f' <span class="badge">mapped: {_count(len(task_groups), "instance")}</span>'
    elif first.state:
        title += f' <span class="badge">{escape(first.state)}</span>'
    spent = spend(item for group in task_groups for item in group.items)
    if spent is not None:
        title += f' <span class="badge credits">{_spend_text(spent)}</span>'
    cards = "\n".join(
        _card(dag_id, run_id, group, item, now, mapped=mapped) for group in task_groups for item in group.items
    )
    return f'<section><h2>{title}</h2>\n<div class="grid">\n{cards}\n</div></section>'


def _by_task(groups: list[TaskImages]) -> list[list[TaskImages]]:
    """Task instances grouped by task, in the order each task first appears."""
    tasks: dict[str, list[TaskImages]] = {}
    for group in groups:
        tasks.setdefault(group.task_id, []).append(group)
    return list(tasks.values())


def _card(dag_id: str, run_id: str, group: TaskImages, item: ImageItem, now: datetime, *, mapped: bool) -> str:
    """One kie task: its images (a strip of thumbnails when it returned several), then what it was."""
    source = item.source(now)
    if item.pictures:
        shown = "".join(_picture(dag_id, run_id, group, item, position, now) for position in range(len(item.pictures)))
        thumb = f'<div class="thumb{" multi" if item.several else ""}">{shown}</div>'
    else:
        thumb = f'<div class="thumb"><p class="note">{escape(_no_image_reason(item, group.state))}</p></div>'
    rows = [("Status", f'<span class="badge s-{escape(item.status)}">{escape(item.status)}</span>')]
    if item.review is not None:
        rows.append(("Review", f'<span class="badge r-{escape(item.review)}">{escape(item.review)}</span>'))
    rows.append(("kie task id", f"<code>{escape(item.kie_task_id)}</code>" if item.kie_task_id else "none"))
    if item.api is not None:
        rows.append(("API", _API_NAMES[item.api]))
    rows += [
        ("Model", escape(item.model or "kie default")),
        ("Aspect ratio", escape(item.aspect_ratio or "kie default")),
    ]
    if item.several:
        rows.append(("Images", str(len(item.pictures))))
    if item.credits is not None:
        rows.append(("Credits", _credits_cell(item)))
    rows.append(("Stored at", _stored_at(item, source)))
    if item.error is not None:
        rows.append(("Error", f'<span class="error">{escape(item.error)}</span>'))
    if item.create_stats:
        stats = ", ".join(f"{escape(str(key))}={escape(str(value))}" for key, value in item.create_stats.items())
        rows.append(("Create", stats))
    details = "".join(f"<dt>{name}</dt><dd>{value}</dd>" for name, value in rows)
    prompt = escape(item.prompt) if item.prompt else "<em>no prompt recorded</em>"
    if mapped:
        state = f' <span class="badge">{escape(group.state)}</span>' if group.state else ""
        prompt = f'<span class="badge">map index {group.map_index}</span>{state}<br>{prompt}'
    return (
        f'<figure class="card" data-index="{item.index}" data-source="{source.value}"'
        f' data-images="{len(item.pictures)}">{thumb}'
        f'<figcaption><p class="prompt">{prompt}</p><dl>{details}</dl></figcaption></figure>'
    )


def _picture(dag_id: str, run_id: str, group: TaskImages, item: ImageItem, position: int, now: datetime) -> str:
    """
    One image of a card: the stored copy through the app, by its address in this task instance's
    results; else kie's URL; else why there is none. Each of several carries its own review badge.
    """
    source = item.source(now, image=position)
    picture = item.pictures[position]
    label = f"{group.task_id} #{image_number(item, position)}"
    if source is Source.STORED:
        url = image_link(
            dag_id=dag_id,
            run_id=run_id,
            task_id=group.task_id,
            map_index=group.map_index,
            index=image_address(item, position),
        )
        content = _linked_image(url, label, external=False)
    elif source is Source.KIE and picture.result_image_url is not None:
        content = _linked_image(picture.result_image_url, label, external=True)
    elif source is Source.EXPIRED and item.expires_at is not None:
        content = (
            f'<p class="note">Expired at kie on {item.expires_at:%Y-%m-%d}, not stored.</p>'
            if item.several
            else (
                f'<p class="note">Expired at kie on {item.expires_at:%Y-%m-%d}: kie deletes results 14 days after '
                "generation, and no copy was stored (set <code>output_path</code> to keep one).</p>"
            )
        )
    else:
        content = (
            f'<p class="note">{"No picture." if item.several else escape(_no_image_reason(item, group.state))}</p>'
        )
    if item.several and picture.review is not None:
        content += f'<span class="badge r-{escape(picture.review)}">{escape(picture.review)}</span>'
    return f'<div class="pic" data-image="{position}" data-source="{source.value}">{content}</div>'


def _linked_image(url: str, label: str, *, external: bool) -> str:
    """A thumbnail that opens the full-size image in a new tab."""
    href = escape(url, quote=True)
    alt = escape(label, quote=True)
    extra = ' referrerpolicy="no-referrer"' if external else ""
    handler = f' onerror="{_ON_ERROR}"' if external else ""
    return (
        f'<a href="{href}" target="_blank" rel="noopener noreferrer"{extra} title="Open full size">'
        f'<img src="{href}" alt="{alt}" loading="lazy"{extra}{handler}></a>'
    )


def _credits_cell(item: ImageItem) -> str:
    """The task's credits; an estimate (kie reported none: the catalog's price) is marked as one."""
    value = format_credits(item.credits or 0.0)
    if not item.credits_estimated:
        return value
    return f'≈ {value} <span class="badge est" title="{_ESTIMATED_TITLE}">estimated</span>'


def _spend_text(spent: Spend) -> str:
    text = f"{format_credits(spent.credits)} credits"
    if spent.estimated:
        text += f' <span title="{_ESTIMATED_TITLE}">({format_credits(spent.estimated)} estimated)</span>'
    return text


def _stored_at(item: ImageItem, source: Source) -> str:
    """Where the copies are: the one location, or one line per image of several."""
    if not item.several or not any(picture.stored_path for picture in item.pictures):
        return _location(item.stored_path) if item.stored_path else _not_stored(item, source)
    return "<br>".join(
        f"{image_number(item, position)}: {_location(picture.stored_path) if picture.stored_path else 'not stored'}"
        for position, picture in enumerate(item.pictures)
    )


def _location(uri: str) -> str:
    """A stored copy's URI, its middle elided when long (the whole of it on hover and in the page)."""
    shown = uri
    if len(uri) > _LOCATION_CHARS:
        scheme, sep, rest = uri.partition("://")
        head = f"{scheme}{sep}" if sep else ""
        tail = "/".join((rest or uri).rsplit("/", 2)[-2:])
        shown = f"{head}…/{tail}"
    return f'<code title="{escape(uri, quote=True)}">{escape(shown)}</code>'


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}{'s' if number != 1 else ''}"


def _not_stored(item: ImageItem, source: Source) -> str:
    if source is Source.KIE:
        until = f" until {item.expires_at:%Y-%m-%d}" if item.expires_at is not None else ""
        return f"not stored (shown from kie{until})"
    return "not stored"


def _no_image_reason(item: ImageItem, state: str | None) -> str:
    if item.error is not None:
        return "No image: " + item.error.split(":", 1)[0]
    if item.status in ("SUBMITTED", "PENDING", "GENERATING"):
        if state in _RUNNING_STATES:
            return "Not collected yet: the task is still waiting for kie."
        if state == "success":
            return "Created here without waiting: the task that waited for it (a sensor) shows the image."
        return f"Created, but the task ended ({state or 'unknown state'}) before it collected the image."
    return f"No image ({item.status})."


__all__ = ["PAGE_CSP", "image_link", "render_page"]
