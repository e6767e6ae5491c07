"""What a task instance's XCom says about its images, and where each picture may come from."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from airflow_provider_kontext._protocol.record import ApiFamily
from airflow_provider_kontext._ui.items import (
    Source,
    find_picture,
    format_credits,
    image_address,
    image_number,
    items_from_value,
    parse_index,
    spend,
)
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


def market(n: int = 3, **overrides: Any) -> dict[str, Any]:
    """A Market result as the core returns it: ``n`` images, each stored, kie's reported credits."""
    urls = [f"https://tempfile.example/m-{i}.png" for i in range(n)]
    paths = [f"file:///data/run/m-{i}.png" for i in range(n)]
    fields: dict[str, Any] = {
        "kie_task_id": "kie-m",
        "api": "market",
        "model": "bytedance/seedream-v4-text-to-image",
        "aspect_ratio": None,
        "result_image_url": urls[0],
        "result_image_urls": urls,
        "stored_path": paths[0],
        **({"stored_paths": paths} if n > 1 else {}),
        "credits": 15.0,
        "credits_estimated": False,
    }
    return record(**{**fields, **overrides})


def test_a_market_result_is_one_item_with_a_picture_per_image_in_kies_order() -> None:
    (item,) = items_from_value(market()) or []
    assert (item.api, item.model, item.credits, item.credits_estimated) == (
        ApiFamily.MARKET,
        "bytedance/seedream-v4-text-to-image",
        15.0,
        False,
    )
    assert [(p.stored_path, p.result_image_url) for p in item.pictures] == [
        (f"file:///data/run/m-{i}.png", f"https://tempfile.example/m-{i}.png") for i in range(3)
    ]
    assert (item.stored_path, item.result_image_url) == ("file:///data/run/m-0.png", "https://tempfile.example/m-0.png")
    assert item.several and item.offered() == [0, 1, 2]
    assert [image_address(item, i) for i in range(3)] == ["0.0", "0.1", "0.2"]
    assert [image_number(item, i) for i in range(3)] == ["1.1", "1.2", "1.3"]


def test_a_result_from_before_the_market_reads_as_one_flux_kontext_image() -> None:
    (item,) = items_from_value(record(stored_path="/data/a.png")) or []
    assert item.api is ApiFamily.KONTEXT  # no ``api``: Flux Kontext, as the core reads old records
    assert (item.credits, item.credits_estimated, item.several) == (None, False, False)
    assert [(p.stored_path, p.result_image_url) for p in item.pictures] == [
        ("/data/a.png", "https://tempfile.example/kie-1.png")
    ]
    assert (image_address(item, 0), image_number(item, 0)) == ("0", "1")


def test_a_refused_url_keeps_its_position_so_no_address_shifts_to_another_image() -> None:
    urls = ["https://tempfile.example/0.png", "javascript:alert(1)", "https://tempfile.example/2.png"]
    (item,) = items_from_value(record(result_image_url=urls[0], result_image_urls=urls)) or []
    assert [p.result_image_url for p in item.pictures] == [urls[0], None, urls[2]]
    assert item.offered() == [0, 2]
    assert [item.source(NOW, image=i) for i in range(4)] == [Source.KIE, Source.NONE, Source.KIE, Source.NONE]
    assert find_picture([item], "0.2").result_image_url == urls[2]


def test_a_failed_task_has_no_pictures_even_if_it_lists_urls() -> None:
    (item,) = items_from_value(market(status="GENERATE_FAILED", stored_path=None, stored_paths=None)) or []
    assert item.pictures == () and item.offered() == [] and not item.reviewable


def test_each_image_of_several_carries_its_own_review_decision() -> None:
    (item,) = items_from_value(market(review="approved", reviews=["approved", "rejected", "approved"])) or []
    assert item.review == "approved"
    assert [p.review for p in item.pictures] == ["approved", "rejected", "approved"]
    (wrong_length,) = items_from_value(market(review="approved", reviews=["approved"])) or []
    assert [p.review for p in wrong_length.pictures] == [None, None, None]
    (single,) = items_from_value(record(review="rejected")) or []
    assert [p.review for p in single.pictures] == ["rejected"]


def test_an_address_names_an_item_and_one_of_its_images_and_nothing_past_them() -> None:
    items = items_from_value([market(), record(kie_task_id="kie-2", stored_path="/data/k.png")]) or []
    assert find_picture(items, "0").stored_path == "file:///data/run/m-0.png"  # the first image
    assert find_picture(items, "0.2").stored_path == "file:///data/run/m-2.png"
    assert find_picture(items, "1").stored_path == "/data/k.png"
    for raw in ("0.3", "1.1", "2", "2.0", "0.", ".1", "0.1.0", "0.-1", "0.1e0", "0. 1", "0.٣", "0.1/../2", "0,1"):
        with pytest.raises(KontextValidationError) as info:
            find_picture(items, raw)
        assert info.value.field == "index", raw
    failed = items_from_value(record(status="GENERATE_FAILED", error_message="boom")) or []
    with pytest.raises(KontextValidationError):
        find_picture(failed, "0")


def test_spend_counts_each_kie_task_once_and_prefers_kies_figure_to_an_estimate() -> None:
    generated = items_from_value([market(), record(kie_task_id="kie-k", credits=5.0, credits_estimated=True)]) or []
    # The same two tasks again in a review's list, the Kontext one now with kie's own figure.
    reviewed = items_from_value([market(), record(kie_task_id="kie-k", credits=4.0, credits_estimated=False)]) or []
    total = spend([*generated, *reviewed])
    assert total is not None
    assert (total.credits, total.estimated, total.tasks) == (19.0, 0.0, 2)
    estimated = spend(generated)
    assert estimated is not None and (estimated.credits, estimated.estimated) == (20.0, 5.0)
    assert spend(items_from_value(record()) or []) is None  # old results say nothing: no total


@pytest.mark.parametrize("value", [-1, float("nan"), float("inf"), "5", True, None, [5]])
def test_a_credits_value_that_is_no_cost_is_not_shown_as_one(value: Any) -> None:
    (item,) = items_from_value(record(credits=value, credits_estimated=True)) or []
    assert (item.credits, item.credits_estimated) == (None, False)


def test_credits_read_as_kies_pricing_pages_write_them() -> None:
    values = (15.0, 7.5, 0.0, 10.0, 1250.0, 2.25)
    assert [format_credits(value) for value in values] == ["15", "7.5", "0", "10", "1,250", "2.25"]
