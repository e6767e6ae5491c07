"""The "Kontext image" extra link reads the URL the task pushed."""

from __future__ import annotations

from airflow_provider_kontext.links import KontextImageLink
from airflow_provider_kontext.operators.batch import KontextBatchGenerateOperator
from airflow_provider_kontext.operators.generate import KontextGenerateOperator
from airflow_provider_kontext.results import RESULT_IMAGE_URL_KEY
from airflow_provider_kontext.sensors.task import KontextTaskSensor


def test_link_reads_the_result_image_url_key() -> None:
    link = KontextImageLink()
    assert link.name == "Kontext image"
    assert link.xcom_key == RESULT_IMAGE_URL_KEY == "result_image_url"


def test_every_kontext_task_offers_the_link() -> None:
    tasks = [
        KontextGenerateOperator(task_id="g", prompt="x"),
        KontextBatchGenerateOperator(task_id="b", requests=[{"prompt": "x"}]),
        KontextTaskSensor(task_id="s", kie_task_ids="t1"),
    ]
    for task in tasks:
        assert [type(link) for link in task.operator_extra_links] == [KontextImageLink]
