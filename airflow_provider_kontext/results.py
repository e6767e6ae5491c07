"""What a finished wait puts into XCom, written once for the operator and the sensor."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import Context


#: Pushed right after a create succeeds, before any waiting, so the id survives a failed wait.
TASK_ID_KEY: Final = "kie_task_id"
#: A batch's ids, in request order, re-pushed after every create.
TASK_IDS_KEY: Final = "kie_task_ids"
#: The (first) result image URL; also what the "Kontext image" extra link opens.
RESULT_IMAGE_URL_KEY: Final = "result_image_url"
#: Every result image URL, in the order the tasks were given (a task with several images, e.g. a
#: Market model's ``max_images``, adds all of them; a failed task adds one ``None``).
RESULT_IMAGE_URLS_KEY: Final = "result_image_urls"
#: What the task's images cost in credits, in all: kie's reported figures, else the catalog's prices
#: (each result says which in ``credits_estimated``); not pushed when nothing says.
CREDITS_KEY: Final = "kie_credits"
#: The items a ``KontextReviewOperator`` put in front of a reviewer, each with its ``review`` decision.
REVIEW_ITEMS_KEY: Final = "kontext_review_items"
#: ``status`` of a batch item whose create failed (``fail_on_any_failure=False``): no kie task.
NOT_CREATED_STATUS: Final = "NOT_CREATED"

#: ``KontextTaskTrigger(end_from_trigger=...)``: on success the trigger ends the task, pushing as
#: ``return_value`` the first result dict, the list of them, or nothing (``do_xcom_push=False``).
END_RETURN_FIRST: Final = "first"
END_RETURN_ALL: Final = "all"
END_RETURN_NOTHING: Final = "nothing"
END_MODES: Final = frozenset({END_RETURN_FIRST, END_RETURN_ALL, END_RETURN_NOTHING})
#: The payload of a ``TaskSuccessEvent`` (``str(TaskInstanceState.SUCCESS)``), should a resume get it.
SUCCESS_EVENT_PAYLOAD: Final = "success"


def image_urls(record: dict[str, Any]) -> list[str]:
    """Every image URL of one finished result, in kie's order (one for Flux Kontext)."""
    urls = record.get("result_image_urls")
    if isinstance(urls, list) and urls:
        return [url for url in urls if isinstance(url, str)]
    first = record.get("result_image_url")
    return [first] if isinstance(first, str) and first else []


def result_xcoms(records: list[dict[str, Any]]) -> dict[str, Any]:
    """The XComs of finished results by key: image URLs (``None`` for a failed item) and credits. Pure: no I/O."""
    urls: list[str | None] = []
    for record in records:
        found = image_urls(record) if record.get("status") == "SUCCESS" else []
        urls.extend(found or [None])
    xcoms: dict[str, Any] = {RESULT_IMAGE_URL_KEY: urls[0] if urls else None, RESULT_IMAGE_URLS_KEY: urls}
    known = [record["credits"] for record in records if isinstance(record.get("credits"), (int, float))]
    if known:  # no key rather than a None value: Airflow 3.0's Execution API refuses a None XCom
        xcoms[CREDITS_KEY] = math.fsum(known)
    return xcoms


def publish(context: Context, records: list[dict[str, Any]]) -> None:
    """Push the image URLs and credits of finished results to XCom (a trigger that ends the task sends the same)."""
    ti = context["ti"]
    for key, value in result_xcoms(records).items():
        ti.xcom_push(key=key, value=value)
