"""What a task instance's XCom says about its images, and where each picture may come from."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from airflow_provider_kontext._ui.items import Source, items_from_value, parse_index
from airflow_provider_kontext._ui.store import choose_items
from airflow_provider_kontext.exceptions import KontextValidationError

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def record(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "kie_task_id": "kie-1",
        "status": "SUCCESS",
        "result_image_url": "https://tempfile.example/kie-1.png",
        "origin_image_url": None,
        "error_code": None,
        "error_message": None,
        "create_time": (NOW - timedelta(days=1)).isoformat(),
        "complete_time": (NOW - timedelta(days=1)).isoformat(),
        "prompt": "a red kite",
        "model": "flux-kontext-pro",
        "aspect_ratio": "16:9",
        "output_format": "png",
        "input_image": None,
    }
    return {**base, **overrides}


def test_a_generate_result_is_one_item_shown_from_kie_while_kie_keeps_it() -> None:
    (item,) = items_from_value(record()) or []
    assert (item.index, item.kie_task_id, item.prompt, item.model, item.aspect_ratio) == (
        0,
        "kie-1",
        "a red kite",
        "flux-kontext-pro",
        "16:9",
    )
    assert item.source(NOW) is Source.KIE
    assert item.expires_at == NOW + timedelta(days=13)
    assert item.reviewable


def test_past_kies_14_days_an_unstored_image_is_expired_and_a_stored_one_is_not() -> None:
    old = (NOW - timedelta(days=14, seconds=1)).isoformat()
    (expired,) = items_from_value(record(create_time=old, complete_time=old)) or []
    assert expired.source(NOW) is Source.EXPIRED
    (stored,) = items_from_value(record(create_time=old, complete_time=old, stored_path="file:///data/a.png")) or []
    assert stored.source(NOW) is Source.STORED


def test_epoch_millisecond_times_count_for_expiry_too() -> None:
    millis = int((NOW - timedelta(days=20)).timestamp() * 1000)
    (item,) = items_from_value(record(create_time=millis, complete_time=None)) or []
    assert item.source(NOW) is Source.EXPIRED


def test_a_batch_keeps_request_order_and_names_each_failure_by_its_typed_error() -> None:
    value = [
        record(),
        record(
            kie_task_id="kie-2",
            status="GENERATE_FAILED",
            result_image_url=None,
            error_code=400,
            error_message="flagged by moderation",
        ),
        {
            **dict.fromkeys(record()),
            "status": "NOT_CREATED",
            "prompt": "p",
            "error_class": "KontextRateLimitError",
            "error_message": "429 past the retries",
        },
        None,
    ]
    items = items_from_value(value) or []
    assert [item.index for item in items] == [0, 1, 2, 3]
    assert [item.status for item in items] == ["SUCCESS", "GENERATE_FAILED", "NOT_CREATED", "NOT_CREATED"]
    assert items[1].error is not None and items[1].error.startswith("KontextContentPolicyError: ")
    assert items[2].error == "KontextRateLimitError: 429 past the retries"
    assert [item.source(NOW) for item in items] == [Source.KIE, Source.NONE, Source.NONE, Source.NONE]
    assert [item.reviewable for item in items] == [True, False, False, False]


def test_a_failed_record_never_shows_its_url_and_create_stats_are_kept() -> None:
    (item,) = (
        items_from_value(record(status="GENERATE_FAILED", error_message="boom", create_stats={"waited": 1.5})) or []
    )
    assert item.result_image_url is None
    assert item.error is not None and item.error.startswith("KontextGenerationFailedError")
    assert item.create_stats == {"waited": 1.5}


@pytest.mark.parametrize(
    "value",
    [None, "manual__2026", 42, {"a": 1}, [], [None], ["kie-1"], [{"a": 1}], [record(), "x"], {"kie_task_id": "k"}],
)
def test_values_that_are_not_kontext_results_show_nothing(value: Any) -> None:
    assert items_from_value(value) is None


def test_ids_count_only_under_the_keys_the_operators_push_them_to() -> None:
    assert items_from_value("kie-9") is None
    (item,) = items_from_value("kie-9", ids_allowed=True) or []
    assert (item.kie_task_id, item.status, item.source(NOW)) == ("kie-9", "SUBMITTED", Source.NONE)
    items = items_from_value(["kie-1", None], ids_allowed=True) or []
    assert [item.status for item in items] == ["SUBMITTED", "NOT_CREATED"]


@pytest.mark.parametrize(
    ("stored_path", "url", "expected"),
    [
        ("file:///data/a.png", None, "file:///data/a.png"),
        ("/data/a.png", None, "/data/a.png"),
        ("s3://bucket/a.png", None, "s3://bucket/a.png"),
        ("http://169.254.169.254/latest", None, None),
        ("relative/a.png", None, None),
        ("file:///data/\na.png", None, None),
    ],
)
def test_only_storage_uris_and_absolute_paths_count_as_stored_copies(
    stored_path: str, url: str | None, expected: str | None
) -> None:
    (item,) = items_from_value(record(stored_path=stored_path)) or []
    assert item.stored_path == expected


@pytest.mark.parametrize(
    "url", ["javascript:alert(1)", "file:///etc/passwd", "data:image/png;base64,AAAA", "//evil/x", "https://a b/c"]
)
def test_a_result_url_that_is_not_plain_http_shows_no_picture(url: str) -> None:
    (item,) = items_from_value(record(result_image_url=url)) or []
    assert item.result_image_url is None
    assert item.source(NOW) is Source.NONE


@pytest.mark.parametrize(
    "raw",
    [
        "../../etc/passwd",
        "..%2F..%2Fetc%2Fpasswd",
        "/etc/passwd",
        "file:///etc/passwd",
        "https://evil.example/x.png",
        "kie-1",
        "-1",
        "1e3",
        " 1",
        "٣",  # an Arabic-Indic digit: isdigit() says yes, int() would accept it
        "9999999",
        "",
        "3",
    ],
)
def test_an_image_is_named_by_a_small_index_into_this_task_instances_results_and_nothing_else(raw: str) -> None:
    with pytest.raises(KontextValidationError) as info:
        parse_index(raw, count=3)
    assert info.value.field == "index"


def test_a_valid_index_passes() -> None:
    assert [parse_index(raw, count=3) for raw in ("0", "1", "2", "002")] == [0, 1, 2, 2]


def test_a_review_list_wins_over_the_return_value_and_ids_fill_in_while_waiting() -> None:
    reviewed = [record(review="approved"), record(kie_task_id="kie-2", review="rejected")]
    items = choose_items([("return_value", [record()]), ("kontext_review_items", reviewed)]) or []
    assert [item.review for item in items] == ["approved", "rejected"]
    waiting = choose_items([("kie_task_ids", ["kie-1", "kie-2"]), ("kie_task_id", "kie-1")]) or []
    assert [item.kie_task_id for item in waiting] == ["kie-1", "kie-2"]
    assert choose_items([("return_value", "just a string")]) is None
    ids_only = choose_items([("return_value", "kie-7"), ("kie_task_id", "kie-7")]) or []
    assert [item.kie_task_id for item in ids_only] == ["kie-7"]
