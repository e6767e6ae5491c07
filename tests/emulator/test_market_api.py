"""The emulated Market jobs API over real loopback HTTP: kie's answers, lifecycle, billing, limits, faults.

Tasks are made long (``generation_seconds=600``) and ended with ``finish_now``, and the lifecycle
is read off a server whose clock the test moves, so nothing here depends on how fast the machine is.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import io
import json
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest
import requests
from PIL import Image

from airflow_provider_kontext.emulator import EmulatorConfig, EmulatorServer, EmulatorState
from airflow_provider_kontext.emulator.market import MODELS

from .helpers import API_KEY, AUTH, CREDIT, GENERATE, JOBS_CREATE, JOBS_RECORD_INFO, KieClient

if TYPE_CHECKING:
    from .helpers import SideServer

LONG = {"generation_seconds": 600, "record_info_null_seconds": 0}
FLUX2 = {"prompt": "a red fox", "aspect_ratio": "1:1", "resolution": "1K"}


@pytest.fixture
def market(kie: KieClient, emu: EmulatorServer) -> KieClient:
    """A client of an emulator whose tasks run until ``finish_now`` and are visible at once."""
    emu.configure(**LONG)
    return kie


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def clocked() -> Iterator[tuple[EmulatorServer, FakeClock]]:
    """A second server whose clock only the test moves: the lifecycle read at exact instants."""
    clock = FakeClock()
    config = EmulatorConfig(api_key=API_KEY, generation_seconds=10, record_info_null_seconds=0.5)
    with EmulatorServer(config, state=EmulatorState(config, clock=clock)) as server:
        yield server, clock


def decode(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def urls_of(data: dict[str, Any]) -> list[str]:
    assert isinstance(data["resultJson"], str), "resultJson is a JSON string"
    urls: list[str] = json.loads(data["resultJson"])["resultUrls"]
    return urls


# --------------------------------------------------------------------------------- create and poll


def test_happy_path_create_poll_download(market: KieClient, emu: EmulatorServer) -> None:
    values = {"prompt": "a lighthouse", "resolution": "4K", "aspect_ratio": "16:9"}
    body: dict[str, Any] = {"input": values, "callBackUrl": None}
    created = market.create_job("nano-banana-pro", **body)
    assert created["code"] == 200
    assert created["msg"] == "success"
    task_id = created["data"]["taskId"]
    assert re.fullmatch(r"[0-9a-f]{32}", task_id)

    running = market.job_record(task_id)
    assert running["code"] == 200
    data = running["data"]
    assert data["state"] == "waiting"  # the first fifth of a 600 s generation
    assert (data["resultJson"], data["failCode"], data["failMsg"]) == ("", "", "")
    assert data["completeTime"] is None
    assert data["creditsConsumed"] == 0
    assert data["progress"] == 0
    assert isinstance(data["param"], str), "param is a JSON string"
    assert json.loads(data["param"]) == {"model": "nano-banana-pro", **body}

    done = market.finished_job(task_id)
    assert done["state"] == "success"
    assert done["taskId"] == task_id
    assert done["model"] == "nano-banana-pro"
    assert (done["failCode"], done["failMsg"]) == ("", "")
    assert done["progress"] == 100
    assert done["creditsConsumed"] == 24  # 4K nano-banana-pro
    assert all(isinstance(done[name], int) for name in ("createTime", "updateTime", "completeTime", "costTime"))
    assert done["createTime"] <= done["updateTime"] == done["completeTime"]
    assert done["costTime"] == done["completeTime"] - done["createTime"]
    (url,) = urls_of(done)
    assert url.startswith(emu.base_url + "/files/results/")
    image_response = market.get(url)
    assert image_response.status_code == 200
    assert image_response.headers["content-type"] == "image/png"  # nano-banana-pro's default format
    image = decode(image_response.content)
    assert image.format == "PNG"
    assert image.size == (256, 144)
    assert market.get(CREDIT, headers=AUTH).json()["data"] == 1000 - 24


def test_record_info_is_null_while_fresh_and_for_unknown_or_foreign_ids(market: KieClient, emu: EmulatorServer) -> None:
    null = {"code": 422, "msg": "recordInfo is null", "data": None}
    emu.configure(record_info_null_seconds=600)
    task_id = market.job("z-image", input={"prompt": "fresh", "aspect_ratio": "1:1"})
    assert market.job_record(task_id) == null
    emu.configure(record_info_null_seconds=0)
    assert market.job_record(task_id)["code"] == 200
    assert market.job_record("0" * 32) == null
    kontext_id = market.create(prompt="a kontext task")
    assert market.job_record(kontext_id) == null, "each API sees only its own tasks"
    assert market.record(task_id) == null
    missing = market.get(JOBS_RECORD_INFO, headers=AUTH).json()
    assert (missing["code"], missing["msg"]) == (422, "taskId is required")


def test_lifecycle_waiting_queuing_generating_success(clocked: tuple[EmulatorServer, FakeClock]) -> None:
    server, clock = clocked
    server.reset()
    client = KieClient(server)
    created_at = clock.now
    task_id = client.job("flux-2/pro-text-to-image", input=FLUX2)
    failed_id = client.job("flux-2/pro-text-to-image", input={**FLUX2, "prompt": "x [emulator:generate_failed]"})

    def at(seconds: float, which: str = task_id) -> Any:
        clock.now = created_at + seconds
        return client.job_record(which)

    assert at(0.4)["msg"] == "recordInfo is null"
    seen = {}
    for seconds in (0.5, 1.9, 2.0, 3.9, 4.0, 7.0, 9.99, 10.0):
        data = at(seconds)["data"]
        seen[seconds] = (data["state"], data["progress"], data["updateTime"] - data["createTime"])
    assert seen == {
        0.5: ("waiting", 0, 0),
        1.9: ("waiting", 0, 0),
        2.0: ("queuing", 0, 2000),
        3.9: ("queuing", 0, 2000),
        4.0: ("generating", 0, 4000),
        7.0: ("generating", 50, 4000),
        9.99: ("generating", 99, 4000),
        10.0: ("success", 100, 10000),
    }
    done = at(10.0)["data"]
    assert (done["completeTime"] - done["createTime"], done["costTime"]) == (10000, 10000)
    assert done["createTime"] == int(created_at * 1000)
    assert at(9.0, failed_id)["data"]["state"] == "generating"
    failed = at(10.0, failed_id)["data"]
    assert (failed["state"], failed["failCode"], failed["resultJson"], failed["creditsConsumed"]) == (
        "fail",
        "501",
        "",
        0,
    )
    assert server.stats()["tasks_by_state"] == {
        "waiting": 0,
        "queuing": 0,
        "generating": 0,
        "success": 1,
        "fail": 1,
    }
    client.session.close()


# --------------------------------------------------------------------------------- refusals


@pytest.mark.parametrize("path", [JOBS_CREATE, JOBS_RECORD_INFO + "?taskId=abc"])
@pytest.mark.parametrize("auth", [None, "Bearer wrong", API_KEY])
def test_auth_failure_is_http_200_with_code_401(emu: EmulatorServer, path: str, auth: str | None) -> None:
    headers = {} if auth is None else {"Authorization": auth}
    body = {"model": "z-image", "input": {"prompt": "x", "aspect_ratio": "1:1"}}
    method = "POST" if path == JOBS_CREATE else "GET"
    response = requests.request(method, emu.url(path), json=body, headers=headers, timeout=5)
    assert response.status_code == 200
    assert response.json() == {"code": 401, "msg": "You do not have access permissions", "data": None}
    stats = emu.stats()
    assert (stats["tasks"], stats["auth_failures"], stats["rate_limit_in_window"]) == (0, 1, 0)


def test_unknown_model_is_422_page_does_not_exist(market: KieClient, emu: EmulatorServer) -> None:
    answer = market.create_job("flux/kontext", input={"prompt": "x"})
    assert answer == {"code": 422, "msg": "The page does not exist or is not published", "data": None}
    assert market.create_job("", input={"prompt": "x"})["code"] == 422
    emu.configure(market_validation_code=500)
    assert market.create_job("nano-banana-9", input={"prompt": "x"})["code"] == 422, "never 500"
    assert emu.stats()["tasks"] == 0


INVALID: list[tuple[str, Any, str]] = [
    ("nano-banana-pro", {}, "input.prompt is required"),
    ("nano-banana-pro", {"prompt": "  "}, "input.prompt is required"),
    (
        "nano-banana-pro",
        {"prompt": "x", "aspect_ratio": "7:5"},
        "aspect_ratio is not within the range of allowed options",
    ),
    ("nano-banana-pro", {"prompt": "x", "resolution": "8K"}, "resolution is not within the range of allowed options"),
    ("flux-2/pro-text-to-image", {"prompt": "a fox", "aspect_ratio": "1:1"}, "input.resolution is required"),
    ("flux-2/pro-text-to-image", {**FLUX2, "aspect_ratio": "auto"}, "aspect_ratio is not within the range"),
    ("flux-2/pro-image-to-image", FLUX2, "input.input_urls is required"),
    ("flux-2/pro-image-to-image", {**FLUX2, "input_urls": []}, "input.input_urls is required"),
    ("gpt-image/1.5-text-to-image", {"prompt": "x", "aspect_ratio": "1:1"}, "input.quality is required"),
    ("seedream/4.5-text-to-image", {"prompt": "x", "aspect_ratio": "1:1", "quality": "ultra"}, "quality is not within"),
    ("bytedance/seedream-v4-text-to-image", {"prompt": "x", "max_images": 7}, "max_images is not within"),
    ("qwen/image-edit", {"prompt": "x", "image_url": "https://e.com/a.png", "num_images": "5"}, "num_images is not"),
    ("wan/2-7-image", {"prompt": "x", "n": 5}, "n is not within the range of allowed options"),
    ("topaz/image-upscale", {"upscale_factor": "2"}, "input.image_url is required"),
    ("topaz/image-upscale", {"image_url": "https://e.com/a.png", "upscale_factor": 2}, "upscale_factor is not within"),
    ("recraft/remove-background", {}, "input.image is required"),
]
MALFORMED: list[tuple[str, Any, str]] = [
    ("flux-2/pro-text-to-image", {**FLUX2, "prompt": "ab"}, "input.prompt must be at least 3 characters long"),
    ("z-image", {"prompt": "x" * 1001, "aspect_ratio": "1:1"}, "input.prompt must be at most 1000 characters long"),
    ("google/nano-banana-edit", {"prompt": "x", "image_urls": ["file:///a.png"]}, "input.image_urls must be a list"),
    ("google/nano-banana-edit", {"prompt": "x", "image_urls": "https://e.com/a.png"}, "must be a list of file URLs"),
    ("google/nano-banana-edit", {"prompt": "x", "image_urls": ["https://e.com/a.png"] * 11}, "at most 10 files"),
    ("qwen/image-edit", {"prompt": "x", "image_url": "https://e.com/a.png", "num_images": "two"}, "must be an integer"),
    ("grok-imagine/text-to-image", {"prompt": "x", "enable_pro": "yes"}, "input.enable_pro must be a boolean"),
    ("z-image", "prompt=x", "input must be an object"),
]


@pytest.mark.parametrize(("model", "values", "fragment"), INVALID + MALFORMED)
def test_validation_like_kie(market: KieClient, emu: EmulatorServer, model: str, values: Any, fragment: str) -> None:
    answer = market.create_job(model, input=values)
    assert answer["code"] == 422
    assert answer["data"] is None
    assert fragment in answer["msg"]
    stats = emu.stats()
    assert (stats["tasks"], stats["credits"], stats["creates_rejected_validation"]) == (0, 1000, 1)


@pytest.mark.parametrize(("model", "values", "fragment"), INVALID)
def test_required_and_option_failures_can_be_code_500(
    market: KieClient, emu: EmulatorServer, model: str, values: Any, fragment: str
) -> None:
    emu.configure(market_validation_code=500)
    answer = market.create_job(model, input=values)
    assert (answer["code"], answer["data"]) == (500, None)
    assert fragment in answer["msg"]


@pytest.mark.parametrize(("model", "values", "fragment"), MALFORMED[:2])
def test_malformed_values_stay_422_in_the_500_mode(
    market: KieClient, emu: EmulatorServer, model: str, values: Any, fragment: str
) -> None:
    emu.configure(market_validation_code=500)
    assert market.create_job(model, input=values)["code"] == 422


def test_mirror_http_status_sends_the_body_code_as_status(market: KieClient, emu: EmulatorServer) -> None:
    emu.configure(mirror_http_status=True)
    refused = market.post(JOBS_CREATE, json={"model": "nope", "input": {}})
    assert (refused.status_code, refused.json()["code"]) == (422, 422)
    unauthorized = requests.get(emu.url(CREDIT), timeout=5)
    assert (unauthorized.status_code, unauthorized.json()["code"]) == (401, 401)
    accepted = market.post(JOBS_CREATE, json={"model": "z-image", "input": {"prompt": "x", "aspect_ratio": "1:1"}})
    assert (accepted.status_code, accepted.json()["code"]) == (200, 200)


# --------------------------------------------------------------------------------- images


@pytest.mark.parametrize(
    ("model", "values", "count", "credits"),
    [
        ("bytedance/seedream-v4-text-to-image", {"prompt": "x", "max_images": 4}, 4, 20),
        ("bytedance/seedream-v4-text-to-image", {"prompt": "x"}, 1, 5),
        ("qwen/image-edit", {"prompt": "x", "image_url": "https://e.com/a.png", "num_images": "3"}, 3, 15),
        ("qwen/image-edit", {"prompt": "x", "image_url": "https://e.com/a.png", "num_images": 2}, 2, 10),
        ("ideogram/v3-remix", {"prompt": "x", "image_url": "https://e.com/a.png", "num_images": "4"}, 4, 28),
        ("wan/2-7-image", {"prompt": "x", "n": 2}, 2, 9.6),
        ("wan/2-7-image", {"prompt": "x"}, 4, 19.2),  # kie's default n is 4
        ("wan/2-7-image", {"prompt": "x", "enable_sequential": True, "n": 9}, 9, 43.2),
        ("grok-imagine/text-to-image", {"prompt": "x"}, 2, 4),  # a fixed batch, priced per task
        ("z-image", {"prompt": "x", "aspect_ratio": "9:16"}, 1, 0.8),
        ("recraft/crisp-upscale", {"image": "https://e.com/a.png"}, 1, 0.5),
    ],
)
def test_image_count_and_price(
    market: KieClient, emu: EmulatorServer, model: str, values: dict[str, Any], count: int, credits: float
) -> None:
    done = market.finished_job(market.job(model, input=values))
    assert done["state"] == "success"
    urls = urls_of(done)
    assert len(urls) == count
    assert len(set(urls)) == count
    assert done["creditsConsumed"] == pytest.approx(credits)
    assert emu.stats()["credits"] == pytest.approx(1000 - credits)


def test_every_result_url_serves_a_distinct_image(market: KieClient, emu: EmulatorServer) -> None:
    values = {"prompt": "three kites", "max_images": 3, "image_size": "landscape_16_9"}
    task_id = market.job("bytedance/seedream-v4-text-to-image", input=values)
    done = market.finished_job(task_id)
    payloads = []
    for url in urls_of(done):
        response = market.get(url)
        assert response.status_code == 200
        assert response.headers["content-type"] == "image/jpeg"
        image = decode(response.content)
        assert (image.format, image.size) == ("JPEG", (256, 144))
        payloads.append(response.content)
    assert len(set(payloads)) == 3
    assert market.get(urls_of(done)[0]).content == payloads[0], "rendered once, served the same"
    for key in (f"{task_id}_3.jpg", f"{task_id}.jpg", f"{task_id}_01.jpg", f"{task_id}_0.png"):
        assert market.get(emu.url(f"/files/results/{key}")).status_code == 404
    assert market.get(emu.url(f"/files/origin/{task_id}_0.jpg")).status_code == 404


def test_results_exist_only_after_success(market: KieClient, emu: EmulatorServer) -> None:
    task_id = market.job("z-image", input={"prompt": "later", "aspect_ratio": "16:9"})
    assert market.get(emu.url(f"/files/results/{task_id}_0.jpg")).status_code == 404
    market.finished_job(task_id)
    assert market.get(emu.url(f"/files/results/{task_id}_0.jpg")).status_code == 200


def test_models_without_a_prompt_succeed_and_name_their_input(market: KieClient) -> None:
    values = {"image_url": "https://e.com/photo.png", "upscale_factor": "4"}
    done = market.finished_job(market.job("topaz/image-upscale", input=values))
    assert (done["state"], done["creditsConsumed"]) == ("success", 20)
    assert market.get(urls_of(done)[0]).status_code == 200


# --------------------------------------------------------------------------------- credits and rate limit


def test_402_when_the_balance_is_below_price_times_images(market: KieClient, emu: EmulatorServer) -> None:
    emu.configure(credits=12)
    answer = market.create_job("nano-banana-pro", input={"prompt": "x"})
    assert answer == {"code": 402, "msg": "Credits insufficient", "data": None}
    too_many = {"prompt": "x", "max_images": 3}  # 3 x 5 = 15 > 12
    assert market.create_job("bytedance/seedream-v4-text-to-image", input=too_many)["code"] == 402
    market.job("bytedance/seedream-v4-text-to-image", input={**too_many, "max_images": 2})
    stats = emu.stats()
    assert (stats["tasks"], stats["creates_rejected_credits"], stats["credits"]) == (1, 2, 2)


def test_success_is_charged_and_a_failure_is_refunded(market: KieClient, emu: EmulatorServer) -> None:
    ok = market.job("flux-2/pro-text-to-image", input=FLUX2)
    bad = market.job("flux-2/pro-text-to-image", input={**FLUX2, "prompt": "a fox [emulator:generate_failed]"})
    assert market.get(CREDIT, headers=AUTH).json()["data"] == 990, "both prices are held while they run"
    assert market.finished_job(ok)["creditsConsumed"] == 5
    failed = market.finished_job(bad)
    assert (failed["state"], failed["creditsConsumed"]) == ("fail", 0)
    assert market.get(CREDIT, headers=AUTH).json()["data"] == 995
    stats = emu.stats()
    assert (stats["credits_spent"], stats["credits_refunded"]) == (5, 5)
    assert emu.state.task_summary(bad)["charged"] == 0  # type: ignore[index]


def test_one_create_window_for_both_apis(market: KieClient, emu: EmulatorServer) -> None:
    emu.reset(rate_limit_creates=3, rate_limit_window_seconds=600, **LONG)
    market.create(prompt="kontext 1")
    market.create(prompt="kontext 2")
    market.job("z-image", input={"prompt": "market 1", "aspect_ratio": "1:1"})
    response = market.post(
        JOBS_CREATE, json={"model": "z-image", "input": {"prompt": "market 2", "aspect_ratio": "1:1"}}
    )
    assert response.status_code == 429
    assert response.json() == {"code": 429, "msg": "Rate limit exceeded", "data": None}
    assert market.post(GENERATE, json={"prompt": "kontext 3"}).status_code == 429
    stats = emu.stats()
    assert stats["creates_accepted"] == 3
    assert stats["creates_accepted_by_api"] == {"kontext": 2, "market": 1}
    assert stats["creates_rejected_rate_limit"] == 2
    assert stats["tasks"] == 3
    assert stats["credits"] == pytest.approx(1000 - 2 * 5 - 0.8), "the dropped creates cost nothing"


# --------------------------------------------------------------------------------- markers


@pytest.mark.parametrize(
    ("marker", "fail_code", "fail_msg"),
    [
        ("[emulator:content_policy]", "400", "The content violates our content policy."),
        ("[emulator:content_policy_500]", "500", "The content violates our content policy."),
        ("[emulator:generate_failed]", "501", "Generation failed"),
        ("[emulator:internal_error]", "500", "Internal server error"),
        ("[emulator:create_failed]", "500", "Internal server error"),
    ],
)
def test_failure_markers(market: KieClient, marker: str, fail_code: str, fail_msg: str) -> None:
    done = market.finished_job(market.job("z-image", input={"prompt": f"a castle {marker}", "aspect_ratio": "1:1"}))
    assert done["state"] == "fail"
    assert done["failCode"] == fail_code
    assert done["failMsg"].startswith(fail_msg)
    assert (done["resultJson"], done["creditsConsumed"]) == ("", 0)
    assert done["completeTime"] is not None


def test_no_url_marker_succeeds_without_urls(market: KieClient) -> None:
    done = market.finished_job(market.job("google/nano-banana", input={"prompt": "[emulator:no_url] a bridge"}))
    assert (done["state"], urls_of(done)) == ("success", [])


def test_slow_marker_sets_the_generation_time(market: KieClient, emu: EmulatorServer) -> None:
    emu.configure(generation_seconds=0.3)
    task_id = market.job("google/nano-banana", input={"prompt": "[emulator:slow=900] take your time"})
    summary = emu.state.task_summary(task_id)
    assert summary is not None
    assert summary["duration"] == 900
    assert market.job_record(task_id)["data"]["state"] == "waiting"
    assert market.finished_job(task_id)["state"] == "success"


def test_a_task_kie_accepts_then_fails_on_its_parameters(market: KieClient, emu: EmulatorServer) -> None:
    values = {"prompt": "x", "aspect_ratio": "1:1", "resolution": "4K"}
    done = market.finished_job(market.job("gpt-image-2-text-to-image", input=values))
    assert (done["state"], done["failCode"], done["creditsConsumed"]) == ("fail", "422", 0)
    assert "4K" in done["failMsg"]
    assert emu.stats()["credits"] == 1000


# --------------------------------------------------------------------------------- callbacks


def test_signed_success_callback_carries_the_record_and_credits(
    market: KieClient, emu: EmulatorServer, side_server: SideServer
) -> None:
    emu.configure(webhook_hmac_key="hmac-secret")
    values = {"prompt": "call me back", "max_images": 2}
    task_id = market.job("bytedance/seedream-v4-text-to-image", input=values, callBackUrl=side_server.base_url + "/cb")
    emu.finish_now(task_id)
    (received,) = side_server.wait_for(1, timeout=10)
    body = received.json()
    assert (body["code"], body["msg"]) == (200, "Playground task completed successfully.")
    data = body["data"]
    assert (data["consumeCredits"], data["remainedCredits"]) == (10, 990)
    record = market.job_record(task_id)["data"]
    assert {k: v for k, v in data.items() if k not in ("consumeCredits", "remainedCredits")} == record
    assert len(urls_of(data)) == 2
    assert json.loads(data["param"])["callBackUrl"] == side_server.base_url + "/cb"
    timestamp = received.headers["X-Webhook-Timestamp"]
    expected = base64.b64encode(hmac.new(b"hmac-secret", f"{task_id}.{timestamp}".encode(), hashlib.sha256).digest())
    assert hmac.compare_digest(received.headers["X-Webhook-Signature"], expected.decode())


def test_failure_callback_is_501_refunded_and_retried(
    market: KieClient, emu: EmulatorServer, side_server: SideServer
) -> None:
    emu.configure(callback_retry_delay_seconds=0.05)
    side_server.post_statuses = [503]
    prompt = "[emulator:content_policy] nope"
    task_id = market.job("z-image", input={"prompt": prompt, "aspect_ratio": "1:1"}, callBackUrl=side_server.base_url)
    emu.finish_now(task_id)
    first, second = side_server.wait_for(2, timeout=10)
    assert first.body == second.body, "a retry resends the same callback"
    body = second.json()
    assert (body["code"], body["msg"]) == (501, "Playground task failed.")
    assert body["data"]["state"] == "fail"
    assert body["data"]["failCode"] == "400"
    assert (body["data"]["consumeCredits"], body["data"]["remainedCredits"]) == (0, 1000)
    assert "X-Webhook-Signature" not in second.headers
    attempts: list[dict[str, Any]] = []
    for _ in range(200):  # the second attempt is logged just after the receiver answered it
        attempts = emu.state.callback_log(task_id)
        if len(attempts) == 2:
            break
        time.sleep(0.02)
    assert [(a["attempt"], a["code"], a["http_status"], a["ok"]) for a in attempts] == [
        (1, 501, 503, False),
        (2, 501, 200, True),
    ]


# --------------------------------------------------------------------------------- faults and stats


@pytest.mark.parametrize("code", [401, 402, 422, 429, 455, 500, 505])
def test_code_fault_on_jobs_create(market: KieClient, emu: EmulatorServer, code: int) -> None:
    emu.inject_fault("jobs-create", "code", code=code)
    answer = market.create_job("z-image", input={"prompt": "fault", "aspect_ratio": "1:1"})
    assert (answer["code"], answer["data"]) == (code, None)
    assert emu.stats()["tasks"] == 0
    assert market.create_job("z-image", input={"prompt": "again", "aspect_ratio": "1:1"})["code"] == 200


@pytest.mark.parametrize(
    ("kind", "params", "error", "tasks"),
    [
        ("http", {"status": 503}, None, 0),
        ("malformed_json", {}, requests.JSONDecodeError, 0),
        ("drop", {}, requests.ConnectionError, 0),
        ("drop_after_accept", {}, requests.ConnectionError, 1),
    ],
)
def test_transport_faults_on_jobs_create(
    emu: EmulatorServer, kind: str, params: dict[str, Any], error: type[Exception] | None, tasks: int
) -> None:
    emu.configure(**LONG)
    emu.inject_fault("jobs-create", kind, **params)
    body = {"model": "z-image", "input": {"prompt": "faulted create", "aspect_ratio": "1:1"}}
    if error is None:
        assert requests.post(emu.url(JOBS_CREATE), json=body, headers=AUTH, timeout=5).status_code == 503
    else:
        with pytest.raises(error):
            requests.post(emu.url(JOBS_CREATE), json=body, headers=AUTH, timeout=5).json()
    stats = emu.stats()
    assert (stats["tasks"], stats["creates_accepted"], stats["requests"]["jobs-create"]) == (tasks, tasks, 1)
    (entry,) = emu.applied_faults()
    assert (entry.endpoint, entry.kind, entry.prompt) == ("jobs-create", kind, "faulted create")
    assert (entry.task_id is not None) == bool(tasks), "a lost-but-accepted create names its task"


def test_slow_jobs_create_times_out_on_the_client_but_creates_the_task(emu: EmulatorServer) -> None:
    emu.inject_fault("jobs-create", "slow", delay=1.0)
    body = {"model": "z-image", "input": {"prompt": "slow", "aspect_ratio": "1:1"}}
    with pytest.raises(requests.ReadTimeout):
        requests.post(emu.url(JOBS_CREATE), json=body, headers=AUTH, timeout=0.3)
    assert emu.stats()["tasks"] == 1


def test_faults_on_jobs_record_info(market: KieClient, emu: EmulatorServer) -> None:
    task_id = market.job("z-image", input={"prompt": "polled", "aspect_ratio": "1:1"})
    emu.inject_fault("jobs-record-info", "code", code=422)
    emu.inject_fault("jobs-record-info", "code", code=455)
    emu.inject_fault("jobs-record-info", "http", status=500, retry_after=2)
    emu.inject_fault("jobs-record-info", "drop")
    assert market.job_record(task_id) == {"code": 422, "msg": "recordInfo is null", "data": None}
    assert market.job_record(task_id)["code"] == 455
    response = market.get(JOBS_RECORD_INFO, params={"taskId": task_id}, headers=AUTH)
    assert (response.status_code, response.headers["Retry-After"]) == (500, "2")
    with pytest.raises(requests.ConnectionError):
        requests.get(emu.url(JOBS_RECORD_INFO), params={"taskId": task_id}, headers=AUTH, timeout=5)
    assert market.job_record(task_id)["code"] == 200
    assert {entry.task_id for entry in emu.applied_faults()} == {task_id}
    stats = emu.stats()
    assert stats["requests"]["jobs-record-info"] == 5
    assert stats["faults_applied"] == {"jobs-record-info": {"code": 2, "http": 1, "drop": 1}}
    assert emu.state.take_fault("record-info") is None, "the Kontext endpoint is a different one"


def test_random_faults_cover_the_market_endpoints_by_default(emu: EmulatorServer) -> None:
    plan = emu.inject_random_faults(0.1, 1)
    assert {"jobs-create", "jobs-record-info"} <= set(plan.catalogue)
    assert any(spec["kind"] == "drop_after_accept" for spec in plan.catalogue["jobs-create"])


def test_stats_and_task_summary_name_the_market_endpoints(market: KieClient, emu: EmulatorServer) -> None:
    task_id = market.job("z-image", input={"prompt": "counted", "aspect_ratio": "1:1"})
    market.job_record(task_id)
    market.create(prompt="kontext")
    stats = emu.stats()
    assert (stats["requests"]["jobs-create"], stats["requests"]["jobs-record-info"]) == (1, 1)
    assert (stats["requests"]["generate"], stats["creates_accepted"]) == (1, 2)
    assert stats["tasks_by_api"] == {"kontext": 1, "market": 1}
    assert stats["tasks_by_state"]["waiting"] == 1
    assert stats["tasks_by_success_flag"]["pending"] == 1, "Kontext tasks only"
    summary = requests.get(emu.url(f"/_emulator/tasks/{task_id}"), timeout=5).json()
    assert (summary["api"], summary["state"], summary["images"], summary["price"]) == ("market", "waiting", 1, 0.8)
    assert summary["params"] == {"model": "z-image", "input": {"prompt": "counted", "aspect_ratio": "1:1"}}


# --------------------------------------------------------------------------------- the table


def test_the_table_knows_the_documented_models() -> None:
    expected = {
        *("flux-2/pro-text-to-image", "flux-2/pro-image-to-image", "flux-2/flex-text-to-image"),
        *("flux-2/flex-image-to-image", "nano-banana-pro", "nano-banana-2", "google/nano-banana"),
        *("google/nano-banana-edit", "google/imagen4", "seedream/4.5-text-to-image", "seedream/4.5-edit"),
        *("bytedance/seedream-v4-text-to-image", "bytedance/seedream-v4-edit", "gpt-image/1.5-text-to-image"),
        *("gpt-image-2-text-to-image", "gpt-image-2-image-to-image", "qwen/image-edit", "ideogram/v3-remix"),
        *("ideogram/v3-text-to-image", "wan/2-7-image", "z-image", "grok-imagine/text-to-image"),
        *("topaz/image-upscale", "recraft/crisp-upscale", "recraft/remove-background"),
    }
    assert expected <= set(MODELS)


def test_the_emulator_does_not_share_the_clients_catalog() -> None:
    """kie's rules live in the emulator's own table, so a client test can catch the two disagreeing."""
    code = (
        "import sys; import airflow_provider_kontext.emulator.app; "
        "print(sorted(m for m in sys.modules if m.startswith('airflow_provider_kontext._protocol')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
