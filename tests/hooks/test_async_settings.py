"""``shared_settings``: triggers that start together share one connection lookup, never a failure."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from airflow_provider_kontext.exceptions import KontextConfigurationError
from airflow_provider_kontext.hooks import async_client
from airflow_provider_kontext.hooks.async_client import AsyncKontextClient, shared_settings
from tests.conftest import connection_json

CONN_ID = "kontext_shared_settings"
ENV = f"AIRFLOW_CONN_{CONN_ID.upper()}"


@pytest.fixture
def lookups(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every real lookup made, by conn id."""
    seen: list[str] = []
    real = AsyncKontextClient.settings_for_connection

    async def counting(conn_id: str) -> Any:
        seen.append(conn_id)
        await asyncio.sleep(0.01)  # like a remote secrets backend: the lookup suspends
        return await real(conn_id)

    monkeypatch.setattr(AsyncKontextClient, "settings_for_connection", staticmethod(counting))
    monkeypatch.setattr(async_client, "_SETTINGS", {})
    return seen


async def test_concurrent_and_soon_after_starts_share_one_lookup(
    lookups: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(ENV, connection_json("http://127.0.0.1:9"))
    first = await asyncio.gather(*(shared_settings(CONN_ID) for _ in range(50)))
    later = await shared_settings(CONN_ID)
    assert lookups == [CONN_ID]
    assert all(s is first[0] for s in [*first, later])


async def test_reuse_expires(lookups: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV, connection_json("http://127.0.0.1:9"))
    now = [1000.0]
    before = await shared_settings(CONN_ID, clock=lambda: now[0])
    monkeypatch.setenv(ENV, connection_json("http://127.0.0.1:10"))
    now[0] += async_client.SETTINGS_REUSE_SECONDS
    after = await shared_settings(CONN_ID, clock=lambda: now[0])
    assert (before.base_url, after.base_url) == ("http://127.0.0.1:9", "http://127.0.0.1:10")
    assert len(lookups) == 2


async def test_a_failed_lookup_is_not_reused(lookups: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV, '{"conn_type": "kontext"}')
    results = await asyncio.gather(*(shared_settings(CONN_ID) for _ in range(3)), return_exceptions=True)
    assert all(isinstance(r, KontextConfigurationError) for r in results)
    monkeypatch.setenv(ENV, connection_json("http://127.0.0.1:9"))
    assert (await shared_settings(CONN_ID)).base_url == "http://127.0.0.1:9"
    assert len(lookups) == 2


async def test_a_cancelled_waiter_does_not_cancel_the_others(
    lookups: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(ENV, connection_json("http://127.0.0.1:9"))
    doomed = asyncio.ensure_future(shared_settings(CONN_ID))
    survivor = asyncio.ensure_future(shared_settings(CONN_ID))
    await asyncio.sleep(0)
    doomed.cancel()
    assert (await survivor).base_url == "http://127.0.0.1:9"
    assert lookups == [CONN_ID]
