"""The "Kontext image" extra link on the operator and the sensor."""

from __future__ import annotations

from typing import TYPE_CHECKING

from airflow.sdk import BaseOperatorLink

from airflow_provider_kontext.results import RESULT_IMAGE_URL_KEY

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import BaseOperator

    from airflow_provider_kontext._compat import TaskInstanceKey


class KontextImageLink(BaseOperatorLink):
    """
    Opens the generated image (the first one, for a sensor watching several tasks).

    The URL is the XCom ``result_image_url`` the task pushed; Airflow 3's UI reads it straight
    from that key. kie keeps results 14 days, so older links stop working.
    """

    name = "Kontext image"

    @property
    def xcom_key(self) -> str:
        return RESULT_IMAGE_URL_KEY

    def get_link(self, operator: BaseOperator, *, ti_key: TaskInstanceKey) -> str:
        from airflow.sdk.execution_time.xcom import XCom

        url = XCom.get_value(ti_key=ti_key, key=RESULT_IMAGE_URL_KEY)
        return url if isinstance(url, str) else ""
