"""What a finished wait puts into XCom, written once for the operator and the sensor."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

from airflow_provider_kontext.protocol.polling import WaitStatus

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import Context

    from airflow_provider_kontext.protocol.polling import WaitResult

#: Pushed right after a create succeeds, before any waiting, so the id survives a failed wait.
TASK_ID_KEY: Final = "kontext_task_id"
#: A batch's ids, in request order, re-pushed after every create.
TASK_IDS_KEY: Final = "kontext_task_ids"
#: The (first) result image URL; also what the "Kontext image" extra link opens.
RESULT_IMAGE_URL_KEY: Final = "result_image_url"
#: Every result image URL, in the order the tasks were given.
RESULT_IMAGE_URLS_KEY: Final = "result_image_urls"


def publish(context: Context, result: WaitResult, *, allow_failed_tasks: bool = False) -> list[dict[str, Any]]:
    """
    Raise the typed error for a wait that did not succeed; otherwise push the image URLs.

    With ``allow_failed_tasks`` a wait whose tasks all finished but some failed is published
    too (failed tasks get ``None`` URLs and keep their error in their dict); a timeout or a
    polling error still raises. Returns one small dict per task (ids, status, URLs, prompt,
    model, times), never image bytes.
    """
    if not (allow_failed_tasks and result.status is WaitStatus.FAILED):
        result.raise_for_status()
    urls = [record.result_image_url if record.succeeded else None for record in result.records]
    ti = context["ti"]
    ti.xcom_push(key=RESULT_IMAGE_URL_KEY, value=urls[0])
    ti.xcom_push(key=RESULT_IMAGE_URLS_KEY, value=urls)
    return [record.to_dict() for record in result.records]
