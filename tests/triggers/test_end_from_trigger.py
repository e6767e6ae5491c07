"""Ending a successful deferred wait in the triggerer: the trigger's event, and who may ask for it.

The trigger runs in a real event loop against the emulator over real HTTP. Whether a real
triggerer then ends the task is shown end to end in tests/e2e/test_end_from_trigger.py
(``dag.test()`` resumes anyway).

The tasks ask for it on Airflow 3.2+ only (``_compat.AIRFLOW_ENDS_TASKS_FROM_TRIGGERS``): below,
every wait resumes on a worker and the sensor starts there, which the tests below assert on
whichever Airflow runs them. The trigger itself does what it is told on every version.
"""

from __future__ import annotations

import json
import time
from datetime import timedelta
from typing import Any

import pytest
from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.sdk import DAG, Asset
from airflow.triggers.base import TaskSuccessEvent, TriggerEvent

from airflow_provider_kontext import _compat
from airflow_provider_kontext._compat import TaskDeferred
from airflow_provider_kontext.emulator import EmulatorServer
from airflow_provider_kontext.hooks.kontext import KontextHook
from airflow_provider_kontext.operators.generate import KontextGenerateOperator
from airflow_provider_kontext.sensors.task import KontextTaskSensor
from airflow_provider_kontext.triggers.task import KontextTaskTrigger
from reliability.fake_airflow import task_context
from tests.conftest import API_KEY
from tests.operators.test_generate_operator import operator


async def one_event(trigger: KontextTaskTrigger) -> TriggerEvent:
    events = [event async for event in trigger.run()]
    assert len(events) == 1, "a trigger yields exactly one event"
    return events[0]


def trigger_for(ids: list[str], **kwargs: Any) -> KontextTaskTrigger:
    kwargs.setdefault("end_time", time.time() + 30)
    return KontextTaskTrigger("kontext_default", ids, poll_interval=0.1, **kwargs)


# ------------------------------------------------------------------ the trigger


async def test_success_ends_the_task_with_the_xcoms_the_worker_would_push(emulator: EmulatorServer) -> None:
    emulator.configure(generation_seconds=0, record_info_null_seconds=0)
    kie_task_id = KontextHook().create_task(prompt="a red kite")
    stats = [{"attempts": 1, "accepted": 1, "rate_limited": 0, "maintenance": 0, "waited_seconds": 0.0}]
    creates = [{"create_stats": stats[0]}]
    _, kwargs = trigger_for([kie_task_id], end_from_trigger="first", creates=creates).serialize()
    assert API_KEY not in json.dumps(kwargs)
    event = await one_event(KontextTaskTrigger(**json.loads(json.dumps(kwargs))))  # as the triggerer rebuilds it
    assert isinstance(event, TaskSuccessEvent)
    assert event.xcoms is not None
    assert API_KEY not in json.dumps(event.xcoms)
    assert json.loads(json.dumps(event.xcoms)) == event.xcoms, "XComs must be plain JSON"

    # The worker's resume, fed the same wait as a plain event, pushes exactly the same.
    plain = await one_event(trigger_for([kie_task_id]))
    assert not isinstance(plain, TaskSuccessEvent)
    ctx = task_context()
    returned = operator().execute_complete(ctx, plain.payload, creates=creates)
    assert event.xcoms == {**ctx["ti"].xcom, "return_value": returned}
    assert returned["kie_task_id"] == kie_task_id and returned["status"] == "SUCCESS"
    assert returned["create_stats"] == stats[0]


async def test_all_and_nothing_shape_the_return_value(emulator: EmulatorServer) -> None:
    emulator.configure(generation_seconds=0, record_info_null_seconds=0)
    ids = [KontextHook().create_task(prompt=f"image {n}") for n in range(2)]
    every = await one_event(trigger_for(ids, end_from_trigger="all"))
    assert isinstance(every, TaskSuccessEvent) and every.xcoms is not None
    assert [record["kie_task_id"] for record in every.xcoms["return_value"]] == ids
    assert every.xcoms["result_image_urls"] == [record["result_image_url"] for record in every.xcoms["return_value"]]
    bare = await one_event(trigger_for(ids, end_from_trigger="nothing"))
    assert isinstance(bare, TaskSuccessEvent) and bare.xcoms is not None
    assert set(bare.xcoms) == {"result_image_url", "result_image_urls"}  # no create report, no credits from kie


async def test_a_failed_wait_still_resumes_on_the_worker(emulator: EmulatorServer) -> None:
    # The typed error and the retry policy run on the worker: no TaskSuccessEvent, no TaskFailedEvent.
    kie_task_id = KontextHook().create_task(prompt="bad [emulator:content_policy]")
    event = await one_event(trigger_for([kie_task_id], end_from_trigger="first"))
    assert type(event) is TriggerEvent
    assert event.payload["status"] == "failed"


async def test_a_timed_out_wait_still_resumes_on_the_worker(emulator: EmulatorServer) -> None:
    kie_task_id = KontextHook().create_task(prompt="slow [emulator:slow=60]")
    event = await one_event(trigger_for([kie_task_id], end_time=time.time() - 1, end_from_trigger="first"))
    assert type(event) is TriggerEvent
    assert event.payload["status"] == "timeout"


async def test_a_relative_timeout_opens_the_window_at_the_first_run(emulator: EmulatorServer) -> None:
    # What a task started in the triggerer has: kwargs fixed at parse time, so no absolute deadline.
    kie_task_id = KontextHook().create_task(prompt="slow [emulator:slow=60]")
    trigger = KontextTaskTrigger("kontext_default", [kie_task_id], timeout=0.6, poll_interval=0.1)
    assert trigger.serialize()[1]["end_time"] is None
    started = time.time()
    event = await one_event(trigger)
    assert event.payload["status"] == "timeout"
    assert 0.6 <= time.time() - started < 5


def test_bad_arguments_fail_in_the_worker() -> None:
    with pytest.raises(ValueError, match="end_time or timeout"):
        KontextTaskTrigger("kontext_default", ["t1"])
    with pytest.raises(ValueError, match="end_from_trigger"):
        trigger_for(["t1"], end_from_trigger="yes")


# ------------------------------------------------------------------ who asks for it


def deferred_trigger(op: KontextGenerateOperator) -> KontextTaskTrigger:
    with pytest.raises(TaskDeferred) as deferred:
        op.execute(task_context())
    trigger = deferred.value.trigger
    assert isinstance(trigger, KontextTaskTrigger)
    return trigger


ENDS_IN_TRIGGERER = _compat.AIRFLOW_ENDS_TASKS_FROM_TRIGGERS
#: The sensor's start in the triggerer needs more: Airflow 3.3's scheduler (``start_from_trigger``).
STARTS_IN_TRIGGERER = _compat.AIRFLOW_STARTS_TASKS_FROM_TRIGGERS


def on_this_airflow(mode: str | None) -> str | None:
    """The end mode a task asks for here: ``mode`` on Airflow 3.2+, below always ``None`` (resume)."""
    return mode if ENDS_IN_TRIGGERER else None


def test_ending_in_the_triggerer_comes_with_airflow_3_2() -> None:
    assert (_compat.AIRFLOW_RELEASE >= (3, 2)) == ENDS_IN_TRIGGERER


def test_generate_without_output_path_asks_the_trigger_to_end_it(emulator: EmulatorServer) -> None:
    trigger = deferred_trigger(operator(deferrable=True))
    assert trigger.end_from_trigger == on_this_airflow("first")
    if ENDS_IN_TRIGGERER:
        assert trigger.creates is not None and trigger.creates[0]["create_stats"]["attempts"] == 1
    else:  # the create report travels in the resume kwargs instead
        assert trigger.creates is None


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"output_path": "file:///tmp/kontext-never-written"}, None),  # the worker must store the file
        ({"outlets": [Asset("kontext://images")]}, None),  # the worker must emit the Asset event
        ({"do_xcom_push": False}, "nothing"),
    ],
)
def test_the_worker_keeps_the_resume_when_it_has_work_left(
    emulator: EmulatorServer, kwargs: dict[str, Any], expected: str | None
) -> None:
    assert deferred_trigger(operator(deferrable=True, **kwargs)).end_from_trigger == on_this_airflow(expected)


def test_a_task_with_downstream_tasks_keeps_the_resume(emulator: EmulatorServer) -> None:
    # Airflow 3.3.2 hands a trigger's XComs to a downstream task JSON-encoded (a str, not the dict).
    with DAG("kontext_downstream", schedule=None):
        generate = operator(deferrable=True)
        generate >> EmptyOperator(task_id="after")
    assert deferred_trigger(generate).end_from_trigger is None


def test_a_subclass_that_overrides_the_resume_keeps_it(emulator: EmulatorServer) -> None:
    class Custom(KontextGenerateOperator):
        def finish(self, *args: Any, **kwargs: Any) -> Any:
            return super().finish(*args, **kwargs)

    assert deferred_trigger(Custom(task_id="custom", prompt="x", deferrable=True)).end_from_trigger is None


def test_older_airflow_keeps_the_resume(emulator: EmulatorServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """What Airflow below 3.2 gets, checked on every version (the flag is all the tasks read)."""
    monkeypatch.setattr(_compat, "AIRFLOW_ENDS_TASKS_FROM_TRIGGERS", False)
    monkeypatch.setattr(_compat, "AIRFLOW_STARTS_TASKS_FROM_TRIGGERS", False)
    assert deferred_trigger(operator(deferrable=True)).end_from_trigger is None
    assert not KontextTaskSensor(task_id="wait", kie_task_ids="t1", deferrable=True).start_from_trigger


# ------------------------------------------------------------------ the sensor


def test_sensor_with_literal_ids_starts_in_the_triggerer() -> None:
    sensor = KontextTaskSensor(task_id="wait", kie_task_ids=["t1", "t2"], deferrable=True, timeout=300)
    assert sensor.start_from_trigger is STARTS_IN_TRIGGERER
    args = sensor.start_trigger_args
    if not STARTS_IN_TRIGGERER:  # below 3.3: a worker starts it, as any deferrable sensor
        assert args is None
        return
    assert args is not None
    assert args.trigger_cls == "airflow_provider_kontext.triggers.task.KontextTaskTrigger"
    assert args.next_method == "execute_complete"
    assert args.timeout is not None and args.timeout > timedelta(seconds=300)
    assert args.trigger_kwargs is not None
    assert API_KEY not in json.dumps(args.trigger_kwargs)
    trigger = KontextTaskTrigger(**args.trigger_kwargs)  # what the triggerer builds from them
    assert trigger.kie_task_ids == ["t1", "t2"]
    assert trigger.end_from_trigger == "all" and trigger.end_time is None and trigger.timeout == 300
    single = KontextTaskSensor(task_id="one", kie_task_ids="t1", deferrable=True).start_trigger_args
    assert single is not None and single.trigger_kwargs is not None
    assert single.trigger_kwargs["end_from_trigger"] == "first"


def test_sensor_with_downstream_tasks_starts_in_the_triggerer_but_resumes_to_end() -> None:
    with DAG("kontext_sensor_downstream", schedule=None):
        sensor = KontextTaskSensor(task_id="wait", kie_task_ids="t1", deferrable=True)
        args = sensor.start_trigger_args
        if STARTS_IN_TRIGGERER:
            assert args is not None and args.trigger_kwargs is not None
            assert args.trigger_kwargs["end_from_trigger"] == "first"
        sensor >> EmptyOperator(task_id="after")
    args = sensor.start_trigger_args  # read again, as Airflow does when it serializes the whole DAG
    assert sensor.start_from_trigger is STARTS_IN_TRIGGERER
    if not STARTS_IN_TRIGGERER:
        assert args is None
        return
    assert args is not None and args.trigger_kwargs is not None
    assert args.trigger_kwargs["end_from_trigger"] is None


@pytest.mark.parametrize(
    "kwargs",
    [
        {"kie_task_ids": "{{ ti.xcom_pull(task_ids='generate', key='kie_task_id') }}"},
        {"kie_task_ids": ["t1", "{{ params.id }}"]},
        {"kie_task_ids": "t1", "deferrable": False},
        {"kie_task_ids": "t1", "output_path": "file:///tmp/kontext-never-written"},
    ],
)
def test_sensor_starts_on_a_worker_otherwise(kwargs: dict[str, Any]) -> None:
    kwargs.setdefault("deferrable", True)
    sensor = KontextTaskSensor(task_id="wait", **kwargs)
    assert sensor.start_from_trigger is False


def test_sensor_with_a_malformed_literal_id_fails_at_parse_time() -> None:
    with pytest.raises(ValueError):
        KontextTaskSensor(task_id="wait", kie_task_ids="", deferrable=True)
