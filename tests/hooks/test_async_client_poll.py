"""The async client's poll path: bounded concurrency, and a repeated answer is not parsed twice."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import aiohttp
import pytest

from airflow_provider_kontext._protocol.polling import TaskWaiter
from airflow_provider_kontext._protocol.record import ApiFamily, TaskRecord, TaskStatus
from airflow_provider_kontext._protocol.settings import ClientSettings
from airflow_provider_kontext.exceptions import KontextRateLimitError, KontextTransportError
from airflow_provider_kontext.hooks import async_client
from airflow_provider_kontext.hooks.async_client import AsyncKontextClient


def running_body(task_id: str) -> bytes:
    data = {"taskId": task_id, "successFlag": 0, "paramJson": '{"prompt": "p"}', "createTime": "2026-01-01T00:00:00Z"}
    return json.dumps({"code": 200, "msg": "success", "data": data}).encode()


def market_running_body(task_id: str) -> bytes:
    """A Market answer: ``param`` is the create request as a JSON string, parsed with the record."""
    param = {"model": "flux-2/pro-text-to-image", "input": {"prompt": "p", "aspect_ratio": "1:1", "resolution": "1K"}}
    data = {
        "taskId": task_id,
        "model": "flux-2/pro-text-to-image",
        "state": "generating",
        "param": json.dumps(param),
        "resultJson": "",
        "failCode": "",
        "failMsg": "",
        "createTime": 1767225600000,
        "progress": 40,
    }
    return json.dumps({"code": 200, "msg": "success", "data": data}).encode()


BODIES = {ApiFamily.KONTEXT: running_body, ApiFamily.MARKET: market_running_body}


class ScriptedClient(AsyncKontextClient):
    """Answers from a script instead of the network, and counts requests in flight."""

    def __init__(self, answers: list[tuple[int, bytes]] | None = None) -> None:
        super().__init__(ClientSettings(api_key="k"), session=None)  # type: ignore[arg-type]
        self.answers = answers or []
        self.in_flight = 0
        self.max_in_flight = 0

    async def _send(self, endpoint: Any, method: str, url: Any, **kwargs: Any) -> tuple[int, bytes, dict[str, str]]:
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        await asyncio.sleep(0.001)
        self.in_flight -= 1
        if self.answers:
            status, body = self.answers.pop(0)
            return status, body, {}
        return 200, running_body(url.query["taskId"]), {}


@pytest.mark.parametrize(("ids", "concurrency", "expected"), [(20, 8, 8), (3, 8, 3), (1, 8, 1), (5, 1, 1)])
async def test_poll_checks_every_id_with_bounded_concurrency(ids: int, concurrency: int, expected: int) -> None:
    client = ScriptedClient()
    waiter = TaskWaiter([f"t{n}" for n in range(ids)], end_time=time.time() + 60)
    assert await client.poll(waiter, concurrency=concurrency) is None
    assert client.max_in_flight == expected
    assert all(record.status is TaskStatus.GENERATING for record in waiter.records)


@pytest.mark.parametrize("api", list(ApiFamily))
async def test_the_same_answer_gives_the_same_record_without_parsing(
    monkeypatch: pytest.MonkeyPatch, api: ApiFamily
) -> None:
    parsed: list[bytes] = []
    real = async_client.parse_status_response

    def counting(api: ApiFamily, status: int, body: bytes, headers: Any, *, task_id: str) -> TaskRecord:
        parsed.append(body)
        return real(api, status, body, headers, task_id=task_id)

    monkeypatch.setattr(async_client, "parse_status_response", counting)
    body = BODIES[api]("t1")
    client = ScriptedClient([(200, body), (200, body), (200, body.replace(b'"progress": 40', b'"progress": 41'))])
    first = await client.get_task("t1", api=api, retry=False)
    second = await client.get_task("t1", api=api, retry=False)
    assert first is second
    assert first.status is TaskStatus.GENERATING
    assert len(parsed) == 1
    if api is ApiFamily.MARKET:  # new bytes (kie's progress moved) are parsed again
        assert await client.get_task("t1", api=api, retry=False) is not first
        assert len(parsed) == 2


async def test_an_error_answer_is_parsed_every_time() -> None:
    limited = json.dumps({"code": 429, "msg": "slow down"}).encode()
    client = ScriptedClient([(200, running_body("t1")), (200, limited), (200, limited), (200, running_body("t1"))])
    record = await client.get_task("t1", retry=False)
    for _ in range(2):
        with pytest.raises(KontextRateLimitError):
            await client.get_task("t1", retry=False)
    assert await client.get_task("t1", retry=False) is record


async def test_record_urls_carry_the_task_id_as_a_query() -> None:
    async with aiohttp.ClientSession() as session:
        client = AsyncKontextClient(ClientSettings(api_key="k", base_url="http://127.0.0.1:9"), session)
        with pytest.raises(KontextTransportError):  # nothing listens on port 9; only the URL matters
            await client.get_task("a b&c", retry=False)
    url, checked = client._record_urls[ApiFamily.KONTEXT, "a b&c"]
    assert (url.path, url.query["taskId"], checked) == ("/api/v1/flux/kontext/record-info", "a b&c", "a b&c")


async def test_a_market_task_is_read_at_the_jobs_endpoint() -> None:
    async with aiohttp.ClientSession() as session:
        client = AsyncKontextClient(ClientSettings(api_key="k", base_url="http://127.0.0.1:9"), session)
        with pytest.raises(KontextTransportError):
            await client.get_task("t1", api=ApiFamily.MARKET, retry=False)
    url, _ = client._record_urls[ApiFamily.MARKET, "t1"]
    assert (url.path, url.query["taskId"]) == ("/api/v1/jobs/recordInfo", "t1")
