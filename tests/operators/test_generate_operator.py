"""KontextGenerateOperator and KontextTaskSensor: deferral, events, typed errors, validation timing.

The task-instance context is the one thing faked here (a real one needs a running task); the
API on the other side is the emulator over real HTTP.
"""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

import pytest

from airflow_provider_kontext import exceptions as exc
from airflow_provider_kontext._compat import AirflowSensorTimeout, TaskDeferred
from airflow_provider_kontext._protocol.polling import TaskWaiter
from airflow_provider_kontext._protocol.record import TaskRecord, TaskStatus
from airflow_provider_kontext.emulator import EmulatorServer
from airflow_provider_kontext.hooks.kontext import KontextHook
from airflow_provider_kontext.operators.generate import KontextGenerateOperator
from airflow_provider_kontext.sensors.task import KontextTaskSensor
from airflow_provider_kontext.triggers.task import KontextTaskTrigger
from tests.conftest import DictStateStore, requests_to


class FakeTI:
    dag_id = "kontext_dag"
    run_id = "manual__2026-11-21T10:00:00+00:00"
    task_id = "generate"
    map_index = -1

    def __init__(self) -> None:
        self.xcom: dict[str, Any] = {}

    def xcom_push(self, key: str, value: Any) -> None:
        self.xcom[key] = value

    def xcom_pull(self, task_ids: str, key: str = "return_value", map_indexes: int | None = None) -> Any:
        assert (task_ids, map_indexes) == (self.task_id, self.map_index), "only this task instance's own XComs"
        return self.xcom.get(key)

    def get_first_reschedule_date(self, context: Any) -> None:
        return None


def context() -> dict[str, Any]:
    return {"ti": FakeTI()}


def operator(**kwargs: Any) -> KontextGenerateOperator:
    kwargs.setdefault("prompt", "a red kite")
    kwargs.setdefault("poll_interval", 0.1)
    return KontextGenerateOperator(task_id="generate", **kwargs)


def success_event(task_id: str = "t1") -> dict[str, Any]:
    waiter = TaskWaiter([task_id], end_time=None)
    waiter.on_record(
        TaskRecord(task_id, TaskStatus.SUCCESS, result_image_url="https://r.test/i.png", prompt="p"), now=0
    )
    result = waiter.outcome(now=0)
    assert result is not None
    return result.to_event()


# ------------------------------------------------------------------ construction


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"aspect_ratio": "2:1"}, "aspect_ratio"),
        ({"model": "flux-dev"}, "model"),
        ({"output_format": "gif"}, "output_format"),
        ({"prompt": ""}, "prompt"),
        ({"input_image": "s3://bucket/key.png"}, "input_image"),
        ({"input_image": "https://x.test/a.png", "safety_tolerance": 4}, "safety_tolerance"),
        ({"input_image": "{{ params.url }}", "safety_tolerance": 4}, "safety_tolerance"),
        ({"safety_tolerance": 9}, "safety_tolerance"),
    ],
)
def test_static_values_are_validated_at_construction(kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises(exc.KontextValidationError) as raised:
        operator(**kwargs)
    assert raised.value.field == field


def test_templated_values_wait_for_rendering() -> None:
    op = operator(prompt="{{ params.p }}", aspect_ratio="{{ params.ar }}", model="{{ params.m }}")
    assert set(op.template_fields) == {
        "prompt",
        "input_image",
        "aspect_ratio",
        "model",
        "callback_url",
        "watermark",
        "output_path",
        "output_file_name",
    }
    op.prompt = "   "  # what an empty template renders to
    with pytest.raises(exc.KontextValidationError, match="prompt"):
        op.build_request()
    op.prompt, op.aspect_ratio, op.model = "ok", "2:1", "flux-kontext-pro"
    with pytest.raises(exc.KontextValidationError, match="aspect_ratio"):
        op.build_request()


@pytest.mark.parametrize("kwargs", [{"poll_interval": 0}, {"timeout": 0}])
def test_bad_wait_settings_fail_at_construction(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        operator(**kwargs)


def test_rendered_invalid_prompt_sends_nothing(emulator: EmulatorServer) -> None:
    op = operator(prompt="{{ params.p }}")
    op.prompt = ""
    with pytest.raises(exc.KontextValidationError):
        op.execute(context())
    assert sum(emulator.stats()["requests"].values()) == 0


# ------------------------------------------------------------------ execute


def test_deferrable_pushes_id_then_defers_with_buffered_timeout(emulator: EmulatorServer) -> None:
    op = operator(deferrable=True, timeout=600, poll_interval=5)
    ctx = context()
    before = time.time()
    with pytest.raises(TaskDeferred) as deferred:
        op.execute(ctx)
    kie_task_id = ctx["ti"].xcom["kie_task_id"]
    trigger = deferred.value.trigger
    assert isinstance(trigger, KontextTaskTrigger)
    assert trigger.kie_task_ids == [kie_task_id]
    assert before + 600 <= trigger.end_time <= time.time() + 600
    assert deferred.value.method_name == "execute_complete"
    timeout = deferred.value.timeout
    assert timeout is not None
    assert timedelta(seconds=600 + 5 + 59) <= timeout <= timedelta(seconds=600 + 5 + 61)
    assert emulator.stats()["creates_accepted"] == 1


def test_execution_timeout_shortens_the_wait(emulator: EmulatorServer) -> None:
    op = operator(deferrable=True, timeout=600, execution_timeout=timedelta(seconds=120))
    with pytest.raises(TaskDeferred) as deferred:
        op.execute(context())
    assert deferred.value.trigger.end_time <= time.time() + 120


def test_a_fresh_task_defers_at_once_and_the_trigger_skips_the_quiet_start(emulator: EmulatorServer) -> None:
    # A task created a moment ago cannot be done: no status check on the worker (the slot is
    # held only for the create), and the trigger's first check follows PollSchedule.
    before = time.time()
    with pytest.raises(TaskDeferred) as deferred:
        operator(deferrable=True, poll_interval=2).execute(context())
    assert requests_to(emulator, "record-info") == 0
    first_poll_at = deferred.value.trigger.first_poll_at
    assert first_poll_at is not None
    assert before + 2 + 2 <= first_poll_at <= time.time() + 2 + 2  # min(5 s, interval) + interval


def test_a_reattached_terminal_task_finishes_without_deferring(emulator: EmulatorServer) -> None:
    # A retry re-attaching to a task that finished meanwhile: one check on the worker, no deferral.
    emulator.configure(generation_seconds=0, record_info_null_seconds=0)
    store = DictStateStore()
    with pytest.raises(TaskDeferred):
        operator(deferrable=True).execute({**context(), "task_state_store": store})
    ctx = {**context(), "task_state_store": store}
    result = operator(deferrable=True).execute(ctx)
    assert result["status"] == "SUCCESS"
    assert ctx["ti"].xcom["result_image_url"] == result["result_image_url"]
    assert emulator.stats()["creates_accepted"] == 1
    assert requests_to(emulator, "record-info") == 2  # the ledger's usability check, then the wait's one check


def test_blocking_mode_waits_on_the_worker(emulator: EmulatorServer) -> None:
    ctx = context()
    result = operator(deferrable=False, aspect_ratio="9:16").execute(ctx)
    assert result["kie_task_id"] == ctx["ti"].xcom["kie_task_id"]
    assert result["aspect_ratio"] == "9:16"
    assert result["result_image_url"].startswith("http")


def test_no_wait_returns_the_task_id(emulator: EmulatorServer) -> None:
    ctx = context()
    kie_task_id = operator(wait_for_completion=False, deferrable=True).execute(ctx)
    assert kie_task_id == ctx["ti"].xcom["kie_task_id"]
    assert requests_to(emulator, "record-info") == 0


@pytest.mark.parametrize(
    ("marker", "error"),
    [("content_policy", exc.KontextContentPolicyError), ("generate_failed", exc.KontextGenerationFailedError)],
)
def test_blocking_failures_raise_typed_errors_with_task_id(
    emulator: EmulatorServer, marker: str, error: type[Exception]
) -> None:
    ctx = context()
    with pytest.raises(error) as raised:
        operator(prompt=f"x [emulator:{marker}]", deferrable=False).execute(ctx)
    assert ctx["ti"].xcom["kie_task_id"] in str(raised.value)


def test_blocking_timeout(emulator: EmulatorServer) -> None:
    with pytest.raises(exc.KontextTimeoutError):
        operator(prompt="x [emulator:slow=30]", deferrable=False, timeout=0.5).execute(context())


# ------------------------------------------------------------------ execute_complete


def test_execute_complete_success() -> None:
    ctx = context()
    result = operator().execute_complete(ctx, success_event("t1"))
    assert result["kie_task_id"] == "t1"
    assert ctx["ti"].xcom["result_image_url"] == "https://r.test/i.png"
    assert ctx["ti"].xcom["result_image_urls"] == ["https://r.test/i.png"]


@pytest.mark.parametrize(
    ("event", "error"),
    [
        (
            {
                "status": "failed",
                "records": [{"kie_task_id": "t1", "status": "GENERATE_FAILED", "error_code": 400}],
                "message": "m",
            },
            exc.KontextContentPolicyError,
        ),
        (
            {"status": "failed", "records": [{"kie_task_id": "t1", "status": "SUCCESS"}], "message": "m"},
            exc.KontextMissingResultError,
        ),
        (
            {"status": "timeout", "records": [{"kie_task_id": "t1", "status": "GENERATING"}], "message": "late"},
            exc.KontextTimeoutError,
        ),
        (
            {"status": "error", "records": [], "message": "no", "error_class": "KontextAuthError"},
            exc.KontextAuthError,
        ),
        ({"status": "error", "records": [], "message": "no", "error_class": "os.system"}, exc.KontextError),
        (None, exc.KontextTriggerEventError),
        ({"status": "weird", "records": []}, exc.KontextTriggerEventError),
    ],
)
def test_execute_complete_raises_for_each_status(event: Any, error: type[Exception]) -> None:
    with pytest.raises(error):
        operator().execute_complete(context(), event)


# ------------------------------------------------------------------ sensor


def test_sensor_poke_mode_returns_results_in_order(emulator: EmulatorServer) -> None:
    hook = KontextHook()
    ids = [hook.create_task("one"), hook.create_task("two")]
    sensor = KontextTaskSensor(task_id="wait", kie_task_ids=ids, poll_interval=0.1, deferrable=False, timeout=30)
    ctx = context()
    results = sensor.execute(ctx)
    assert [r["kie_task_id"] for r in results] == ids
    assert ctx["ti"].xcom["result_image_urls"] == [r["result_image_url"] for r in results]


def test_sensor_single_id_returns_a_dict(emulator: EmulatorServer) -> None:
    kie_task_id = KontextHook().create_task("one")
    sensor = KontextTaskSensor(task_id="wait", kie_task_ids=kie_task_id, poll_interval=0.1, deferrable=False)
    assert sensor.execute(context())["kie_task_id"] == kie_task_id


def test_sensor_poke_is_false_while_running(emulator: EmulatorServer) -> None:
    kie_task_id = KontextHook().create_task("x [emulator:slow=30]")
    sensor = KontextTaskSensor(task_id="wait", kie_task_ids=kie_task_id, deferrable=False)
    assert sensor.poke(context()) is False


def test_sensor_defers_and_times_out_as_a_sensor(emulator: EmulatorServer) -> None:
    kie_task_id = KontextHook().create_task("x [emulator:slow=30]")
    sensor = KontextTaskSensor(task_id="wait", kie_task_ids=[kie_task_id], deferrable=True, timeout=120)
    with pytest.raises(TaskDeferred) as deferred:
        sensor.execute(context())
    assert deferred.value.trigger.kie_task_ids == [kie_task_id]
    timeout_event = {"status": "timeout", "records": [{"kie_task_id": kie_task_id, "status": "GENERATING"}]}
    with pytest.raises(AirflowSensorTimeout):
        sensor.execute_complete(context(), timeout_event)


def test_sensor_failure_raises_typed_error(emulator: EmulatorServer) -> None:
    kie_task_id = KontextHook().create_task("x [emulator:create_failed]")
    sensor = KontextTaskSensor(task_id="wait", kie_task_ids=kie_task_id, poll_interval=0.1, deferrable=False)
    with pytest.raises(exc.KontextTaskCreateFailedError):
        sensor.execute(context())
