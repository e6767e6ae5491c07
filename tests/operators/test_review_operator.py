"""KontextReviewOperator's own logic: what is offered, what an answer approves, what the reviewer reads.

The human-in-the-loop round trip itself (the form, the REST answer, the resume) runs against a
real api-server in tests/e2e/test_review_hitl.py. The helpers below are plain Python and run on
every Airflow; the operator itself needs 3.1 (human-in-the-loop).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import airflow
import pytest

from airflow_provider_kontext._compat import AIRFLOW_V_3_1_PLUS
from airflow_provider_kontext._ui.items import image_address, item_from_record, items_from_value
from airflow_provider_kontext._ui.render import render_page
from airflow_provider_kontext._ui.store import TaskImages
from airflow_provider_kontext.exceptions import KontextAirflowVersionError, KontextValidationError
from airflow_provider_kontext.operators.review import (
    NONE_OF_THESE,
    REJECT_ALL,
    KontextReviewOperator,
    approved_images,
    flatten_results,
    keep_images,
    review_body,
    review_options,
)
from airflow_provider_kontext.results import REVIEW_ITEMS_KEY
from reliability.fake_airflow import FakeTaskInstance, task_context


def result(n: int, **overrides: Any) -> dict[str, Any]:
    return {
        "kie_task_id": f"kie-{n}",
        "status": "SUCCESS",
        "result_image_url": f"https://tempfile.example/{n}.png",
        "prompt": f"variant {n}",
        "aspect_ratio": "1:1",
        **overrides,
    }


FAILED = result(9, status="GENERATE_FAILED", result_image_url=None, error_code=400, error_message="flagged")


def market(n: int, images: int = 3, **overrides: Any) -> dict[str, Any]:
    """A Market result with ``images`` images, each stored, as the core returns it."""
    urls = [f"https://tempfile.example/{n}-{i}.png" for i in range(images)]
    paths = [f"file:///data/{n}-{i}.png" for i in range(images)]
    fields: dict[str, Any] = {
        "api": "market",
        "model": "bytedance/seedream-v4-text-to-image",
        "result_image_url": urls[0],
        "result_image_urls": urls,
        "stored_path": paths[0],
        "stored_paths": paths,
        "credits": 19.5,
        "credits_estimated": False,
    }
    return result(n, **{**fields, **overrides})


def items(records: list[dict[str, Any]]) -> list[Any]:
    return [item_from_record(index, record) for index, record in enumerate(records)]


def test_results_of_every_kontext_task_shape_flatten_in_order() -> None:
    assert flatten_results(result(1)) == [result(1)]
    assert flatten_results([result(1), None, result(2)]) == [result(1), result(2)]
    mapped_batches = [[result(1), result(2)], [result(3)]]
    assert [r["kie_task_id"] for r in flatten_results(mapped_batches)] == ["kie-1", "kie-2", "kie-3"]
    assert flatten_results(iter([result(1)])) == [result(1)]  # a lazy XCom sequence iterates


@pytest.mark.parametrize("bad", ["kie-1", ["kie-1"], [{"a": 1}], 3, [[result(1), "x"]]])
def test_anything_but_result_dicts_is_refused_before_anyone_is_asked(bad: Any) -> None:
    with pytest.raises(KontextValidationError) as info:
        flatten_results(bad)
    assert info.value.field == "results"


def test_one_option_per_image_failed_ones_are_not_offered() -> None:
    offered = items([result(1), FAILED, result(3)])
    assert review_options(offered, "each") == ["Image 1", "Image 3", REJECT_ALL]
    assert review_options(offered, "one") == ["Image 1", "Image 3", NONE_OF_THESE]


def test_an_answer_approves_exactly_the_chosen_images() -> None:
    three = items([result(1), result(2), result(3)])
    assert approved_images(["Image 3", "Image 1"], three, "each") == {0: [0], 2: [0]}
    assert approved_images([REJECT_ALL], three, "each") == {}
    assert approved_images(["Image 2", REJECT_ALL], three, "each") == {}, "reject wins over a mixed answer"
    assert approved_images(["Image 2"], items([result(1), result(2)]), "one") == {1: [0]}
    assert approved_images([NONE_OF_THESE], items([result(1)]), "one") == {}
    with pytest.raises(KontextValidationError):
        approved_images(["Image 7"], three, "each")


def test_every_image_of_a_task_with_several_is_its_own_option() -> None:
    offered = items([result(1), market(2), FAILED])
    assert review_options(offered, "each") == ["Image 1", "Image 2.1", "Image 2.2", "Image 2.3", REJECT_ALL]
    assert review_options(offered, "one")[-1] == NONE_OF_THESE
    # An image without a picture (here a URL that is no http(s) URL, and no copy) is not offered.
    odd = market(2, stored_path=None, stored_paths=None)
    odd["result_image_urls"][1] = "javascript:alert(1)"
    assert review_options(items([odd]), "each") == ["Image 1.1", "Image 1.3", REJECT_ALL]


def test_an_answer_maps_back_to_the_images_it_named() -> None:
    offered = items([result(1), market(2), market(3, images=2)])
    chosen = ["Image 3.2", "Image 2.3", "Image 2.1"]
    assert approved_images(chosen, offered, "each") == {1: [0, 2], 2: [1]}
    assert approved_images(["Image 2.2"], offered, "one") == {1: [1]}
    with pytest.raises(KontextValidationError):
        approved_images(["Image 2"], offered, "each")  # item 2 has several: only its images are options
    with pytest.raises(KontextValidationError):
        approved_images(["Image 2.4"], offered, "each")


def test_an_approved_result_keeps_only_its_approved_images() -> None:
    record = market(2)
    two = keep_images(record, [0, 2])
    assert two["result_image_urls"] == ["https://tempfile.example/2-0.png", "https://tempfile.example/2-2.png"]
    assert two["result_image_url"] == "https://tempfile.example/2-0.png"
    assert (two["stored_path"], two["stored_paths"]) == (
        "file:///data/2-0.png",
        ["file:///data/2-0.png", "file:///data/2-2.png"],
    )
    one = keep_images(record, [1])
    assert one["result_image_urls"] == ["https://tempfile.example/2-1.png"]
    assert one["result_image_url"] == "https://tempfile.example/2-1.png"
    assert one["stored_path"] == "file:///data/2-1.png" and "stored_paths" not in one
    assert one["credits"] == record["credits"], "a rejected image was paid for all the same"
    assert keep_images(record, [0, 1, 2]) == record
    assert keep_images(result(1), [0]) == result(1), "a one-image result goes on as it was"


def test_the_body_shows_each_image_and_escapes_what_the_results_say() -> None:
    records = [result(1), result(2, stored_path="file:///data/2.png", prompt="*bold* [x](javascript:y)"), FAILED]
    body = review_body(
        items(records),
        intro="Check the logo.",
        choose="one",
        image_url=lambda item, image: f"/kontext/image?index={image_address(item, image)}",
        view_url="/kontext/ti?dag_id=d",
    )
    assert body.startswith("Check the logo.\n")
    assert "**2 images to review.** Pick the one image to use" in body
    assert "![Image 1](https://tempfile.example/1.png)" in body
    assert "![Image 2](/kontext/image?index=1)" in body  # the stored copy, through the images view
    assert "[Open them full size in the Kontext images view](/kontext/ti?dag_id=d)" in body
    assert r"\*bold\* \[x\]\(javascript:y\)" in body
    assert "](javascript:" not in body
    assert "Result 3: KontextContentPolicyError" in body
    assert "kie task id `kie-1`" in body


def test_the_body_shows_every_image_of_a_task_with_several_and_what_they_cost() -> None:
    body = review_body(
        items([result(1, credits=5.0, credits_estimated=True), market(2, stored_paths=None, stored_path=None)]),
        intro=None,
        choose="each",
        image_url=lambda item, image: f"/kontext/image?index={image_address(item, image)}",
        view_url="/kontext/ti",
    )
    assert "**4 images to review.**" in body
    assert "They cost 24.5 credits (5 estimated)." in body
    assert "#### Image 1\n![Image 1](https://tempfile.example/1.png)" in body
    assert "#### Images 2.1 to 2.3" in body
    for i in range(3):
        assert f"**Image 2.{i + 1}**\n![Image 2.{i + 1}](https://tempfile.example/2-{i}.png)" in body
    assert "≈ 5 credits (estimated)" in body and "· 19.5 credits" in body
    stored = review_body(
        items([market(1)]),
        intro=None,
        choose="each",
        image_url=lambda item, image: f"/i?index={image_address(item, image)}",
        view_url="/v",
    )
    assert re.findall(r"\]\((/i\?index=[^)]+)\)", stored) == ["/i?index=0.0", "/i?index=0.1", "/i?index=0.2"]


def test_below_airflow_3_1_constructing_it_raises_the_typed_error() -> None:
    """Documented: no human-in-the-loop before Airflow 3.1; the DAG fails to parse, saying why."""
    if AIRFLOW_V_3_1_PLUS:
        assert isinstance(KontextReviewOperator(task_id="r", results=[]), KontextReviewOperator)
        return
    for build in (
        lambda: KontextReviewOperator(task_id="r", results=[result(1)]),
        lambda: KontextReviewOperator.partial(task_id="r"),
    ):
        with pytest.raises(KontextAirflowVersionError) as info:
            build()
        assert str(info.value).startswith("KontextReviewOperator needs Airflow 3.1 or newer (human-in-the-loop")
        assert (info.value.minimum_airflow, info.value.airflow_version) == ("3.1", airflow.__version__)


def test_defaults_are_airflows_and_checked_for_their_form_at_parse_time() -> None:
    if not AIRFLOW_V_3_1_PLUS:  # nothing to construct (the test above)
        with pytest.raises(KontextAirflowVersionError):
            KontextReviewOperator(task_id="r", results=[result(1)], defaults=REJECT_ALL)
        return
    op = KontextReviewOperator(
        task_id="r", results=[result(1)], defaults=REJECT_ALL, response_timeout=timedelta(hours=1)
    )
    assert (op.defaults, op.multiple, op.response_timeout) == ([REJECT_ALL], True, timedelta(hours=1))
    assert KontextReviewOperator(task_id="r2", results=[], choose="one", defaults="Image 2").defaults == ["Image 2"]
    assert KontextReviewOperator(task_id="r7", results=[], defaults=["Image 2.3", "Image 4"]).defaults == [
        "Image 2.3",
        "Image 4",
    ]
    for bad in ("Image 2.0", "Image 0", "Image 2.", "Image 2.1.1"):
        with pytest.raises(KontextValidationError):
            KontextReviewOperator(task_id="r8", results=[], defaults=bad)
    with pytest.raises(KontextValidationError):
        KontextReviewOperator(task_id="r3", results=[], defaults="Approve")
    with pytest.raises(KontextValidationError):
        KontextReviewOperator(task_id="r4", results=[], choose="one", defaults=["Image 1", "Image 2"])
    with pytest.raises(KontextValidationError):
        KontextReviewOperator(task_id="r5", results=[], choose="best")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="options"):
        KontextReviewOperator(task_id="r6", results=[], options=["a"])


def answer(*chosen: str) -> dict[str, Any]:
    """The event a review resumes with once answered, as Airflow sends it."""
    return {
        "chosen_options": list(chosen),
        "params_input": {},
        "responded_at": datetime(2026, 12, 1, tzinfo=UTC),
        "responded_by_user": {"id": "rita", "name": "rita"},
    }


@pytest.mark.skipif(not AIRFLOW_V_3_1_PLUS, reason="no human-in-the-loop before Airflow 3.1")
def test_a_review_of_several_images_returns_and_records_the_approved_ones_only() -> None:
    records = [result(1), market(2), FAILED]
    op = KontextReviewOperator(task_id="review", results=records)
    ti = FakeTaskInstance(task_id="review")
    returned = op.execute_complete(task_context(ti), answer("Image 2.1", "Image 2.3"))

    assert len(returned) == 1, "Image 1 was not chosen: its result does not go on"
    (kept,) = returned
    assert kept["kie_task_id"] == "kie-2"
    assert kept["result_image_urls"] == ["https://tempfile.example/2-0.png", "https://tempfile.example/2-2.png"]
    assert kept["stored_paths"] == ["file:///data/2-0.png", "file:///data/2-2.png"]
    assert "https://tempfile.example/2-1.png" not in repr(returned) and "2-1.png" not in repr(returned)

    decided = ti.xcom[REVIEW_ITEMS_KEY]
    assert [r["review"] for r in decided] == ["rejected", "approved", "not offered"]
    assert decided[1]["reviews"] == ["approved", "rejected", "approved"]
    assert "reviews" not in decided[0] and "reviews" not in decided[2]
    assert decided[1]["result_image_urls"] == records[1]["result_image_urls"], "the full list keeps every image"

    # The images view of the review shows each image's decision.
    group = TaskImages(task_id="review", map_index=-1, state="success", items=items_from_value(decided) or [])
    page = render_page(dag_id="d", run_id="r", task_id="review", groups=[group])
    pictures = re.findall(r'<div class="pic"[^>]*>(.*?)</div>', page)
    decisions = [re.findall(r'class="badge r-(\w+)"', picture) for picture in pictures]
    assert decisions == [[], ["approved"], ["rejected"], ["approved"]]  # a one-image task's is on its card


@pytest.mark.skipif(not AIRFLOW_V_3_1_PLUS, reason="no human-in-the-loop before Airflow 3.1")
def test_picking_one_variant_among_several_tasks_images() -> None:
    op = KontextReviewOperator(task_id="review", results=[market(1, images=2), market(2)], choose="one")
    ti = FakeTaskInstance(task_id="review")
    (kept,) = op.execute_complete(task_context(ti), answer("Image 2.2"))
    assert (kept["kie_task_id"], kept["result_image_urls"], kept["stored_path"]) == (
        "kie-2",
        ["https://tempfile.example/2-1.png"],
        "file:///data/2-1.png",
    )
    assert "stored_paths" not in kept
    assert [r["review"] for r in ti.xcom[REVIEW_ITEMS_KEY]] == ["rejected", "approved"]
    nothing = op.execute_complete(task_context(ti), answer(NONE_OF_THESE))
    assert nothing == []
    assert ti.xcom[REVIEW_ITEMS_KEY][1]["reviews"] == ["rejected"] * 3
