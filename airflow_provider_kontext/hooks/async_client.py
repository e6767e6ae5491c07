"""``AsyncKontextClient``: the read side of the kie API over aiohttp, for the triggerer.

It can read task records and the credit balance and nothing else: a trigger may run twice
(triggerer restart, HA takeover), so the client it uses cannot create a task by construction.

Everything it knows about the protocol comes from :mod:`airflow_provider_kontext._protocol`,
the same parsers and retry rules as the sync hook. aiohttp rather than httpx: it costs less CPU
per poll, and the triggerer's capacity depends on that.

All triggers of one connection in one triggerer process share one keep-alive
``ClientSession`` (:func:`shared_client`), so a thousand waiting images cost a pool of
connections, not a thousand.

A status poll is the triggerer's hot path: a single
attempt skips tenacity's per-call machinery, the headers and each task's record-info URL are
built once per client rather than once per request, an answer identical to the task's previous
one is not parsed again, and a many-id wait runs a few workers instead of one task per id.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass
from http import HTTPStatus
from typing import TYPE_CHECKING, Any, TypeVar

import aiohttp
import tenacity
from yarl import URL

from airflow_provider_kontext._protocol.envelope import (
    ApiRequest,
    Endpoint,
    TransportFailure,
    credit_request,
    parse_credit_response,
    parse_status_response,
    status_endpoint,
    status_request,
    transport_error,
)
from airflow_provider_kontext._protocol.record import ApiFamily
from airflow_provider_kontext._protocol.retry import retry_kwargs
from airflow_provider_kontext._protocol.settings import ClientSettings
from airflow_provider_kontext.exceptions import KontextError

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Mapping

    from airflow_provider_kontext._protocol.polling import TaskWaiter, WaitResult
    from airflow_provider_kontext._protocol.record import TaskRecord

T = TypeVar("T")

#: Concurrent status reads one wait may have in flight; kie documents ~10 polls/s per key.
DEFAULT_POLL_CONCURRENCY = 8
#: Connections one shared session keeps to kie.
POOL_SIZE = 32


class AsyncKontextClient:
    """
    Read task records and credits from kie without blocking the event loop.

    :param settings: Where and how to reach kie (see :meth:`from_connection`).
    :param session: The aiohttp session to use; the caller owns it.
    """

    def __init__(self, settings: ClientSettings, session: aiohttp.ClientSession) -> None:
        self.settings = settings
        self._session = session
        # Built once: a poll loop sends the same headers and the same few URLs thousands of times.
        self._headers = settings.api_headers()
        self._record_urls: dict[tuple[ApiFamily, str], tuple[URL, str]] = {}
        self._last_answers: dict[tuple[ApiFamily, str], tuple[bytes, TaskRecord]] = {}
        self._timeout = aiohttp.ClientTimeout(
            total=None,  # a total alone can hang on a silent socket (aiohttp#11740); bound each phase
            connect=settings.connect_timeout,
            sock_connect=settings.connect_timeout,
            sock_read=settings.read_timeout,
        )

    def __repr__(self) -> str:
        return f"{type(self).__name__}(base_url={self.settings.base_url!r})"

    @staticmethod
    async def settings_for_connection(conn_id: str) -> ClientSettings:
        """Look the connection up without blocking the loop (async secrets backends, API client)."""
        from airflow.providers.common.compat.connection import get_async_connection, get_async_extra_dejson

        conn = await get_async_connection(conn_id)
        return ClientSettings.from_connection_fields(
            conn_id,
            host=conn.host,
            password=conn.password,
            extra=await get_async_extra_dejson(conn),
            schema=conn.schema,
            port=conn.port,
        )

    async def get_task(self, kie_task_id: str, *, api: ApiFamily = ApiFamily.KONTEXT, retry: bool = True) -> TaskRecord:
        """The task's record, read where its family keeps it; a task kie has not persisted yet reads as ``PENDING``."""
        if retry:
            api_request = status_request(kie_task_id, api)
            checked_id = api_request.params["taskId"]
            return await self._call(
                api_request,
                lambda status, body, headers: parse_status_response(api, status, body, headers, task_id=checked_id),
            )
        key = (api, kie_task_id)
        cached = self._record_urls.get(key)
        if cached is None:
            api_request = status_request(kie_task_id, api)
            url = URL(self.settings.url_for(api_request.path)).with_query(api_request.params)
            cached = self._record_urls[key] = (url, api_request.params["taskId"])
        url, checked_id = cached
        # The poll loop's single attempt: no tenacity, no request object, a prebuilt URL.
        status, body, headers = await self._send(status_endpoint(api), "GET", url)
        last = self._last_answers.get(key)
        if last is not None and status == HTTPStatus.OK and last[0] == body:
            # A running task answers the same bytes poll after poll; parsing is pure, so the
            # record is the one parsed last time. Only successful answers are remembered, so an
            # error's Retry-After (the one header parsing reads) is always read afresh.
            return last[1]
        record = parse_status_response(api, status, body, headers, task_id=checked_id)
        if status == HTTPStatus.OK:
            self._last_answers[key] = (body, record)
        return record

    async def get_credits(self) -> float:
        return await self._call(credit_request(), parse_credit_response)

    async def poll(
        self,
        waiter: TaskWaiter,
        *,
        concurrency: int = DEFAULT_POLL_CONCURRENCY,
        clock: Callable[[], float] = time.time,
    ) -> WaitResult | None:
        """
        Check every unfinished task of ``waiter`` once, at most ``concurrency`` at a time.

        One attempt per task, as in :meth:`KontextHook.poll`: the waiter's tolerance of
        transient failures across polls is the retry.
        """
        ids = waiter.pending_ids()
        pending = iter(ids)

        async def worker() -> None:
            # ``concurrency`` workers share one iterator rather than one task per id behind a
            # semaphore: a 100-id batch costs 8 tasks a round, not 100 tasks and 100 wake-ups.
            for task_id in pending:
                try:
                    record = await self.get_task(task_id, api=waiter.api, retry=False)
                except KontextError as err:
                    waiter.on_error(err, task_id=task_id, now=clock())
                else:
                    waiter.on_record(record, now=clock())

        workers = min(max(1, concurrency), len(ids))
        if workers == 1:
            await worker()  # one id (the common single-image wait): no task at all
        else:
            await asyncio.gather(*(worker() for _ in range(workers)))
        return waiter.outcome(now=clock())

    async def _call(
        self,
        api_request: ApiRequest,
        parse: Callable[[int, bytes, Mapping[str, str]], T],
    ) -> T:
        kwargs = retry_kwargs(api_request.endpoint, self.settings.retry_policy)
        async for attempt in tenacity.AsyncRetrying(**kwargs):
            with attempt:
                status, body, headers = await self._exchange(api_request)
                return parse(status, body, headers)
        raise AssertionError("unreachable")  # pragma: no cover - tenacity reraises

    async def _exchange(self, api_request: ApiRequest) -> tuple[int, bytes, Mapping[str, str]]:
        endpoint = api_request.endpoint
        url = self.settings.url_for(api_request.path, upload=endpoint.on_upload_host)
        return await self._send(
            endpoint, api_request.method, url, params=dict(api_request.params) or None, json=api_request.json_body
        )

    async def _send(
        self,
        endpoint: Endpoint,
        method: str,
        url: str | URL,
        *,
        params: Mapping[str, str] | None = None,
        json: Mapping[str, Any] | None = None,
    ) -> tuple[int, bytes, Mapping[str, str]]:
        try:
            async with self._session.request(
                method,
                url,
                params=params,
                json=json,
                headers=self._headers,
                timeout=self._timeout,
                allow_redirects=False,
            ) as response:
                body = await response.read()
                return response.status, body, response.headers
        except (aiohttp.ClientError, TimeoutError) as err:
            raise transport_error(endpoint, _failure_kind(err), f"{type(err).__name__}: {err!s:.200}") from None


#: How long one connection lookup serves the triggers that start after it on the same loop.
SETTINGS_REUSE_SECONDS = 5.0

#: (event loop id, conn id) -> (when the lookup started, the lookup).
_SETTINGS: dict[tuple[int, str], tuple[float, asyncio.Task[ClientSettings]]] = {}


async def shared_settings(conn_id: str, *, clock: Callable[[], float] = time.monotonic) -> ClientSettings:
    """
    :meth:`AsyncKontextClient.settings_for_connection`, shared by triggers that start together.

    A triggerer (re)starting a thousand waits would otherwise ask the secrets backend a thousand
    times in the same second (a parse of an environment variable at best, a network call with
    Vault or a cloud secrets manager). A lookup in flight is joined, a finished one is
    reused for :data:`SETTINGS_REUSE_SECONDS`, a failed one is forgotten at once, so an edited
    connection is seen by triggers that start a few seconds later and an error is never cached.
    """
    loop = asyncio.get_running_loop()
    key = (id(loop), conn_id)
    now = clock()
    entry = _SETTINGS.get(key)
    if entry is None or now - entry[0] >= SETTINGS_REUSE_SECONDS or entry[1].get_loop() is not loop:
        for stale in [k for k, (started, _) in _SETTINGS.items() if now - started >= SETTINGS_REUSE_SECONDS]:
            del _SETTINGS[stale]  # other loops' and expired lookups: keep the table tiny
        lookup = loop.create_task(AsyncKontextClient.settings_for_connection(conn_id))
        _SETTINGS[key] = entry = (now, lookup)

        def forget_failure(task: asyncio.Task[ClientSettings]) -> None:
            if (task.cancelled() or task.exception() is not None) and _SETTINGS.get(key, (0.0, None))[1] is task:
                del _SETTINGS[key]

        lookup.add_done_callback(forget_failure)
    # shield: one waiter being cancelled (its trigger killed) must not cancel the others' lookup.
    return await asyncio.shield(entry[1])


def _failure_kind(err: BaseException) -> TransportFailure:
    if isinstance(err, (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError)):
        return TransportFailure.CONNECT
    if isinstance(err, (aiohttp.SocketTimeoutError, TimeoutError)):
        return TransportFailure.READ_TIMEOUT
    return TransportFailure.DISCONNECTED


@dataclass
class _Pool:
    session: aiohttp.ClientSession
    users: int = 0


#: One session per (event loop, connection settings) in this process.
_POOLS: dict[tuple[int, str], _Pool] = {}


def _pool_key(settings: ClientSettings) -> tuple[int, str]:
    # The key is a digest, so the API key is not kept in plain text even in process memory indexes.
    digest = hashlib.sha256(f"{settings.base_url}\0{settings.api_key}".encode()).hexdigest()
    return id(asyncio.get_running_loop()), digest


@asynccontextmanager
async def shared_client(settings: ClientSettings) -> AsyncIterator[AsyncKontextClient]:
    """
    An :class:`AsyncKontextClient` on the keep-alive session shared by every user of the same settings.

    The session is created by the first user on this event loop and closed when the last one
    leaves, so an idle triggerer holds no sockets.
    """
    key = _pool_key(settings)
    pool = _POOLS.get(key)
    if pool is None or pool.session.closed:
        connector = aiohttp.TCPConnector(limit=POOL_SIZE, keepalive_timeout=30)
        pool = _POOLS[key] = _Pool(
            aiohttp.ClientSession(connector=connector, headers={"User-Agent": settings.user_agent})
        )
    pool.users += 1
    try:
        yield AsyncKontextClient(settings, pool.session)
    finally:
        pool.users -= 1
        if pool.users == 0 and _POOLS.get(key) is pool:
            del _POOLS[key]
            await pool.session.close()
