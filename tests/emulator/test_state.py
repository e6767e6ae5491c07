"""Pure unit tests of the emulator's state and payload rules, driven by a fake clock."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import subprocess
import sys
from typing import Any

import pytest

from airflow_provider_kontext.emulator.config import EmulatorConfig
from airflow_provider_kontext.emulator.payloads import callback_payload, format_time, record_data, sign_webhook
from airflow_provider_kontext.emulator.state import (
    EmulatorState,
    SlidingWindowLimiter,
    outcome_for_prompt,
)
from airflow_provider_kontext.emulator.validation import Rejection, validate_generate


class FakeClock:
    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def state(clock: FakeClock) -> EmulatorState:
    return EmulatorState(EmulatorConfig(api_key="k", generation_seconds=3.0, credits=20), clock=clock)


def test_sliding_window_limits_per_window_not_per_bucket(clock: FakeClock) -> None:
    limiter = SlidingWindowLimiter(limit=3, window=10.0, clock=clock)
    assert [limiter.try_acquire() for _ in range(4)] == [True, True, True, False]
    clock.advance(9.9)
    assert not limiter.try_acquire()
    assert limiter.seconds_until_free() == pytest.approx(0.1)
    clock.advance(0.1)  # all three fall out of the window together
    assert [limiter.try_acquire() for _ in range(4)] == [True, True, True, False]


def test_task_timeline_and_credits(state: EmulatorState, clock: FakeClock) -> None:
    task = state.create_task({"prompt": "a cat", "model": "flux-kontext-max"}, base_url="http://x")
    assert task is not None
    assert len(task.task_id) == 32
    int(task.task_id, 16)
    assert state.credits == 10
    assert not state.record_visible(task)
    clock.advance(0.5)
    assert state.record_visible(task)
    data = record_data(task, clock(), "http://x", "iso")
    assert data["successFlag"] == 0
    assert data["response"] is None
    assert data["completeTime"] is None
    assert json.loads(data["paramJson"]) == {"prompt": "a cat", "model": "flux-kontext-max"}
    clock.advance(2.5)
    data = record_data(task, clock(), "http://x", "epoch_ms")
    assert data["successFlag"] == 1
    assert data["errorCode"] is None
    assert data["response"]["resultImageUrl"] == f"http://x/files/results/{task.task_id}.jpg"
    assert data["createTime"] == int(task.created_at * 1000)
    assert state.resolve_file(task.result_key) is not None
    # 10 credits left: one more max task, then the balance is short.
    assert state.create_task({"prompt": "b", "model": "flux-kontext-max"}, base_url="http://x") is not None
    assert state.create_task({"prompt": "c"}, base_url="http://x") is None
    assert state.stats()["creates_rejected_credits"] == 1


def test_origin_url_expires_but_result_stays(clock: FakeClock) -> None:
    state = EmulatorState(EmulatorConfig(api_key="k", generation_seconds=1, origin_url_ttl_seconds=600), clock)
    task = state.create_task({"prompt": "p", "outputFormat": "png"}, base_url="http://x")
    assert task is not None
    assert state.resolve_file(task.origin_key) is None  # not finished yet
    clock.advance(1)
    assert state.resolve_file(task.origin_key) is not None
    clock.advance(600)
    assert state.resolve_file(task.origin_key) is None
    assert state.resolve_file(task.result_key) is not None


def test_download_links_expire(clock: FakeClock) -> None:
    state = EmulatorState(EmulatorConfig(api_key="k", download_url_ttl_seconds=1200), clock)
    state.store_upload("uploads/a/b.png", b"\x89PNG\r\n\x1a\nxx", "image/png")
    link = state.create_download_link("uploads/a/b.png", "b.png")
    assert state.resolve_file(link) is not None
    clock.advance(1200)
    assert state.resolve_file(link) is None


@pytest.mark.parametrize(
    ("prompt", "flag", "code", "has_url", "seconds"),
    [
        ("plain", 1, None, True, 3.0),
        ("x [emulator:content_policy] y", 3, 400, True, 3.0),
        ("[emulator:generate_failed]", 3, 501, True, 3.0),
        ("[emulator:create_failed]", 2, 500, True, 3.0),
        ("[emulator:no_url]", 1, None, False, 3.0),
        ("[emulator:slow=7.5]", 1, None, True, 7.5),
        ("[EMULATOR:content_policy]", 1, None, True, 3.0),  # markers are case-sensitive
    ],
)
def test_prompt_markers(prompt: str, flag: int, code: int | None, has_url: bool, seconds: float) -> None:
    outcome, duration = outcome_for_prompt(prompt, 3.0)
    assert (outcome.success_flag, outcome.error_code, outcome.has_result_url, duration) == (
        flag,
        code,
        has_url,
        seconds,
    )


def test_fault_queue_is_fifo_and_counted(state: EmulatorState) -> None:
    state.inject_fault("credit", "code", count=2, code=500)
    state.inject_fault("credit", "http", status=503)
    kinds = [getattr(state.take_fault("credit"), "kind", None) for _ in range(4)]
    assert kinds == ["code", "code", "http", None]
    assert state.stats()["faults_applied"] == {"credit": {"code": 2, "http": 1}}


def test_forbidden_fault_spares_download_links(state: EmulatorState) -> None:
    state.inject_fault("file", "forbidden")
    assert state.take_fault("file", "/files/dl/abc/x.jpg") is None
    fault = state.take_fault("file", "/files/results/abc.jpg")
    assert fault is not None
    assert fault.kind == "forbidden"


@pytest.mark.parametrize(
    ("endpoint", "kind", "params"),
    [
        ("nope", "code", {"code": 500}),
        ("credit", "nope", {}),
        ("credit", "code", {"code": 418}),
        ("credit", "drop_after_accept", {}),
        ("generate", "forbidden", {}),
        ("credit", "http", {"status": 200}),
        ("file", "code", {"code": 500}),
    ],
)
def test_bad_faults_are_rejected_at_injection(
    state: EmulatorState, endpoint: str, kind: str, params: dict[str, Any]
) -> None:
    with pytest.raises(ValueError, match=r"\w"):
        state.inject_fault(endpoint, kind, **params)


def test_config_overrides_and_reset(state: EmulatorState) -> None:
    state.update_config(generation_seconds=1, credits=3)
    assert state.config.generation_seconds == 1.0
    assert state.credits == 3
    with pytest.raises(ValueError, match="unknown"):
        state.update_config(generation_secs=1)
    with pytest.raises(ValueError, match="integer"):
        state.update_config(rate_limit_creates=1.5)
    state.reset(rate_limit_creates=2)
    assert state.config.generation_seconds == 3.0  # back to the initial config
    assert state.config.rate_limit_creates == 2
    assert state.credits == 20


def test_validation_rules() -> None:
    assert validate_generate({"prompt": "x", "imageUrl": "http://a/b.png", "inputImage": ""}) == {"prompt": "x"}
    assert validate_generate({"prompt": " "}) == Rejection(422, "prompt is required and cannot be empty")
    generate_range = validate_generate({"prompt": "x", "safetyTolerance": 7})
    assert isinstance(generate_range, Rejection)
    assert generate_range.code == 500
    assert "0 and 6" in generate_range.msg
    edit_range = validate_generate({"prompt": "x", "safetyTolerance": 3, "inputImage": "https://a/b.png"})
    assert isinstance(edit_range, Rejection)
    assert edit_range.code == 500
    assert "0 and 2" in edit_range.msg


def test_callback_payload_and_signature(state: EmulatorState, clock: FakeClock) -> None:
    ok = state.create_task({"prompt": "p"}, base_url="http://x")
    bad = state.create_task({"prompt": "[emulator:generate_failed]"}, base_url="http://x")
    assert ok is not None
    assert bad is not None
    clock.advance(5)
    assert callback_payload(ok, "http://x")["data"]["info"]["resultImageUrl"].endswith(".jpg")
    assert callback_payload(bad, "http://x") == {
        "code": 501,
        "msg": "Image generation task failed",
        "data": {"taskId": bad.task_id, "info": {"originImageUrl": "", "resultImageUrl": ""}},
    }
    expected = base64.b64encode(hmac.new(b"key", f"{ok.task_id}.123".encode(), hashlib.sha256).digest())
    assert sign_webhook("key", ok.task_id, "123") == expected.decode()
    assert format_time(0, "iso") == "1970-01-01T00:00:00Z"


def test_package_import_is_lazy() -> None:
    code = (
        "import sys, airflow_provider_kontext.emulator as e; "
        "e.EmulatorConfig; "
        "print('PIL' in sys.modules, 'fastapi' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]
