"""Callbacks (payloads, HMAC signature, retries) and the command-line entry point."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import subprocess
import sys
import time
from typing import TYPE_CHECKING

import pytest
import requests

from airflow_provider_kontext.emulator.cli import build_parser

if TYPE_CHECKING:
    from pathlib import Path

    from airflow_provider_kontext.emulator import EmulatorServer

    from .helpers import KieClient, SideServer


def test_success_callback_with_valid_hmac(kie: KieClient, emu: EmulatorServer, side_server: SideServer) -> None:
    emu.configure(webhook_hmac_key="hmac-secret")
    task_id = kie.create(prompt="call me back", callBackUrl=side_server.base_url + "/hook")
    (received,) = side_server.wait_for(1)
    assert received.method == "POST"
    assert received.path == "/hook"
    assert received.headers["Content-Type"] == "application/json"
    body = received.json()
    assert body["code"] == 200
    assert body["msg"] == "BFL image generated successfully."
    assert body["data"]["taskId"] == task_id
    info = body["data"]["info"]
    record = kie.record(task_id)["data"]
    assert info["resultImageUrl"] == record["response"]["resultImageUrl"]
    assert info["originImageUrl"] == record["response"]["originImageUrl"]
    assert record["successFlag"] == 1  # the callback is sent once the task is terminal

    timestamp = received.headers["X-Webhook-Timestamp"]
    assert abs(int(timestamp) - time.time()) < 30
    expected = base64.b64encode(
        hmac.new(b"hmac-secret", f"{task_id}.{timestamp}".encode(), hashlib.sha256).digest()
    ).decode()
    assert hmac.compare_digest(received.headers["X-Webhook-Signature"], expected)
    time.sleep(0.05)
    stats = emu.stats()
    assert stats["callbacks_delivered"] == 1
    assert stats["callbacks"][0]["taskId"] == task_id
    assert stats["callbacks"][0]["ok"] is True


def test_failure_callback_has_empty_urls_and_no_signature_without_key(
    kie: KieClient, emu: EmulatorServer, side_server: SideServer
) -> None:
    task_id = kie.create(prompt="[emulator:content_policy]", callBackUrl=side_server.base_url + "/hook")
    (received,) = side_server.wait_for(1)
    assert received.json() == {
        "code": 400,
        "msg": "Your prompt was flagged by Website as violating content policies.",
        "data": {"taskId": task_id, "info": {"originImageUrl": "", "resultImageUrl": ""}},
    }
    assert "X-Webhook-Signature" not in received.headers
    assert "X-Webhook-Timestamp" not in received.headers


def test_callback_is_retried_after_failures(kie: KieClient, emu: EmulatorServer, side_server: SideServer) -> None:
    emu.configure(callback_retry_delay_seconds=0.05)
    side_server.post_statuses = [500, 503]
    task_id = kie.create(prompt="flaky receiver", callBackUrl=side_server.base_url + "/hook")
    side_server.wait_for(3)
    time.sleep(0.05)
    attempts = requests.get(emu.url("/_emulator/callbacks"), params={"taskId": task_id}, timeout=5).json()
    assert [(a["attempt"], a["http_status"], a["ok"]) for a in attempts] == [
        (1, 500, False),
        (2, 503, False),
        (3, 200, True),
    ]
    stats = emu.stats()
    assert (stats["callbacks_delivered"], stats["callbacks_failed"]) == (1, 2)


def test_cli_parser_defaults() -> None:
    args = build_parser().parse_args([])
    assert (args.host, args.port, args.generation_seconds, args.rate_limit_creates) == ("127.0.0.1", 8765, 3.0, 20)


def test_cli_starts_and_writes_ready_file(tmp_path: Path) -> None:
    ready = tmp_path / "ready"
    env = {**os.environ, "KONTEXT_EMULATOR_API_KEY": "cli-key"}
    process = subprocess.Popen(
        [sys.executable, "-m", "airflow_provider_kontext.emulator", "--port", "0", "--ready-file", str(ready)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    try:
        deadline = time.monotonic() + 180  # a liveness bound, not a speed check: tests share 2 cores
        while not ready.exists():
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                pytest.fail(f"emulator CLI did not become ready: {process.communicate(timeout=30)}")
            time.sleep(0.05)
        base_url = ready.read_text().strip()
        assert base_url.startswith("http://127.0.0.1:")
        answer = requests.get(
            base_url + "/api/v1/chat/credit", headers={"Authorization": "Bearer cli-key"}, timeout=5
        ).json()
        assert answer == {"code": 200, "msg": "success", "data": 1000}
    finally:
        process.terminate()
        out, _ = process.communicate(timeout=10)
    assert process.returncode == 0
    assert b"listening on http://127.0.0.1:" in out
