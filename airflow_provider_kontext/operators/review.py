"""``KontextReviewOperator``: a person looks at the generated images and only the approved ones go on.

Built on Airflow's own human-in-the-loop operator (standard provider, Airflow 3.1+): the review
is a "required action" in the Airflow UI, answered there or through the HITL REST API, with
Airflow's timeouts, defaults, notifiers and assigned users. On Airflow 3.0 this module imports,
and constructing the operator raises :class:`~airflow_provider_kontext.exceptions.KontextAirflowVersionError`.
The form's Markdown body shows the images themselves (kie's URL, or the stored copy through the
images view) with prompt, model, kie task id and credits; the options are one per image, also
when one kie task returned several (a Market model's variants): ``Image 2`` for a task with
one image, ``Image 2.1``, ``Image 2.2``, ... for each of a task's several.

Its return value is the list of approved result dicts, each holding only its approved images,
so a rejected image never reaches a downstream task. The full list, each with its ``review``
decision (and ``reviews``, one per image, for a task with several), stays in XCom
``kontext_review_items`` and in the task instance's "Kontext images" view.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, Final, Literal

from airflow_provider_kontext._compat import HITLOperator, hitl_response_timeout
from airflow_provider_kontext._ui.items import (
    Source,
    format_credits,
    image_address,
    image_number,
    is_result_record,
    item_from_record,
    pictures,
    spend,
)
from airflow_provider_kontext.exceptions import KontextValidationError
from airflow_provider_kontext.results import REVIEW_ITEMS_KEY, image_urls

if TYPE_CHECKING:
    from collections.abc import Callable, Collection, Sequence
    from datetime import timedelta

    from airflow.providers.common.compat.sdk import Context

    from airflow_provider_kontext._ui.items import ImageItem

#: The option that approves nothing when approving each image (``choose="each"``).
REJECT_ALL: Final = "Reject all"
#: The option that picks nothing when picking one (``choose="one"``).
NONE_OF_THESE: Final = "None of these"
_IMAGE_OPTION: Final = re.compile(r"Image [1-9][0-9]*(\.[1-9][0-9]*)?")
_MARKDOWN_SPECIAL: Final = re.compile(r"([\\`*_{}\[\]()<>#+!|~-])")

Choose = Literal["each", "one"]


def option_label(item: ImageItem, image: int = 0) -> str:
    """The option naming one image: ``Image 1`` is the first result's only image, ``Image 2.3`` the third of several."""
    return f"Image {image_number(item, image)}"


def flatten_results(results: Any) -> list[dict[str, Any]]:
    """
    The result dicts to review, from what the Kontext tasks returned, in order.

    Takes one result dict (generate operator, sensor), a list of them (batch, sensor), or the
    output of a mapped task (one entry per map index, each a dict or a list); ``None`` entries
    (items never created) are dropped. Anything else raises :class:`KontextValidationError`:
    a bare kie task id has no image to show, so wait for it first.
    """
    if is_result_record(results):
        return [dict(results)]
    if isinstance(results, (str, bytes)) or not _is_iterable(results):
        raise _bad_results(results)
    records: list[dict[str, Any]] = []
    for entry in results:
        if entry is None:
            continue
        if is_result_record(entry):
            records.append(dict(entry))
        elif isinstance(entry, (list, tuple)):
            records.extend(dict(inner) for inner in entry if inner is not None and _check_record(inner))
        else:
            raise _bad_results(entry)
    return records


def _is_iterable(value: Any) -> bool:
    try:
        iter(value)
    except TypeError:
        return False
    return True


def _check_record(value: Any) -> bool:
    if not is_result_record(value):
        raise _bad_results(value)
    return True


def _bad_results(value: Any) -> KontextValidationError:
    return KontextValidationError(
        "results must be the result dicts of Kontext tasks (generate, batch, sensor, or a mapped "
        f"task's output), waited for; got {type(value).__name__}.",
        field="results",
    )


def review_choices(items: Sequence[ImageItem]) -> dict[str, tuple[int, int]]:
    """
    Every image a person can look at, by its option: (item index, image position).

    The one table both ways: the options the form offers are its keys, and an answer maps back
    through it, never by parsing a label, so an option can only ever approve the image it named.
    """
    return {option_label(item, image): (item.index, image) for item in items for image in item.offered()}


def review_options(items: Sequence[ImageItem], choose: Choose) -> list[str]:
    """One option per image a person can look at, then the option that takes none."""
    return [*review_choices(items), REJECT_ALL if choose == "each" else NONE_OF_THESE]


def approved_images(chosen: Collection[str], items: Sequence[ImageItem], choose: Choose) -> dict[int, list[int]]:
    """
    The images the reviewer approved: item index to image positions, both in result order.

    Choosing "Reject all" (or "None of these") approves nothing, even next to images: when a
    reviewer says both, the image must not be used unseen by a second look. ``choose="one"``
    keeps the first chosen image only.
    """
    if REJECT_ALL in chosen or NONE_OF_THESE in chosen:
        return {}
    choices = review_choices(items)
    unknown = set(chosen) - set(choices)
    if unknown:
        raise KontextValidationError(f"chosen options {sorted(unknown)} are not among {list(choices)}.", field="chosen")
    picked = sorted(choices[option] for option in chosen)
    approved: dict[int, list[int]] = {}
    for index, image in picked[:1] if choose == "one" else picked:
        approved.setdefault(index, []).append(image)
    return approved


def keep_images(record: dict[str, Any], images: Sequence[int]) -> dict[str, Any]:
    """
    ``record`` holding only its images at ``images``: URLs, first URL, stored copies.

    The shape stays the core's: ``result_image_url`` is the first kept URL, ``stored_path`` the
    first kept copy, and ``stored_paths`` is there only when more than one copy is kept. A record
    keeping every image is returned as it was. ``credits`` stay the task's: a rejected image was
    paid for all the same.
    """
    if list(images) == list(range(len(pictures(record)))):
        return dict(record)
    urls = image_urls(record)
    kept = {**record, "result_image_urls": [urls[n] for n in images if n < len(urls)]}
    kept["result_image_url"] = kept["result_image_urls"][0] if kept["result_image_urls"] else None
    listed = record.get("stored_paths")
    paths = listed if isinstance(listed, list) and listed else [record.get("stored_path")]
    stored = [paths[n] for n in images if n < len(paths) and paths[n]]
    kept.pop("stored_paths", None)
    kept["stored_path"] = stored[0] if stored else None
    if len(stored) > 1:
        kept["stored_paths"] = stored
    return kept


def review_body(
    items: Sequence[ImageItem],
    *,
    intro: str | None,
    choose: Choose,
    image_url: Callable[[ImageItem, int], str],
    view_url: str,
) -> str:
    """
    The Markdown the reviewer reads: every image with its prompt, settings and cost, then what failed.

    ``image_url(item, image)`` gives the URL a browser can load for a stored copy (the images
    view's own link); kie's URL is used as is. Text from the results is escaped, so a prompt
    cannot turn into links or markup in the form.
    """
    reviewable = [item for item in items if item.reviewable]
    how = (
        f'Choose the images to approve; any not chosen are rejected, and "{REJECT_ALL}" approves none.'
        if choose == "each"
        else f'Pick the one image to use, or "{NONE_OF_THESE}".'
    )
    lines = [intro.strip(), ""] if intro and intro.strip() else []
    count = len(review_choices(items))
    lines += [f"**{count} image{'s' if count != 1 else ''} to review.** {how}", ""]
    spent = spend(reviewable)
    if spent is not None:
        estimated = f" ({format_credits(spent.estimated)} estimated)" if spent.estimated else ""
        lines += [f"They cost {format_credits(spent.credits)} credits{estimated}.", ""]
    lines += [f"[Open them full size in the Kontext images view]({view_url})", ""]
    for item in reviewable:
        offered = item.offered()
        if item.several:
            lines += [f"#### Images {image_number(item, 0)} to {image_number(item, len(item.pictures) - 1)}", ""]
        for image in range(len(item.pictures)):
            label = option_label(item, image)
            if item.several:
                lines.append(f"**{label}**" if image in offered else f"**{label}**: *no picture, not offered*")
            else:
                lines.append(f"#### {label}")
            if image not in offered:
                lines.append("")
                continue
            source = item.source(image=image)
            if source is Source.STORED:
                lines.append(f"![{label}]({image_url(item, image)})")
            elif source is Source.KIE:
                lines.append(f"![{label}]({item.pictures[image].result_image_url})")
            else:
                lines.append("*No longer available at kie (kie deletes results after 14 days) and not stored.*")
            if item.several:
                lines.append("")
        details = [_md(text) for text in (item.model, item.aspect_ratio) if text]
        if item.kie_task_id:
            details.append(f"kie task id `{item.kie_task_id.replace('`', '')}`")
        if item.credits is not None:
            cost = f"{format_credits(item.credits)} credits"
            details.append(f"≈ {cost} (estimated)" if item.credits_estimated else cost)
        lines += ["", f"*{_md(item.prompt or 'no prompt recorded')}*", "", " · ".join(details), ""]
    failed = [item for item in items if not item.reviewable]
    if failed:
        lines.append("#### Not offered (no image)")
        lines += [f"- Result {item.index + 1}: {_md(item.error or item.status)}" for item in failed]
    return "\n".join(lines).rstrip() + "\n"


def _md(text: str) -> str:
    """``text`` with Markdown's special characters escaped."""
    return _MARKDOWN_SPECIAL.sub(r"\\\1", text.replace("\n", " "))


class KontextReviewOperator(HITLOperator):
    """
    Put generated images in front of a reviewer; return only the approved result dicts.

    ``choose="each"`` offers one option per image (pick any number; "Reject all" approves
    none); ``choose="one"`` lets the reviewer pick one of several variants (or "None of
    these"). Failed or refused items are listed but not offered. With nothing to review the
    task returns ``[]`` at once, without asking anyone.

    **A kie task with several images (a Market model's ``max_images``, ``num_images``, ...) is
    reviewed per image, not per task.** Airflow's HITL form is one flat list of options with
    ``multiple``; one option per image keeps that model as it is and lets the reviewer keep two
    of a task's four variants and drop the rest, while approving a whole task is choosing all of
    its options, and ``choose="one"`` picks one image among every task's. Per-task options
    could not say "this one, not that one", and a second mechanism (a form ``params`` field per
    task) would answer outside the options Airflow times out to ``defaults``. A task with one
    image keeps its option ``Image N``; each image of a task with several is ``Image N.M``.
    An approved result carries only its approved images (``result_image_urls``,
    ``result_image_url``, ``stored_path``, ``stored_paths``); its ``credits`` stay what the
    task cost.

    Timeouts and defaults are Airflow's: with ``response_timeout`` and no ``defaults`` a review
    nobody answered fails the task (``HITLTimeoutError``); with ``defaults`` (for example
    ``"Reject all"``, or ``"Image 1"``) those options are taken instead.

    :param results: The Kontext results to review: a generate task's or sensor's dict, a batch's
        list, or a mapped task's output (typically ``generate.output``). Templated.
    :param choose: ``"each"`` (approve or reject each image) or ``"one"`` (pick one variant).
    :param subject: The headline of the review in the Airflow UI. Templated.
    :param body: Markdown shown above the images (what to look for). Templated.
    :param defaults: Options taken when ``response_timeout`` passes (``"Image N"``, ``"Image N.M"``,
        ``"Reject all"`` / ``"None of these"``); ``None``: a timeout fails the task.
    :param response_timeout: How long to wait for a reviewer (``timedelta``); ``None``: forever.
        With a standard provider older than 1.13 (which has no ``response_timeout``) it is passed
        as ``execution_timeout``, which those versions wait for the human with.
    :param kwargs: Everything else :class:`HITLOperator` takes (``notifiers``, ``assigned_users``,
        ...) except ``options`` and ``multiple``, which follow from the images and ``choose``.
    """

    template_fields: Collection[str] = ("subject", "body", "results")
    ui_color = "#e8d5ff"

    def __init__(
        self,
        *,
        results: Any,
        choose: Choose = "each",
        subject: str = "Review the generated images",
        body: str | None = None,
        defaults: str | list[str] | None = None,
        response_timeout: timedelta | None = None,
        **kwargs: Any,
    ) -> None:
        for fixed in ("options", "multiple"):
            if fixed in kwargs:
                raise ValueError(f"{fixed} is set by KontextReviewOperator from the images and choose=; drop it.")
        if choose not in ("each", "one"):
            raise KontextValidationError(f'choose must be "each" or "one", got {choose!r}.', field="choose")
        self.results = results
        self.choose: Choose = choose
        # The real options depend on the results, known only at run time; until then only the
        # option that takes no image exists, and the defaults are checked for their form.
        super().__init__(
            subject=subject,
            body=body,
            options=[REJECT_ALL if choose == "each" else NONE_OF_THESE],
            defaults=defaults,
            multiple=choose == "each",
            **hitl_response_timeout(response_timeout),
            **kwargs,
        )
        if not hasattr(self, "response_timeout"):  # standard provider < 1.13: execution_timeout holds it
            self.response_timeout = response_timeout

    def validate_defaults(self) -> None:
        """At parse time only the form can be checked: ``Image N``, ``Image N.M`` or the option that takes none."""
        if self.defaults is None:
            return
        allowed_none = REJECT_ALL if self.choose == "each" else NONE_OF_THESE
        bad = [d for d in self.defaults if d != allowed_none and not _IMAGE_OPTION.fullmatch(str(d))]
        if bad:
            raise KontextValidationError(
                f'defaults {bad} must be "Image N" or "Image N.M" options or "{allowed_none}".', field="defaults"
            )
        if not self.multiple and len(self.defaults) > 1:
            raise KontextValidationError('choose="one" takes a single default.', field="defaults")

    def _items(self) -> tuple[list[dict[str, Any]], list[ImageItem]]:
        records = flatten_results(self.results)
        return records, [item_from_record(index, record) for index, record in enumerate(records)]

    def execute(self, context: Context) -> Any:
        records, items = self._items()
        self.options = review_options(items, self.choose)
        ti = context["ti"]
        if len(self.options) == 1:
            self.log.info("None of the %d result(s) has an image to review; nothing is approved.", len(records))
            ti.xcom_push(key=REVIEW_ITEMS_KEY, value=_decided(records, items, None))
            return []
        if self.defaults is not None and not set(self.defaults) <= set(self.options):
            raise KontextValidationError(
                f"defaults {self.defaults} are not among this review's options {self.options}.", field="defaults"
            )
        ti.xcom_push(key=REVIEW_ITEMS_KEY, value=_decided(records, items, None))
        self.body = review_body(
            items,
            intro=self.body,
            choose=self.choose,
            image_url=lambda item, image: _app_url(ti, "image", index=image_address(item, image)),
            view_url=_app_url(ti, "ti"),
        )
        self.log.info("Asking for a review of %d image(s): options %s.", len(self.options) - 1, self.options)
        return super().execute(context)

    def execute_complete(self, context: Context, event: dict[str, Any]) -> list[dict[str, Any]]:
        """Resume with the reviewer's answer (or the defaults on timeout): return the approved results."""
        records, items = self._items()
        self.options = review_options(items, self.choose)
        answer = super().execute_complete(context=context, event=event)
        chosen = list(answer["chosen_options"])
        approved = approved_images(chosen, items, self.choose)
        context["ti"].xcom_push(key=REVIEW_ITEMS_KEY, value=_decided(records, items, approved))
        who = (answer.get("responded_by_user") or {}).get("name") if isinstance(answer, dict) else None
        self.log.info(
            "Review answered %s by %s: approved %d of %d image(s) (kie ids %s).",
            chosen,
            who or "the timeout defaults",
            sum(len(images) for images in approved.values()),
            len(self.options) - 1,
            [records[i].get("kie_task_id") for i in approved],
        )
        return [keep_images(records[index], approved[index]) for index in sorted(approved)]


def _decided(
    records: list[dict[str, Any]], items: list[ImageItem], approved: dict[int, list[int]] | None
) -> list[dict[str, Any]]:
    """
    Every record with its ``review`` (``approved``: it goes on, with at least one image), and for
    a task with several images ``reviews``, one per image; ``approved=None``: the review is pending.
    """
    decided = []
    for record, item in zip(records, items, strict=True):
        offered = item.offered()
        kept = None if approved is None else approved.get(item.index, [])
        entry = {**record, "review": _decision(bool(offered), None if kept is None else bool(kept))}
        if item.several:
            entry["reviews"] = [
                _decision(image in offered, None if kept is None else image in kept)
                for image in range(len(item.pictures))
            ]
        decided.append(entry)
    return decided


def _decision(offered: bool, approved: bool | None) -> str:
    if not offered:
        return "not offered"
    if approved is None:
        return "pending"
    return "approved" if approved else "rejected"


def _app_url(ti: Any, view: str, **extra: int | str) -> str:
    """A link to the images app for this task instance, as a path (the UI's own origin serves it)."""
    from urllib.parse import urlencode, urlsplit

    from airflow.providers.common.compat.sdk import conf

    from airflow_provider_kontext._ui.plugin import URL_PREFIX

    base_path = urlsplit(conf.get("api", "base_url", fallback="") or "").path.rstrip("/")
    map_index = ti.map_index if ti.map_index is not None else -1
    query = {"dag_id": ti.dag_id, "run_id": ti.run_id, "task_id": ti.task_id, "map_index": map_index, **extra}
    return f"{base_path}{URL_PREFIX}/{view}?{urlencode(query)}"


__all__ = [
    "NONE_OF_THESE",
    "REJECT_ALL",
    "KontextReviewOperator",
    "approved_images",
    "flatten_results",
    "option_label",
    "review_body",
    "review_options",
]
