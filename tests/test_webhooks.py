"""Callback signatures and payloads, unit-level and end to end from the emulator to a loopback receiver."""

from __future__ import annotations

import json
import queue
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from airflow_provider_kontext import exceptions as exc
from airflow_provider_kontext._protocol.record import ApiFamily, TaskStatus
from airflow_provider_kontext.emulator import EmulatorServer
from airflow_provider_kontext.emulator.payloads import sign_webhook
from airflow_provider_kontext.hooks.kontext import KontextHook
from airflow_provider_kontext.webhooks import (
    KieCallback,
    parse_kie_callback,
    sign_kie_webhook,
    verify_and_parse,
    verify_kie_signature,
)

SECRET = "whsec-VERY-secret-hmac-key-4242"
TASK = "fluxkontext_7c1f0e"
NOW = 1_750_000_000.0
TS = str(int(NOW))


def headers_for(task_id: str = TASK, timestamp: str = TS, secret: str = SECRET) -> dict[str, str]:
    return {"X-Webhook-Timestamp": timestamp, "X-Webhook-Signature": sign_webhook(secret, task_id, timestamp)}


def success_body(task_id: str = TASK, **data: Any) -> bytes:
    return json.dumps(
        {
            "code": 200,
            "msg": "BFL image generated successfully.",
            "data": {
                "taskId": task_id,
                "info": {"originImageUrl": "https://t.example/o.png", "resultImageUrl": "https://t.example/r.png"},
                **data,
            },
        }
    ).encode()


# ----------------------------------------------------------------------------- signatures


def test_emulator_signature_verifies() -> None:
    signature = sign_webhook(SECRET, TASK, TS)
    assert sign_kie_webhook(task_id=TASK, timestamp=int(TS), secret=SECRET) == signature
    verify_kie_signature(task_id=TASK, timestamp=TS, signature=signature, secret=SECRET, now=NOW)
    verify_kie_signature(task_id=TASK, timestamp=int(TS), signature=signature, secret=SECRET, now=NOW + 299)


FAILURES = [
    ("tampered task id", {"task_id": TASK + "x"}, "signature_mismatch"),
    ("wrong secret", {"secret": "another-key"}, "signature_mismatch"),
    (
        "signature of another timestamp",
        {"signature": sign_webhook(SECRET, TASK, str(int(NOW) - 1))},
        "signature_mismatch",
    ),
    ("old timestamp", {"now": NOW + 301}, "timestamp_out_of_window"),
    ("future timestamp", {"now": NOW - 301}, "timestamp_out_of_window"),
    ("garbage signature", {"signature": "not base64 at all!"}, "signature_malformed"),
    ("empty signature", {"signature": ""}, "signature_malformed"),
    ("truncated digest", {"signature": sign_webhook(SECRET, TASK, TS)[:20]}, "signature_malformed"),
    ("hex instead of base64", {"signature": "ab" * 32}, "signature_malformed"),
    ("non-numeric timestamp", {"timestamp": "yesterday"}, "timestamp_malformed"),
    ("fractional timestamp", {"timestamp": TS + ".5"}, "timestamp_malformed"),
    ("negative timestamp", {"timestamp": "-" + TS}, "timestamp_malformed"),
    ("empty timestamp", {"timestamp": ""}, "timestamp_malformed"),
    ("bool timestamp", {"timestamp": True}, "timestamp_malformed"),
    ("unicode digits", {"timestamp": "\u0661\u0667\u0665" + "\u0660" * 7}, "timestamp_malformed"),
    ("milliseconds", {"timestamp": TS + "000"}, "timestamp_out_of_window"),
]


@pytest.mark.parametrize(("case", "change", "reason"), FAILURES, ids=[f[0] for f in FAILURES])
def test_bad_signature_is_a_typed_error_without_the_secret(case: str, change: dict, reason: str) -> None:
    kwargs: dict[str, Any] = {
        "task_id": TASK,
        "timestamp": TS,
        "signature": sign_webhook(SECRET, TASK, TS),
        "secret": SECRET,
        "now": NOW,
    }
    kwargs.update(change)
    with pytest.raises(exc.KontextWebhookSignatureError) as info:
        verify_kie_signature(**kwargs)
    error = info.value
    assert error.reason == reason
    assert isinstance(error, exc.KontextError)
    for text in (str(error), repr(error), repr(error.args), repr(vars(error))):
        assert SECRET not in text
        assert sign_webhook(SECRET, kwargs["task_id"], str(kwargs["timestamp"])) not in text


def test_window_is_configurable_and_defaults_to_wall_clock() -> None:
    old = str(int(time.time()) - 3600)
    signature = sign_webhook(SECRET, TASK, old)
    with pytest.raises(exc.KontextWebhookSignatureError):
        verify_kie_signature(task_id=TASK, timestamp=old, signature=signature, secret=SECRET)
    verify_kie_signature(task_id=TASK, timestamp=old, signature=signature, secret=SECRET, tolerance_seconds=7200)


def test_empty_secret_is_a_configuration_error() -> None:
    with pytest.raises(exc.KontextConfigurationError):
        verify_kie_signature(task_id=TASK, timestamp=TS, signature=sign_webhook("", TASK, TS), secret="", now=NOW)


# ----------------------------------------------------------------------------- payloads


def test_parse_success_payload() -> None:
    callback = parse_kie_callback(success_body())
    assert callback == KieCallback(
        task_id=TASK,
        code=200,
        msg="BFL image generated successfully.",
        result_image_url="https://t.example/r.png",
        origin_image_url="https://t.example/o.png",
    )
    assert callback.succeeded


@pytest.mark.parametrize(
    ("code", "msg"),
    [
        (400, "Your prompt was flagged by Website as violating content policies."),
        (500, "Internal error"),
        (501, "Image generation task failed"),
    ],
)
def test_parse_failure_payload(code: int, msg: str) -> None:
    payload = {"code": code, "msg": msg, "data": {"taskId": TASK, "info": {"originImageUrl": "", "resultImageUrl": ""}}}
    callback = parse_kie_callback(payload)
    assert not callback.succeeded
    assert (callback.code, callback.msg) == (code, msg)
    assert callback.result_image_url is None
    assert callback.origin_image_url is None


def test_parse_quirks() -> None:
    # kie's Chinese sample reads data.task_id; a success may come without resultImageUrl; code as text.
    callback = parse_kie_callback({"code": "200", "data": {"task_id": TASK, "info": {"originImageUrl": "https://o"}}})
    assert callback.task_id == TASK
    assert callback.succeeded
    assert callback.result_image_url is None
    assert callback.origin_image_url == "https://o"
    assert parse_kie_callback(json.dumps({"code": 200, "msg": "ok", "data": {"taskId": TASK}})).msg == "ok"


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"<html>oops</html>",
        b"[1, 2]",
        json.dumps({"msg": "no code", "data": {"taskId": TASK}}).encode(),
        json.dumps({"code": True, "data": {"taskId": TASK}}).encode(),
        json.dumps({"code": 200, "data": None}).encode(),
        json.dumps({"code": 200, "data": {"taskId": ""}}).encode(),
        json.dumps({"code": 200, "data": {"info": {}}}).encode(),
    ],
)
def test_garbage_payload_is_a_response_error(body: bytes) -> None:
    with pytest.raises(exc.KontextResponseError):
        parse_kie_callback(body)


def test_verify_and_parse_matches_headers_case_insensitively() -> None:
    lower = {k.lower(): v for k, v in headers_for().items()}
    callback = verify_and_parse(lower, success_body(), SECRET, now=NOW)
    assert callback.task_id == TASK
    upper = {k.upper(): v for k, v in headers_for().items()}
    assert verify_and_parse(upper, success_body(), SECRET, now=NOW).succeeded


def test_verify_and_parse_refuses_a_body_for_another_task() -> None:
    with pytest.raises(exc.KontextWebhookSignatureError) as info:
        verify_and_parse(headers_for(task_id="someone-elses-task"), success_body(), SECRET, now=NOW)
    assert info.value.reason == "signature_mismatch"
    assert SECRET not in str(info.value)


@pytest.mark.parametrize("missing", ["X-Webhook-Timestamp", "X-Webhook-Signature"])
def test_verify_and_parse_refuses_unsigned_callbacks(missing: str) -> None:
    headers = headers_for()
    del headers[missing]
    with pytest.raises(exc.KontextWebhookSignatureError, match=missing) as info:
        verify_and_parse(headers, success_body(), SECRET, now=NOW)
    assert info.value.reason == "missing_header"


# ----------------------------------------------------------------------------- Market callbacks

MARKET_TASK = "e989621f54392584b05867f87b160672"
MARKET_PARAM = json.dumps(
    {
        "model": "nano-banana-pro",
        "callBackUrl": "https://hooks.test/kie",
        "input": {"prompt": "a comic strip of a cat", "resolution": "1K", "output_format": "png"},
    }
)


def market_success_body(**data: Any) -> dict[str, Any]:
    """The success example of the Market reference's section 3, unabridged where it was abridged."""
    return {
        "code": 200,
        "msg": "Playground task completed successfully.",
        "data": {
            "taskId": MARKET_TASK,
            "model": "nano-banana-pro",
            "state": "success",
            "param": MARKET_PARAM,
            "resultJson": json.dumps({"resultUrls": ["https://tempfile.test/m1.png"]}),
            "consumeCredits": 100,
            "remainedCredits": 2510330,
            "costTime": 8,
            "createTime": 1755599634000,
            "completeTime": 1755599644000,
            "updateTime": 1755599644000,
            **data,
        },
    }


def market_failure_body() -> dict[str, Any]:
    """The failure example of the Market reference's section 3."""
    return {
        "code": 501,
        "msg": "Playground task failed.",
        "data": {
            "taskId": MARKET_TASK,
            "model": "nano-banana-pro",
            "state": "fail",
            "param": MARKET_PARAM,
            "resultJson": "",
            "failCode": "500",
            "failMsg": "Internal server error",
            "consumeCredits": 0,
            "remainedCredits": 2510330,
            "costTime": 8,
            "createTime": 1755599634000,
            "completeTime": 1755599644000,
            "updateTime": 1755599644000,
        },
    }


def test_market_success_callback_reads_into_the_same_record_a_poll_gives() -> None:
    callback = parse_kie_callback(json.dumps(market_success_body()))
    assert (callback.task_id, callback.code) == (MARKET_TASK, 200)
    assert callback.succeeded
    assert callback.result_image_url == "https://tempfile.test/m1.png"
    assert callback.origin_image_url is None
    record = callback.record
    assert record is not None
    assert record.api is ApiFamily.MARKET
    assert record.status is TaskStatus.SUCCESS and record.succeeded
    assert record.kie_task_id == MARKET_TASK
    assert record.credits == 100.0
    assert (record.model, record.prompt) == ("nano-banana-pro", "a comic strip of a cat")
    assert record.complete_time == "2025-08-19T10:34:04+00:00"
    assert record.failure() is None


def test_market_failure_callback_is_a_failed_record_with_kies_code_and_a_refund() -> None:
    callback = parse_kie_callback(market_failure_body())
    assert callback.code == 501
    assert not callback.succeeded
    assert callback.result_image_url is None
    record = callback.record
    assert record is not None
    assert record.status is TaskStatus.GENERATE_FAILED
    assert (record.error_code, record.error_message, record.credits) == (500, "Internal server error", 0.0)
    assert type(record.failure()) is exc.KontextGenerationFailedError


def test_market_callback_with_several_images_keeps_them_all() -> None:
    urls = ["https://tempfile.test/1.png", "https://tempfile.test/2.png", "https://tempfile.test/3.png"]
    callback = parse_kie_callback(market_success_body(resultJson={"resultUrls": urls}))
    assert callback.result_image_url == urls[0]
    assert callback.record is not None and callback.record.result_image_urls == tuple(urls)


def test_market_callback_refused_by_moderation_is_content_policy_by_its_text() -> None:
    payload = market_failure_body()
    payload["data"].update(failCode="400", failMsg="Your prompt was flagged as violating our content policy")
    record = parse_kie_callback(payload).record
    assert record is not None and type(record.failure()) is exc.KontextContentPolicyError


@pytest.mark.parametrize(
    "place",
    [
        lambda p: p["data"],
        lambda p: p["data"].update(task_id=p["data"].pop("taskId")),
        lambda p: p.update(taskId=p["data"].pop("taskId")),
        lambda p: p.update(task_id=p["data"].pop("taskId")),
    ],
    ids=["data.taskId", "data.task_id", "taskId", "task_id"],
)
def test_market_callback_task_id_is_found_wherever_kies_docs_and_samples_put_it(place: Any) -> None:
    payload = market_success_body()
    place(payload)
    callback = parse_kie_callback(payload)
    assert callback.task_id == MARKET_TASK
    assert callback.record is not None and callback.record.kie_task_id == MARKET_TASK


def test_market_callback_without_a_state_takes_it_from_the_code() -> None:
    payload = market_failure_body()
    del payload["data"]["state"]
    record = parse_kie_callback(payload).record
    assert record is not None and record.status is TaskStatus.GENERATE_FAILED
    payload = market_success_body()
    del payload["data"]["state"]
    assert parse_kie_callback(payload).succeeded


def test_market_callback_signature_verifies_over_task_id_and_timestamp() -> None:
    raw = json.dumps(market_success_body()).encode()
    callback = verify_and_parse(headers_for(task_id=MARKET_TASK), raw, SECRET, now=NOW)
    assert callback.succeeded
    with pytest.raises(exc.KontextWebhookSignatureError):
        verify_and_parse(headers_for(task_id=TASK), raw, SECRET, now=NOW)


def test_kontext_callback_also_carries_a_record_whose_failure_is_typed() -> None:
    success = parse_kie_callback(success_body()).record
    assert success is not None
    assert (success.api, success.status, success.result_image_url) == (
        ApiFamily.KONTEXT,
        TaskStatus.SUCCESS,
        "https://t.example/r.png",
    )
    refused = parse_kie_callback(
        {"code": 400, "msg": "flagged", "data": {"taskId": TASK, "info": {"resultImageUrl": ""}}}
    ).record
    assert refused is not None and type(refused.failure()) is exc.KontextContentPolicyError


# ----------------------------------------------------------------------------- end to end


class _Receiver:
    """A tiny callback endpoint on loopback that records each POST and answers 200."""

    def __init__(self) -> None:
        self.received: queue.Queue[tuple[dict[str, str], bytes]] = queue.Queue()
        received = self.received

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                received.put((dict(self.headers.items()), body))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/kie-callback"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def next(self, timeout: float = 15) -> tuple[dict[str, str], bytes]:
        return self.received.get(timeout=timeout)


@pytest.fixture
def receiver() -> Iterator[_Receiver]:
    server = _Receiver()
    server.thread.start()
    try:
        yield server
    finally:
        server.server.shutdown()
        server.server.server_close()
        server.thread.join(timeout=5)


def test_emulator_callback_verifies_end_to_end(emulator: EmulatorServer, receiver: _Receiver) -> None:
    emulator.configure(webhook_hmac_key=SECRET)
    hook = KontextHook()
    task_id = hook.create_task("a signed postcard", callback_url=receiver.url, output_format="png")
    headers, body = receiver.next()
    callback = verify_and_parse(headers, body, SECRET)
    assert callback.task_id == task_id
    assert callback.succeeded
    record = hook.get_task(task_id)
    assert callback.result_image_url == record.result_image_url
    with pytest.raises(exc.KontextWebhookSignatureError):
        verify_and_parse(headers, body, "not-the-key")


def test_emulator_failure_callback_verifies_end_to_end(emulator: EmulatorServer, receiver: _Receiver) -> None:
    emulator.configure(webhook_hmac_key=SECRET)
    task_id = KontextHook().create_task("[emulator:content_policy] nope", callback_url=receiver.url)
    headers, body = receiver.next()
    callback = verify_and_parse(headers, body, SECRET)
    assert callback.task_id == task_id
    assert callback.code == 400
    assert not callback.succeeded
    assert callback.result_image_url is None
