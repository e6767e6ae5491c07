"""The server-rendered page and the stored-copy reader: escaping, sources, and what is refused."""

from __future__ import annotations

import base64
import hashlib
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_kontext._ui.files import open_stored_image, sniff_image_type
from airflow_provider_kontext._ui.items import items_from_value
from airflow_provider_kontext._ui.render import PAGE_CSP, render_page
from airflow_provider_kontext._ui.store import TaskImages
from airflow_provider_kontext.exceptions import KontextValidationError

NOW = datetime(2026, 12, 1, tzinfo=UTC)
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64


def group(values: Any, *, task_id: str = "generate", map_index: int = -1, state: str = "success") -> TaskImages:
    return TaskImages(task_id=task_id, map_index=map_index, state=state, items=items_from_value(values) or [])


def result(**overrides: Any) -> dict[str, Any]:
    base = {
        "kie_task_id": "kie-1",
        "status": "SUCCESS",
        "result_image_url": "https://tempfile.example/kie-1.png",
        "create_time": (NOW - timedelta(hours=1)).isoformat(),
        "prompt": "a kite",
        "model": "flux-kontext-max",
        "aspect_ratio": "1:1",
    }
    return {**base, **overrides}


def page(*groups: TaskImages, run_id: str = "manual__2026-12-01T00:00:00+00:00") -> str:
    return render_page(dag_id="d", run_id=run_id, task_id=None, groups=groups, now=NOW)


def test_a_stored_copy_is_linked_by_index_and_a_kie_image_by_its_url() -> None:
    html = page(
        group([result(stored_path="file:///data/a.png"), result(kie_task_id="kie-2")], task_id="batch"),
        group(result(kie_task_id="kie-3"), task_id="mapped", map_index=1),
    )
    srcs = re.findall(r'<img src="([^"]+)"', html)
    assert srcs == [
        "image?dag_id=d&amp;run_id=manual__2026-12-01T00%3A00%3A00%2B00%3A00&amp;task_id=batch&amp;map_index=-1&amp;index=0",
        "https://tempfile.example/kie-1.png",
        "https://tempfile.example/kie-1.png",
    ]
    assert "file:///data/a.png" in html  # shown as where the copy is, never as a src
    assert "map index 1" in html
    assert html.count('referrerpolicy="no-referrer"') == 4  # link and image, twice
    assert "3 images in 2 task instances" in html


def test_a_long_stored_location_is_elided_in_the_card_and_whole_on_hover() -> None:
    uri = "s3://bucket/" + "deep/" * 12 + "run_1/batch/-1-kie1-0.png"
    html = page(group(result(stored_path=uri)))
    assert f'<code title="{uri}">s3://…/batch/-1-kie1-0.png</code>' in html


def test_every_value_from_xcom_is_escaped() -> None:
    evil = '<script>alert(1)</script>"onload="x'
    html = page(group(result(prompt=evil, model=evil, kie_task_id=evil, status="GENERATE_FAILED", error_message=evil)))
    assert "<script>alert" not in html
    assert '"onload="x' not in html
    assert "&lt;script&gt;" in html


def test_an_expired_unstored_image_says_so_instead_of_a_broken_picture() -> None:
    old = (NOW - timedelta(days=15)).isoformat()
    html = page(group(result(create_time=old)))
    assert "<img" not in html
    assert "Expired at kie on 2026-11-30" in html
    assert "output_path" in html


def test_failures_show_their_typed_error_and_no_image() -> None:
    html = page(
        group([result(status="GENERATE_FAILED", error_code=400, error_message="flagged", result_image_url=None)])
    )
    assert "<img" not in html
    assert "KontextContentPolicyError" in html
    assert "1 failed or refused" in html


def test_create_stats_and_review_decisions_are_shown() -> None:
    html = page(group([result(create_stats={"attempts": 2, "waited_s": 0.5}, review="approved")]))
    assert "attempts=2, waited_s=0.5" in html
    assert 'r-approved">approved' in html


def test_no_images_says_why() -> None:
    assert "No Kontext images here" in page()


def test_the_page_policy_allows_only_the_one_inline_handler_by_hash() -> None:
    assert "script-src 'unsafe-hashes' 'sha256-" in PAGE_CSP
    assert "'unsafe-inline'" not in PAGE_CSP.split("script-src")[1].split(";")[0]
    assert "frame-ancestors 'self'" in PAGE_CSP


@pytest.mark.parametrize(
    ("head", "expected"),
    [
        (PNG, "image/png"),
        (b"\xff\xd8\xff\xe0" + b"\x00" * 12, "image/jpeg"),
        (b"GIF89a" + b"\x00" * 10, "image/gif"),
        (b"RIFF\x00\x00\x00\x00WEBPVP8 ", "image/webp"),
        (b"root:x:0:0:root:/root:/bin/bash", None),
        (b"<svg xmlns=", None),
        (b"", None),
    ],
)
def test_only_raster_image_bytes_count_as_images(head: bytes, expected: str | None) -> None:
    assert sniff_image_type(head) == expected


def test_a_stored_png_streams_whole_with_its_sniffed_type(tmp_path: Path) -> None:
    path = tmp_path / "named.jpeg"  # the name lies; the bytes decide
    path.write_bytes(PNG * 3000)
    stream = open_stored_image(f"file://{path}")
    assert stream.content_type == "image/png"
    assert stream.size == len(PNG) * 3000
    assert b"".join(stream.chunks) == path.read_bytes()
    assert b"".join(open_stored_image(str(path)).chunks) == path.read_bytes()


@pytest.mark.parametrize("make", ["text", "missing", "directory", "too_big", "proc"])
def test_anything_but_a_small_stored_image_is_refused(tmp_path: Path, make: str) -> None:
    target = tmp_path / "x.png"
    if make == "text":
        target.write_text("root:x:0:0:root:/root:/bin/bash\n")
    elif make == "directory":
        target.mkdir()
    elif make == "too_big":
        target.write_bytes(PNG * 100)
    elif make == "proc":
        target = Path("/proc/self/environ")
    with pytest.raises(KontextValidationError) as info:
        open_stored_image(f"file://{target}", max_bytes=len(PNG) * 10)
    assert info.value.field == "stored_path"


def market(n: int = 3, **overrides: Any) -> dict[str, Any]:
    """A Market result with ``n`` images, kie's URLs only (nothing stored) unless overridden."""
    urls = [f"https://tempfile.example/m-{i}.png" for i in range(n)]
    fields = {
        "kie_task_id": "kie-m",
        "api": "market",
        "model": "google/nano-banana",
        "result_image_url": urls[0],
        "result_image_urls": urls,
        "credits": 12.0,
        "credits_estimated": False,
    }
    return result(**{**fields, **overrides})


def test_every_image_of_a_market_task_is_on_its_card_stored_ones_by_address() -> None:
    stored = {"stored_path": "file:///data/m-0.png", "stored_paths": ["file:///data/m-0.png", None, None]}
    html = page(group(market(**stored), task_id="variants"))
    assert html.count("<figure") == 1, "one card: one kie task"
    srcs = re.findall(r'<img src="([^"]+)"', html)
    assert srcs == [
        "image?dag_id=d&amp;run_id=manual__2026-12-01T00%3A00%3A00%2B00%3A00&amp;task_id=variants&amp;map_index=-1"
        "&amp;index=0.0",
        "https://tempfile.example/m-1.png",
        "https://tempfile.example/m-2.png",
    ]
    assert re.findall(r'alt="([^"]+)"', html) == ["variants #1.1", "variants #1.2", "variants #1.3"]
    assert [m for m in re.findall(r'data-image="(\d)" data-source="(\w+)"', html)] == [
        ("0", "stored"),
        ("1", "kie"),
        ("2", "kie"),
    ]
    assert "<dt>API</dt><dd>Market</dd><dt>Model</dt><dd>google/nano-banana</dd>" in html
    assert "<dt>Images</dt><dd>3</dd>" in html
    assert "1.1: <code" in html and "1.2: not stored" in html
    assert "3 images in 1 task instance" in html


def test_a_broken_kie_image_hides_itself_not_its_siblings() -> None:
    html = page(group(market()))
    assert html.count("onerror=\"this.closest('.pic').classList.add('broken')\"") == 3
    # The handler runs only because the page's policy names its hash.
    digest = base64.b64encode(hashlib.sha256(b"this.closest('.pic').classList.add('broken')").digest()).decode()
    assert f"'sha256-{digest}'" in PAGE_CSP


def test_each_of_several_images_shows_its_review_decision() -> None:
    html = page(group(market(review="approved", reviews=["rejected", "approved", "rejected"])))
    pictures = re.findall(r'<div class="pic"[^>]*>(.*?)</div>', html)
    assert ['r-approved">approved' in p for p in pictures] == [False, True, False]
    assert ['r-rejected">rejected' in p for p in pictures] == [True, False, True]


def test_expired_images_of_a_market_task_each_say_so() -> None:
    old = (NOW - timedelta(days=15)).isoformat()
    html = page(group(market(create_time=old)))
    assert "<img" not in html
    assert html.count("Expired at kie on 2026-11-30, not stored.") == 3


def test_credits_per_card_estimates_marked_and_totals_per_task_and_run() -> None:
    html = page(
        group([market(), result(kie_task_id="kie-k", credits=5.0, credits_estimated=True)], task_id="batch"),
        # A review shows the same tasks again; the run paid for them once.
        group([market(review="approved")], task_id="review"),
    )
    assert "<dt>Credits</dt><dd>12</dd>" in html
    assert '<dt>Credits</dt><dd>≈ 5 <span class="badge est"' in html
    sections = re.findall(r"<h2>(.*?)</h2>", html)
    assert "17 credits" in sections[0] and "(5 estimated)" in sections[0]
    assert "12 credits" in sections[1] and "estimated" not in sections[1]
    summary = re.search(r'<p class="summary">(.*?)</p>', html)
    assert summary is not None
    assert "17 credits" in summary.group(1) and "for 2 kie tasks" in summary.group(1)


def test_a_result_without_the_new_keys_renders_as_before() -> None:
    html = page(group(result(stored_path="file:///data/a.png")))
    assert re.findall(r'<img src="([^"]+)"', html) == [
        "image?dag_id=d&amp;run_id=manual__2026-12-01T00%3A00%3A00%2B00%3A00&amp;task_id=generate&amp;map_index=-1"
        "&amp;index=0"
    ]
    assert "Credits" not in html and "<dt>Images</dt>" not in html and "credits" not in html
    assert "<dt>Model</dt><dd>flux-kontext-max</dd>" in html
    assert "1 image in 1 task instance</p>" in html
