"""``@task.kontext`` and ``@task.kontext_batch``: registration, validation before any create, the operators' result.

The task context is faked (as in the operator tests); the API is the emulator over real HTTP.
The whole TaskFlow path (``.expand()``, deferral, XComs, storage) runs under ``dag.test()`` in
``tests/dags/test_example_dags.py``.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from airflow.sdk import DAG, task
from airflow.triggers.base import TaskSuccessEvent

from airflow_provider_kontext import exceptions as exc
from airflow_provider_kontext._compat import AIRFLOW_ENDS_TASKS_FROM_TRIGGERS, TaskDeferred
from airflow_provider_kontext._tasks.task_defaults import default_retry_policy
from airflow_provider_kontext.decorators.batch import kontext_batch_task
from airflow_provider_kontext.decorators.generate import kontext_task
from airflow_provider_kontext.emulator import EmulatorServer
from airflow_provider_kontext.operators.generate import KontextGenerateOperator
from reliability.fake_airflow import task_context
from tests.conftest import requests_to


def single(returns: Any, **decorator_kwargs: Any) -> Any:
    """The operator ``@task.kontext(**decorator_kwargs)`` builds for a function returning ``returns``."""
    decorator_kwargs.setdefault("poll_interval", 0.1)
    with DAG(dag_id="kontext_decorator_test", schedule=None):

        @task.kontext(**decorator_kwargs)
        def image(product: str) -> Any:
            return returns(product) if callable(returns) else returns

        return image("mug").operator


def batch(returns: Any, **decorator_kwargs: Any) -> Any:
    decorator_kwargs.setdefault("poll_interval", 0.1)
    with DAG(dag_id="kontext_batch_decorator_test", schedule=None):

        @task.kontext_batch(**decorator_kwargs)
        def images() -> Any:
            return returns

        return images().operator


def test_the_decorators_are_registered_through_the_provider_info() -> None:
    # ``task.<name>`` looks the name up in the providers' ``task-decorators``.
    assert task.kontext is kontext_task
    assert task.kontext_batch is kontext_batch_task
    op = single("a fox")
    assert op.custom_operator_name == "@task.kontext"
    assert isinstance(op, KontextGenerateOperator)
    # The provider's retry policy on Airflow 3.3+; below there are no retry policies to carry.
    assert getattr(op, "retry_policy", None) is default_retry_policy()


@pytest.mark.parametrize(
    ("returns", "field"),
    [
        (None, "prompt"),
        (42, "prompt"),
        ("   ", "prompt"),
        ({"aspect_ratio": "1:1"}, "prompt"),
        ({"prompt": "a mug", "aspect_ratio": "2:1"}, "aspect_ratio"),
        ({"prompt": "a mug", "imageUrl": "https://x.test/a.png"}, "imageUrl"),
        ({"prompt": "a mug", "output_path": "file:///tmp"}, "output_path"),  # an operator argument, not a field
        ({"prompt": "a mug", "input_image": "https://x.test/a.png", "safety_tolerance": 4}, "safety_tolerance"),
    ],
)
def test_a_returned_value_that_is_not_a_valid_request_fails_before_any_create(
    emulator: EmulatorServer, returns: Any, field: str
) -> None:
    op = single(returns)
    with pytest.raises(exc.KontextValidationError) as raised:
        op.execute(task_context())
    assert raised.value.field == field
    assert sum(emulator.stats()["requests"].values()) == 0


@pytest.mark.parametrize(
    ("returns", "field"),
    [
        (None, "requests"),
        ("one prompt", "requests"),
        ([], "requests"),
        (["ok", 3], "requests[1]"),
        (["ok", {"prompt": "ok", "model": "flux-dev"}], "requests[1].model"),
        ([{"aspect_ratio": "1:1"}], "requests[0].prompt"),
    ],
)
def test_a_returned_batch_that_is_not_valid_fails_before_any_create(
    emulator: EmulatorServer, returns: Any, field: str
) -> None:
    op = batch(returns)
    with pytest.raises(exc.KontextValidationError) as raised:
        op.execute(task_context())
    assert raised.value.field == field
    assert sum(emulator.stats()["requests"].values()) == 0


def test_static_decorator_arguments_are_validated_when_the_dag_is_parsed() -> None:
    with pytest.raises(exc.KontextValidationError) as raised:
        single("a fox", aspect_ratio="2:1")
    assert raised.value.field == "aspect_ratio"


def test_the_result_is_the_operators(emulator: EmulatorServer) -> None:
    decorated_context = task_context()
    decorated = single(lambda product: f"studio photo of a {product}", aspect_ratio="1:1", deferrable=False).execute(
        decorated_context
    )
    plain_context = task_context()
    plain = KontextGenerateOperator(
        task_id="generate", prompt="studio photo of a mug", aspect_ratio="1:1", poll_interval=0.1
    ).execute(plain_context)
    assert decorated.keys() == plain.keys()
    different = {
        "kie_task_id",
        "create_time",
        "complete_time",
        "result_image_url",
        "result_image_urls",
        "origin_image_url",
    }
    assert {k: v for k, v in decorated.items() if k not in different} == {
        k: v for k, v in plain.items() if k not in different
    }
    assert decorated["prompt"] == "studio photo of a mug"
    assert decorated["aspect_ratio"] == "1:1"
    # The same XComs as the operator's, under the same keys.
    assert decorated_context["ti"].xcom.keys() == plain_context["ti"].xcom.keys()
    assert decorated_context["ti"].xcom["kie_task_id"] == decorated["kie_task_id"]
    assert requests_to(emulator, "generate") == 2


def test_a_returned_dict_overrides_the_decorators_request_fields(emulator: EmulatorServer) -> None:
    op = single({"prompt": "a lamp", "aspect_ratio": "9:16"}, aspect_ratio="1:1", model="flux-kontext-max")
    result = op.execute(task_context())
    assert (result["prompt"], result["aspect_ratio"], result["model"]) == ("a lamp", "9:16", "flux-kontext-max")


def test_the_returned_prompt_is_sent_as_is_not_rendered(emulator: EmulatorServer) -> None:
    # Computed in Python, perhaps from data: Jinja in it must not render (nor reach var/conn).
    result = single("a sign reading {{ var.value.secret }}").execute(task_context())
    assert result["prompt"] == "a sign reading {{ var.value.secret }}"


def test_a_deferred_task_resumes_to_the_same_result(emulator: EmulatorServer) -> None:
    op = single("a kettle", deferrable=True)
    ctx = task_context()
    with pytest.raises(TaskDeferred) as deferred:
        op.execute(ctx)
    assert requests_to(emulator, "generate") == 1
    kie_task_id = ctx["ti"].xcom["kie_task_id"]
    # The trigger runs in the triggerer; here its event is awaited inline. The worker has nothing
    # left to do, so on Airflow 3.2+ the trigger ends the task with the result as its return value.
    event = asyncio.run(_first_event(deferred.value.trigger))
    resumed = single("never called on resume", deferrable=True)  # a fresh instance, as in a new process
    resume = getattr(resumed, deferred.value.method_name)
    if not AIRFLOW_ENDS_TASKS_FROM_TRIGGERS:
        # Below 3.2 the trigger only reports; the worker resumes with its event and the resume kwargs.
        assert not isinstance(event, TaskSuccessEvent)
        result = resume(task_context(ctx["ti"]), event=event.payload, **(deferred.value.kwargs or {}))
        assert result["kie_task_id"] == kie_task_id
        assert result["status"] == "SUCCESS"
        assert requests_to(emulator, "generate") == 1
        return
    assert isinstance(event, TaskSuccessEvent) and event.xcoms is not None
    ended = event.xcoms["return_value"]
    assert ended["kie_task_id"] == kie_task_id
    assert ended["status"] == "SUCCESS"
    # dag.test() resumes anyway, with the event's bare payload: the resume reads the finished
    # task again and returns the same result.
    result = resume(task_context(ctx["ti"]), event=event.payload)
    # What only the create report knows (what creating cost, the catalog's price estimate) does
    # not survive dag.test()'s bare resume; every field kie reported does.
    from_the_create_report = {"create_stats", "credits", "credits_estimated"}
    assert {k: v for k, v in result.items() if k not in from_the_create_report} == {
        k: v for k, v in ended.items() if k not in from_the_create_report
    }
    assert requests_to(emulator, "generate") == 1


async def _first_event(trigger: Any) -> Any:
    async for event in trigger.run():
        return event
    raise AssertionError("the trigger yielded nothing")


def test_a_batch_takes_prompts_and_request_dicts(emulator: EmulatorServer) -> None:
    results = batch(["a mug", {"prompt": "a lamp", "aspect_ratio": "9:16"}]).execute(task_context())
    assert [(r["prompt"], r["aspect_ratio"]) for r in results] == [("a mug", None), ("a lamp", "9:16")]
    assert requests_to(emulator, "generate") == 2


def test_a_function_may_return_a_market_request(emulator: EmulatorServer) -> None:
    op = single(
        lambda product: {
            "model": "flux-2/pro-text-to-image",
            "input": {"prompt": f"studio photo of a {product}", "aspect_ratio": "1:1", "resolution": "1K"},
        },
        deferrable=False,
    )
    result = op.execute(task_context())
    assert (result["api"], result["model"], result["prompt"]) == (
        "market",
        "flux-2/pro-text-to-image",
        "studio photo of a mug",
    )
    assert requests_to(emulator, "jobs-create") == 1 and requests_to(emulator, "generate") == 0


def test_a_bad_returned_market_input_is_refused_before_anything_is_sent(emulator: EmulatorServer) -> None:
    op = single({"model": "z-image", "input": {"prompt": "a mug", "aspect_ratio": "2:1"}}, deferrable=False)
    with pytest.raises(exc.KontextValidationError) as raised:
        op.execute(task_context())
    assert raised.value.field == "input.aspect_ratio"
    assert sum(emulator.stats()["requests"].values()) == 0


def test_a_batch_function_may_return_market_requests(emulator: EmulatorServer) -> None:
    results = batch(
        [{"model": "z-image", "input": {"prompt": p, "aspect_ratio": "1:1"}} for p in ("a mug", "a lamp")],
        deferrable=False,
    ).execute(task_context())
    assert [(r["model"], r["prompt"]) for r in results] == [("z-image", "a mug"), ("z-image", "a lamp")]


def test_a_returned_market_request_without_a_prompt_field_is_sent_as_given(emulator: EmulatorServer) -> None:
    """Upscalers and background removers take no prompt: none may be added to their input."""
    op = single({"model": "recraft/remove-background", "input": {"image": "https://x.test/a.png"}}, deferrable=False)
    result = op.execute(task_context())
    assert (result["status"], result["model"]) == ("SUCCESS", "recraft/remove-background")
    assert requests_to(emulator, "jobs-create") == 1
