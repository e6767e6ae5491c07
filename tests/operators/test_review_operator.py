"""KontextReviewOperator's own logic: what is offered, what an answer approves, what the reviewer reads.

The human-in-the-loop round trip itself (the form, the REST answer, the resume) runs against a
real api-server in tests/e2e/test_review_hitl.py. The helpers below are plain Python and run on
every Airflow; the operator itself needs 3.1 (human-in-the-loop).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import airflow
import pytest

from airflow_provider_kontext._compat import AIRFLOW_V_3_1_PLUS
from airflow_provider_kontext._ui.items import item_from_record
from airflow_provider_kontext.exceptions import KontextAirflowVersionError, KontextValidationError
from airflow_provider_kontext.operators.review import (
    NONE_OF_THESE,
    REJECT_ALL,
    KontextReviewOperator,
    approved_indexes,
    flatten_results,
    review_body,
    review_options,
)


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
    options = ["Image 1", "Image 2", "Image 3", REJECT_ALL]
    assert approved_indexes(["Image 3", "Image 1"], options, "each") == [0, 2]
    assert approved_indexes([REJECT_ALL], options, "each") == []
    assert approved_indexes(["Image 2", REJECT_ALL], options, "each") == [], "reject wins over a mixed answer"
    assert approved_indexes(["Image 2"], ["Image 1", "Image 2", NONE_OF_THESE], "one") == [1]
    assert approved_indexes([NONE_OF_THESE], ["Image 1", NONE_OF_THESE], "one") == []
    with pytest.raises(KontextValidationError):
        approved_indexes(["Image 7"], options, "each")


def test_the_body_shows_each_image_and_escapes_what_the_results_say() -> None:
    records = [result(1), result(2, stored_path="file:///data/2.png", prompt="*bold* [x](javascript:y)"), FAILED]
    body = review_body(
        items(records),
        intro="Check the logo.",
        choose="one",
        image_url=lambda item: f"/kontext/image?index={item.index}",
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
    with pytest.raises(KontextValidationError):
        KontextReviewOperator(task_id="r3", results=[], defaults="Approve")
    with pytest.raises(KontextValidationError):
        KontextReviewOperator(task_id="r4", results=[], choose="one", defaults=["Image 1", "Image 2"])
    with pytest.raises(KontextValidationError):
        KontextReviewOperator(task_id="r5", results=[], choose="best")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="options"):
        KontextReviewOperator(task_id="r6", results=[], options=["a"])
