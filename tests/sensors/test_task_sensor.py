"""KontextTaskSensor: poke and blocking waits, deferral, the sensor's own timeout, typed errors.

The kie tasks are created with a real :class:`KontextHook` against the emulator over loopback
HTTP; only the task-instance context is faked (:mod:`reliability.fake_airflow`).
"""

from __future__ import annotations

import pytest

from airflow_provider_kontext import exceptions as exc
from airflow_provider_kontext._compat import AirflowSensorTimeout, TaskDeferred
from airflow_provider_kontext.emulator import EmulatorServer
from airflow_provider_kontext.hooks.kontext import KontextHook
from airflow_provider_kontext.sensors.task import KontextTaskSensor
from reliability.fake_airflow import task_context
from tests.conftest import requests_to


def test_sensor_poke_mode_returns_results_in_order(emulator: EmulatorServer) -> None:
    hook = KontextHook()
    ids = [hook.create_task("one"), hook.create_task("two")]
    sensor = KontextTaskSensor(task_id="wait", kie_task_ids=ids, poll_interval=0.1, deferrable=False, timeout=30)
    ctx = task_context()
    results = sensor.execute(ctx)
    assert [r["kie_task_id"] for r in results] == ids
    assert ctx["ti"].xcom["result_image_urls"] == [r["result_image_url"] for r in results]


def test_sensor_single_id_returns_a_dict(emulator: EmulatorServer) -> None:
    kie_task_id = KontextHook().create_task("one")
    sensor = KontextTaskSensor(task_id="wait", kie_task_ids=kie_task_id, poll_interval=0.1, deferrable=False)
    assert sensor.execute(task_context())["kie_task_id"] == kie_task_id


def test_sensor_poke_is_false_while_running(emulator: EmulatorServer) -> None:
    kie_task_id = KontextHook().create_task("x [emulator:slow=30]")
    sensor = KontextTaskSensor(task_id="wait", kie_task_ids=kie_task_id, deferrable=False)
    assert sensor.poke(task_context()) is False


def test_sensor_defers_and_times_out_as_a_sensor(emulator: EmulatorServer) -> None:
    kie_task_id = KontextHook().create_task("x [emulator:slow=30]")
    sensor = KontextTaskSensor(task_id="wait", kie_task_ids=[kie_task_id], deferrable=True, timeout=120)
    with pytest.raises(TaskDeferred) as deferred:
        sensor.execute(task_context())
    assert deferred.value.trigger.kie_task_ids == [kie_task_id]
    timeout_event = {"status": "timeout", "records": [{"kie_task_id": kie_task_id, "status": "GENERATING"}]}
    with pytest.raises(AirflowSensorTimeout):
        sensor.execute_complete(task_context(), timeout_event)


def test_sensor_failure_raises_typed_error(emulator: EmulatorServer) -> None:
    kie_task_id = KontextHook().create_task("x [emulator:create_failed]")
    sensor = KontextTaskSensor(task_id="wait", kie_task_ids=kie_task_id, poll_interval=0.1, deferrable=False)
    with pytest.raises(exc.KontextTaskCreateFailedError):
        sensor.execute(task_context())


def test_the_sensor_waits_for_market_tasks_at_the_jobs_endpoint(emulator: EmulatorServer) -> None:
    kie_task_id = KontextHook().create_market_task(
        "bytedance/seedream-v4-text-to-image", {"prompt": "two kites", "max_images": 2}
    )
    sensor = KontextTaskSensor(
        task_id="wait", kie_task_ids=kie_task_id, api="market", poll_interval=0.1, deferrable=False, timeout=30
    )
    ctx = task_context()
    result = sensor.execute(ctx)
    assert result["api"] == "market" and len(result["result_image_urls"]) == 2
    assert ctx["ti"].xcom["result_image_urls"] == result["result_image_urls"]
    assert requests_to(emulator, "jobs-record-info") >= 1
    assert requests_to(emulator, "record-info") == 0


def test_an_unknown_api_fails_at_parse_time() -> None:
    with pytest.raises(exc.KontextValidationError) as raised:
        KontextTaskSensor(task_id="wait", kie_task_ids="t1", api="markt")
    assert raised.value.field == "api"
