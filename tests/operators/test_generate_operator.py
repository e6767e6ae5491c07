"""KontextGenerateOperator: deferral, events, typed errors, validation timing.

The task-instance context is the one thing faked here (a real one needs a running task); the
API on the other side is the emulator over real HTTP.
"""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

import pytest

from airflow_provider_kontext import exceptions as exc
from airflow_provider_kontext._compat import TaskDeferred
from airflow_provider_kontext._protocol.polling import TaskWaiter
from airflow_provider_kontext._protocol.record import TaskRecord, TaskStatus
from airflow_provider_kontext.emulator import EmulatorServer
from airflow_provider_kontext.operators.generate import KontextGenerateOperator
from airflow_provider_kontext.triggers.task import KontextTaskTrigger
from reliability.fake_airflow import DictStateStore, task_context
from tests.conftest import requests_to


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
        "input",
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
        op.execute(task_context())
    assert sum(emulator.stats()["requests"].values()) == 0


# ------------------------------------------------------------------ execute


def test_deferrable_pushes_id_then_defers_with_buffered_timeout(emulator: EmulatorServer) -> None:
    op = operator(deferrable=True, timeout=600, poll_interval=5)
    ctx = task_context()
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
        op.execute(task_context())
    assert deferred.value.trigger.end_time <= time.time() + 120


def test_a_fresh_task_defers_at_once_and_the_trigger_skips_the_quiet_start(emulator: EmulatorServer) -> None:
    # A task created a moment ago cannot be done: no status check on the worker (the slot is
    # held only for the create), and the trigger's first check follows PollSchedule.
    before = time.time()
    with pytest.raises(TaskDeferred) as deferred:
        operator(deferrable=True, poll_interval=2).execute(task_context())
    assert requests_to(emulator, "record-info") == 0
    first_poll_at = deferred.value.trigger.first_poll_at
    assert first_poll_at is not None
    assert before + 2 + 2 <= first_poll_at <= time.time() + 2 + 2  # min(5 s, interval) + interval


def test_a_reattached_terminal_task_finishes_without_deferring(emulator: EmulatorServer) -> None:
    # A retry re-attaching to a task that finished meanwhile: one check on the worker, no deferral.
    emulator.configure(generation_seconds=0, record_info_null_seconds=0)
    store = DictStateStore()
    with pytest.raises(TaskDeferred):
        operator(deferrable=True).execute(task_context(state_store=store))
    ctx = task_context(state_store=store)
    result = operator(deferrable=True).execute(ctx)
    assert result["status"] == "SUCCESS"
    assert ctx["ti"].xcom["result_image_url"] == result["result_image_url"]
    assert emulator.stats()["creates_accepted"] == 1
    assert requests_to(emulator, "record-info") == 2  # the ledger's usability check, then the wait's one check


def test_blocking_mode_waits_on_the_worker(emulator: EmulatorServer) -> None:
    ctx = task_context()
    result = operator(deferrable=False, aspect_ratio="9:16").execute(ctx)
    assert result["kie_task_id"] == ctx["ti"].xcom["kie_task_id"]
    assert result["aspect_ratio"] == "9:16"
    assert result["result_image_url"].startswith("http")


def test_no_wait_returns_the_task_id(emulator: EmulatorServer) -> None:
    ctx = task_context()
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
    ctx = task_context()
    with pytest.raises(error) as raised:
        operator(prompt=f"x [emulator:{marker}]", deferrable=False).execute(ctx)
    assert ctx["ti"].xcom["kie_task_id"] in str(raised.value)


def test_blocking_timeout(emulator: EmulatorServer) -> None:
    with pytest.raises(exc.KontextTimeoutError):
        operator(prompt="x [emulator:slow=30]", deferrable=False, timeout=0.5).execute(task_context())


# ------------------------------------------------------------------ execute_complete


def test_execute_complete_success() -> None:
    ctx = task_context()
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
        operator().execute_complete(task_context(), event)


def test_the_operator_takes_exactly_the_request_models_fields() -> None:
    """
    The request models are the one list of kie's fields; the operator's signature and docs follow them.

    Flux Kontext's generate fields, then a Market request's (``model`` and ``callback_url`` are
    shared, ``input`` and the catalog opt-out are the Market's own).
    """
    import inspect

    from airflow_provider_kontext._protocol.request import OPTIONAL_FIELDS, WIRE_NAMES
    from airflow_provider_kontext._tasks.prepare import MARKET_ITEM_KEYS

    parameters = inspect.signature(KontextGenerateOperator.__init__).parameters.values()
    own = [p.name for p in parameters if p.kind is inspect.Parameter.KEYWORD_ONLY]
    expected = sorted({"prompt", *OPTIONAL_FIELDS, *MARKET_ITEM_KEYS})
    assert sorted(own) == expected, "the operator's own arguments are the request fields"
    doc = KontextGenerateOperator.__doc__ or ""
    missing = [name for name in [*WIRE_NAMES, *MARKET_ITEM_KEYS] if f":param {name}:" not in doc]
    assert not missing, f"undocumented request fields: {missing}"
    fields = KontextGenerateOperator(task_id="t", prompt="p", model="flux-kontext-max")._fields()
    assert list(fields) == list(WIRE_NAMES), "the request is built from every field, in kie's order"


# ------------------------------------------------------------------ Market models (same operator)

FLUX_2 = "flux-2/pro-text-to-image"


def market(model: str = FLUX_2, **kwargs: Any) -> KontextGenerateOperator:
    kwargs.setdefault("input", {"prompt": "a red kite", "aspect_ratio": "1:1", "resolution": "1K"})
    kwargs.setdefault("poll_interval", 0.1)
    return KontextGenerateOperator(task_id="generate", model=model, **kwargs)


def test_a_market_model_runs_blocking_and_returns_its_image_and_credits(emulator: EmulatorServer) -> None:
    ctx = task_context()
    result = market(deferrable=False).execute(ctx)
    assert result["status"] == "SUCCESS"
    assert result["api"] == "market"
    assert result["model"] == FLUX_2
    assert result["prompt"] == "a red kite"
    assert result["kie_task_id"] == ctx["ti"].xcom["kie_task_id"]
    assert len(result["result_image_urls"]) == 1
    assert result["result_image_url"] == result["result_image_urls"][0]
    assert result["credits"] == 5  # kie's reported creditsConsumed: FLUX.2 pro at 1K
    assert requests_to(emulator, "jobs-create") == 1
    assert requests_to(emulator, "generate") == 0 and requests_to(emulator, "record-info") == 0


def test_a_market_task_with_several_images_returns_every_url(emulator: EmulatorServer) -> None:
    ctx = task_context()
    result = market(
        "bytedance/seedream-v4-text-to-image",
        input={"prompt": "three kites", "max_images": 3},
        deferrable=False,
    ).execute(ctx)
    urls = result["result_image_urls"]
    assert len(urls) == 3 and len(set(urls)) == 3
    assert ctx["ti"].xcom["result_image_urls"] == urls  # every image of the task, in order


def test_a_deferred_market_wait_polls_the_market_endpoint(emulator: EmulatorServer) -> None:
    import asyncio

    ctx = task_context()
    with pytest.raises(TaskDeferred) as deferred:
        market(deferrable=True).execute(ctx)
    trigger = deferred.value.trigger
    assert trigger.serialize()[1]["api"] == "market"
    events = asyncio.run(_events(KontextTaskTrigger(**trigger.serialize()[1])))
    result = market(deferrable=True).execute_complete(ctx, events[0].payload, **(deferred.value.kwargs or {}))
    assert result["status"] == "SUCCESS" and result["api"] == "market"
    assert requests_to(emulator, "jobs-record-info") >= 1
    assert requests_to(emulator, "record-info") == 0


async def _events(trigger: KontextTaskTrigger) -> list[Any]:
    return [event async for event in trigger.run()]


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"input": {"prompt": "a kite", "aspect_ratio": "1:1", "resolution": "8K"}}, "input.resolution"),
        ({"input": {"prompt": "a kite", "aspect_ratio": "1:1", "resolution": "1K", "size": 2}}, "input.size"),
        ({"input": {"aspect_ratio": "1:1", "resolution": "1K"}}, "input.prompt"),
        ({"model": "flux-2/pro-text2image"}, "model"),
        ({"aspect_ratio": "1:1"}, "aspect_ratio"),  # a Flux Kontext field beside a Market input
    ],
)
def test_a_bad_market_request_fails_at_construction_naming_the_field(
    emulator: EmulatorServer, kwargs: dict[str, Any], field: str
) -> None:
    with pytest.raises(exc.KontextValidationError) as raised:
        market(**kwargs)
    assert raised.value.field == field
    assert sum(emulator.stats()["requests"].values()) == 0


def test_an_unknown_model_names_the_close_match() -> None:
    with pytest.raises(exc.KontextUnknownModelError) as raised:
        market("flux-2/pro-text2image")
    assert FLUX_2 in str(raised.value)


def test_a_templated_market_input_is_checked_once_rendered(emulator: EmulatorServer) -> None:
    op = market(input={"prompt": "{{ params.p }}", "aspect_ratio": "1:1", "resolution": "16K"})  # no error yet
    op.input = {"prompt": "a kite", "aspect_ratio": "1:1", "resolution": "16K"}  # what rendering gives
    with pytest.raises(exc.KontextValidationError) as raised:
        op.execute(task_context())
    assert raised.value.field == "input.resolution"
    assert sum(emulator.stats()["requests"].values()) == 0


def test_prompt_fills_the_market_inputs_prompt(emulator: EmulatorServer) -> None:
    result = market(prompt="a green kite", input={"aspect_ratio": "1:1", "resolution": "1K"}, deferrable=False).execute(
        task_context()
    )
    assert result["prompt"] == "a green kite"


def test_a_local_image_for_a_market_edit_is_uploaded_first(emulator: EmulatorServer, tmp_path: Any) -> None:
    from PIL import Image

    source = tmp_path / "product.png"
    Image.new("RGB", (64, 64), "red").save(source)
    result = market(
        "flux-2/pro-image-to-image",
        input={"prompt": "on a beach", "input_urls": [str(source)], "aspect_ratio": "1:1", "resolution": "1K"},
        deferrable=False,
    ).execute(task_context())
    assert result["status"] == "SUCCESS"
    uploads = {name: count for name, count in emulator.stats()["requests"].items() if name.startswith("upload-")}
    assert sum(uploads.values()) == 1, uploads
    assert requests_to(emulator, "jobs-create") == 1


def test_an_uncatalogued_model_is_sent_only_with_the_explicit_opt_out(emulator: EmulatorServer) -> None:
    with pytest.raises(exc.KontextUnknownModelError):
        market("acme/brand-new-model", input={"prompt": "x"})
    op = market("acme/brand-new-model", input={"prompt": "x"}, allow_uncatalogued_model=True, deferrable=False)
    with pytest.raises(exc.KontextValidationError) as raised:  # kie (the emulator) does not know it either
        op.execute(task_context())
    assert raised.value.field == "model"
    assert requests_to(emulator, "jobs-create") == 1
    assert emulator.stats()["creates_accepted"] == 0
