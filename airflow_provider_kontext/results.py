"""What a finished wait puts into XCom, written once for the operator and the sensor."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import Context

    from airflow_provider_kontext.protocol.polling import WaitResult

#: Pushed right after a create succeeds, before any waiting, so the id survives a failed wait.
TASK_ID_KEY: Final = "kontext_task_id"
#: The (first) result image URL; also what the "Kontext image" extra link opens.
RESULT_IMAGE_URL_KEY: Final = "result_image_url"
#: Every result image URL, in the order the tasks were given.
RESULT_IMAGE_URLS_KEY: Final = "result_image_urls"


def publish(context: Context, result: WaitResult) -> list[dict[str, Any]]:
    """
    Raise the typed error for a wait that did not succeed; otherwise push the image URLs.

    Returns one small dict per task (ids, status, URLs, prompt, model, times), never image bytes.
    """
    result.raise_for_status()
    urls = [record.result_image_url for record in result.records]
    ti = context["ti"]
    ti.xcom_push(key=RESULT_IMAGE_URL_KEY, value=urls[0])
    ti.xcom_push(key=RESULT_IMAGE_URLS_KEY, value=urls)
    return [record.to_dict() for record in result.records]
