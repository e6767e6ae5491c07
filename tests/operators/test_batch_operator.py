"""KontextBatchGenerateOperator: validate all first, pace creates, one trigger, input order, policies."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from airflow_provider_kontext import exceptions as exc
from airflow_provider_kontext._compat import TaskDeferred
from airflow_provider_kontext.emulator import EmulatorServer
from airflow_provider_kontext.operators.batch import KontextBatchGenerateOperator
from airflow_provider_kontext.operators.generate import KontextGenerateOperator
from reliability.fake_airflow import DictStateStore, task_context
from tests.conftest import requests_to


def batch(requests: list[dict[str, Any]], **kwargs: Any) -> KontextBatchGenerateOperator:
    kwargs.setdefault("poll_interval", 0.1)
    return KontextBatchGenerateOperator(task_id="batch", requests=requests, **kwargs)


def prompts(n: int) -> list[dict[str, Any]]:
    return [{"prompt": f"image {i}", "aspect_ratio": "1:1"} for i in range(n)]


@pytest.mark.parametrize(
    ("requests", "field"),
    [
        ([{"prompt": "ok"}, {"prompt": "ok", "aspect_ratio": "2:1"}], "requests[1].aspect_ratio"),
        ([{"prompt": "ok"}, {"aspect_ratio": "1:1"}], "requests[1].prompt"),
        ([{"prompt": "ok"}, "just a string"], "requests[1]"),
        ([{"prompt": "ok", "imageUrl": "https://x.test/a.png"}], "requests[0].imageUrl"),
        ([], "requests"),
    ],
)
def test_every_item_is_validated_before_anything_is_sent(
    emulator: EmulatorServer, requests: list[Any], field: str
) -> None:
    op = batch([{"prompt": "{{ params.p }}"}])
    op.requests = requests  # as rendered
    with pytest.raises(exc.KontextValidationError) as raised:
        op.execute(task_context())
    assert raised.value.field == field
    assert sum(emulator.stats()["requests"].values()) == 0


def test_static_batches_are_validated_at_parse_time() -> None:
    with pytest.raises(exc.KontextValidationError, match=r"requests\[2\]\.model"):
        batch([{"prompt": "a"}, {"prompt": "b"}, {"prompt": "c", "model": "x"}])


def test_min_credits_refuses_before_any_spend(emulator: EmulatorServer) -> None:
    emulator.configure(credits=12)
    with pytest.raises(exc.KontextInsufficientCreditsError, match="nothing was submitted"):
        batch(prompts(3), min_credits=50).execute(task_context())
    assert requests_to(emulator, "generate") == 0
    with pytest.raises(exc.KontextInsufficientCreditsError):
        KontextGenerateOperator(task_id="one", prompt="x", min_credits=50).execute(task_context())
    assert requests_to(emulator, "generate") == 0


def test_deferred_batch_waits_on_one_trigger_and_returns_input_order(emulator: EmulatorServer) -> None:
    ctx = task_context()
    op = batch(prompts(6), deferrable=True, min_credits=1)
    with pytest.raises(TaskDeferred) as deferred:
        op.execute(ctx)
    ids = ctx["ti"].xcom["kie_task_ids"]
    assert len(ids) == 6
    trigger = deferred.value.trigger
    assert trigger.kie_task_ids == ids

    async def run_trigger() -> dict[str, Any]:
        events = [event async for event in trigger.run()]
        assert len(events) == 1
        return events[0].payload

    event = asyncio.run(run_trigger())
    results = op.execute_complete(ctx, event)
    assert [r["kie_task_id"] for r in results] == ids
    assert [r["prompt"] for r in results] == [f"image {i}" for i in range(6)]
    assert ctx["ti"].xcom["result_image_urls"] == [r["result_image_url"] for r in results]
    assert emulator.stats()["creates_accepted"] == 6


def test_partial_failure_fails_by_default(emulator: EmulatorServer) -> None:
    requests = [*prompts(2), {"prompt": "bad [emulator:content_policy]"}]
    with pytest.raises(exc.KontextContentPolicyError, match="1 of 3"):
        batch(requests, deferrable=False).execute(task_context())


def test_partial_failure_can_return_per_item_status(emulator: EmulatorServer) -> None:
    requests = [{"prompt": "bad [emulator:generate_failed]"}, *prompts(2)]
    ctx = task_context()
    results = batch(requests, deferrable=False, fail_on_any_failure=False).execute(ctx)
    assert [r["status"] for r in results] == ["GENERATE_FAILED", "SUCCESS", "SUCCESS"]
    assert results[0]["error_code"] == 501
    assert ctx["ti"].xcom["result_image_urls"][0] is None


def test_no_wait_returns_ids(emulator: EmulatorServer) -> None:
    ids = batch(prompts(3), wait_for_completion=False).execute(task_context())
    assert len(ids) == 3
    assert requests_to(emulator, "record-info") == 0


def test_a_failed_create_stops_the_batch_and_names_what_was_created(emulator: EmulatorServer) -> None:
    emulator.configure(credits=10)  # two pro images
    ctx = task_context()
    with pytest.raises(exc.KontextInsufficientCreditsError, match="2 task") as raised:
        batch(prompts(4)).execute(ctx)
    pushed = ctx["ti"].xcom["kie_task_ids"]
    assert pushed[2:] == [None, None], "ids stay aligned with the requests"
    created = pushed[:2]
    assert all(task_id in str(raised.value) for task_id in created)
    assert requests_to(emulator, "generate") == 3


def test_a_batch_of_100_keeps_to_the_rate_limit(emulator: EmulatorServer) -> None:
    # kie's 20 creates per 10 s, compressed in time: 20 per 1 s on both sides.
    emulator.configure(rate_limit_creates=20, rate_limit_window_seconds=1.0)
    ctx = task_context()
    started = time.monotonic()
    ids = batch(prompts(100), wait_for_completion=False, rate_window_seconds=1.0).execute(ctx)
    elapsed = time.monotonic() - started
    stats = emulator.stats()
    assert len(ids) == 100
    assert stats["creates_accepted"] == 100
    assert stats["creates_rejected_rate_limit"] == 0
    assert requests_to(emulator, "generate") == 100, "no 429, so no resend"
    assert elapsed >= 4 * 1.0, "100 creates at 20 per window need at least 4 full windows"


def test_a_retry_recreates_only_the_failed_items(emulator: EmulatorServer) -> None:
    store = DictStateStore()
    requests = [*prompts(3), {"prompt": "bad [emulator:generate_failed]"}]
    first = task_context(state_store=store)
    with pytest.raises(exc.KontextGenerationFailedError):
        batch(requests, deferrable=False).execute(first)
    first_ids = first["ti"].xcom["kie_task_ids"]
    assert emulator.stats()["creates_accepted"] == 4

    second = task_context(state_store=store)
    with pytest.raises(exc.KontextGenerationFailedError):
        batch(requests, deferrable=False).execute(second)
    second_ids = second["ti"].xcom["kie_task_ids"]
    assert second_ids[:3] == first_ids[:3], "succeeded images are re-attached, not paid again"
    assert second_ids[3] != first_ids[3], "the failed image is submitted again"
    assert emulator.stats()["creates_accepted"] == 5


def test_a_changed_request_is_not_mistaken_for_the_old_one(emulator: EmulatorServer) -> None:
    store = DictStateStore()
    batch(prompts(2), deferrable=False).execute(task_context(state_store=store))
    changed = [{"prompt": "image 0", "aspect_ratio": "1:1"}, {"prompt": "a new prompt"}]
    batch(changed, deferrable=False).execute(task_context(state_store=store))
    assert emulator.stats()["creates_accepted"] == 3


def test_per_item_mode_goes_on_after_a_failed_create_and_keeps_input_order(emulator: EmulatorServer) -> None:
    """One refused and one lost create must not strand the other images (already paid for)."""
    emulator.inject_fault("generate", "slow", count=1, delay=0)  # request 1 passes, just delayed
    emulator.inject_fault("generate", "code", count=1, code=402)  # request 2 is refused
    emulator.inject_fault("generate", "drop_after_accept", count=1)  # request 3 is created, answer lost
    ctx = task_context()
    op = batch(prompts(5), deferrable=True, fail_on_any_failure=False)
    with pytest.raises(TaskDeferred) as deferred:
        op.execute(ctx)
    assert deferred.value.kwargs is not None
    creates = deferred.value.kwargs["creates"]
    assert [index for index, entry in enumerate(creates) if "not_created" in entry] == [1, 2]
    pushed = ctx["ti"].xcom["kie_task_ids"]
    assert pushed[1:3] == [None, None]

    async def run_trigger() -> dict[str, Any]:
        events = [event async for event in deferred.value.trigger.run()]
        assert len(events) == 1
        return events[0].payload

    resumed = batch(prompts(5), deferrable=True, fail_on_any_failure=False)  # a fresh instance, as on resume
    results = resumed.execute_complete(ctx, asyncio.run(run_trigger()), **deferred.value.kwargs)
    assert [r["prompt"] for r in results] == [f"image {i}" for i in range(5)]
    assert [r["status"] for r in results] == ["SUCCESS", "NOT_CREATED", "NOT_CREATED", "SUCCESS", "SUCCESS"]
    assert results[1]["error_class"] == "KontextInsufficientCreditsError"
    assert results[2]["error_class"] == "KontextSubmissionOutcomeUnknownError"
    assert [r["kie_task_id"] for r in results] == [pushed[0], None, None, pushed[3], pushed[4]]
    assert ctx["ti"].xcom["result_image_urls"][1:3] == [None, None]
    stats = emulator.stats()
    assert stats["requests"]["generate"] == 5, "the lost create was not sent again"
    assert stats["creates_accepted"] == 4


def test_per_item_mode_still_stops_on_a_bad_key(emulator: EmulatorServer) -> None:
    emulator.inject_fault("generate", "code", count=1, code=401)
    with pytest.raises(exc.KontextAuthError):
        batch(prompts(3), deferrable=False, fail_on_any_failure=False).execute(task_context())
    assert requests_to(emulator, "generate") == 1


def test_per_item_mode_with_every_create_failing_reports_every_item(emulator: EmulatorServer) -> None:
    emulator.inject_fault("generate", "code", count=2, code=402)
    results = batch(prompts(2), deferrable=False, fail_on_any_failure=False).execute(task_context())
    assert [r["status"] for r in results] == ["NOT_CREATED", "NOT_CREATED"]
    assert requests_to(emulator, "record-info") == 0


@pytest.mark.parametrize(
    "kwargs",
    [{"max_creates_per_window": 0}, {"rate_window_seconds": 0}, {"max_creates_per_window": 2.5}],
)
def test_a_bad_account_limit_fails_at_construction(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match=r"max_creates_per_window|rate_window_seconds"):
        batch(prompts(1), **kwargs)


# ------------------------------------------------------------------ Market models


def market_requests() -> list[dict[str, Any]]:
    return [
        {"model": "flux-2/pro-text-to-image", "input": {"prompt": "a mug", "aspect_ratio": "1:1", "resolution": "2K"}},
        {"model": "z-image", "input": {"prompt": "a lamp", "aspect_ratio": "1:1"}},
        {"model": "wan/2-7-image", "input": {"prompt": "two kites", "n": 2}},
    ]


def test_a_market_batch_of_several_models_returns_each_tasks_images_and_the_spend(emulator: EmulatorServer) -> None:
    ctx = task_context()
    results = batch(market_requests(), deferrable=False).execute(ctx)
    assert [r["model"] for r in results] == [item["model"] for item in market_requests()]
    assert [len(r["result_image_urls"]) for r in results] == [1, 1, 2]
    assert all(r["api"] == "market" for r in results)
    assert ctx["ti"].xcom["result_image_urls"] == [url for r in results for url in r["result_image_urls"]]
    assert ctx["ti"].xcom["kie_credits"] == sum(r["credits"] for r in results)
    assert [r["credits"] for r in results[:2]] == [7, 0.8]  # kie's reported figures (FLUX.2 pro 2K, Z-Image)
    assert emulator.stats()["creates_accepted_by_api"] == {"kontext": 0, "market": 3}


def test_every_market_item_is_validated_before_anything_is_sent(emulator: EmulatorServer) -> None:
    requests = market_requests()
    requests[2]["input"]["n"] = 9  # Wan 2.7 makes 1 to 4 images (12 only in sequential mode)
    with pytest.raises(exc.KontextValidationError) as raised:
        batch(requests)
    assert raised.value.field == "requests[2].input.n"
    assert sum(emulator.stats()["requests"].values()) == 0


def test_one_batch_is_of_one_api_family() -> None:
    with pytest.raises(exc.KontextValidationError) as raised:
        batch([{"prompt": "a mug"}, market_requests()[1]])
    assert raised.value.field == "requests[1]"


@pytest.mark.parametrize(
    ("max_credits", "sent"),
    [(5, 0), (7 + 0.8 + 2 * 4.8 - 0.01, 0), (7 + 0.8 + 2 * 4.8, 3)],
    ids=["far-over", "just-over", "fits"],
)
def test_max_credits_refuses_a_batch_that_would_cost_more_before_any_create(
    emulator: EmulatorServer, max_credits: float, sent: int
) -> None:
    op = batch(market_requests(), deferrable=False, max_credits=max_credits)
    if not sent:
        with pytest.raises(exc.KontextCostLimitError) as raised:
            op.execute(task_context())
        assert raised.value.estimated_credits == pytest.approx(7 + 0.8 + 2 * 4.8)
    else:
        op.execute(task_context())
    assert emulator.stats()["creates_accepted"] == sent


def test_max_credits_refuses_a_model_whose_price_the_catalog_does_not_know(emulator: EmulatorServer) -> None:
    unpriced = {"model": "bytedance/seedream", "input": {"prompt": "a mug"}}  # Seedream 3.0: no 2026 price
    with pytest.raises(exc.KontextCostLimitError, match="no price"):
        batch([unpriced], max_credits=1000).execute(task_context())
    assert emulator.stats()["creates_accepted"] == 0


def test_a_flux_kontext_batch_is_priced_too(emulator: EmulatorServer) -> None:
    with pytest.raises(exc.KontextCostLimitError):
        batch([{"prompt": "a"}, {"prompt": "b", "model": "flux-kontext-max"}], max_credits=14).execute(task_context())
    results = batch([{"prompt": "a"}, {"prompt": "b", "model": "flux-kontext-max"}], max_credits=15).execute(
        task_context()
    )
    assert [(r["credits"], r["credits_estimated"]) for r in results] == [(5, True), (10, True)]
