"""``KontextHook``: the kie API over ``requests`` + ``tenacity`` for workers.

A thin transport around :mod:`airflow_provider_kontext.protocol`: it turns each
:class:`~airflow_provider_kontext.protocol.envelope.ApiRequest` into an HTTP exchange, maps
``requests`` failures onto :class:`~airflow_provider_kontext.protocol.envelope.TransportFailure`
and hands the raw answer back to the protocol's parsers. What is retried, how answers are read
and when a wait is over are decided there, not here.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from functools import cached_property
from typing import IO, TYPE_CHECKING, Any, TypeVar

import requests
import tenacity
from airflow.providers.common.compat.sdk import BaseHook
from requests.adapters import HTTPAdapter
from urllib3.exceptions import NewConnectionError

from airflow_provider_kontext.exceptions import (
    KontextError,
    KontextInsufficientCreditsError,
    KontextResponseError,
    KontextServerError,
)
from airflow_provider_kontext.protocol.envelope import (
    ApiRequest,
    Endpoint,
    TransportFailure,
    credit_request,
    download_url_request,
    generate_request,
    parse_credit_response,
    parse_download_url_response,
    parse_generate_response,
    parse_record_info_response,
    record_info_request,
    transport_error,
)
from airflow_provider_kontext.protocol.polling import (
    DEFAULT_POLL_INTERVAL_SECONDS,
    DEFAULT_TIMEOUT_SECONDS,
    PollSchedule,
    TaskWaiter,
    WaitResult,
)
from airflow_provider_kontext.protocol.ratelimit import CreateRateLimiter
from airflow_provider_kontext.protocol.request import GenerateRequest, check_http_url
from airflow_provider_kontext.protocol.retry import retry_kwargs
from airflow_provider_kontext.protocol.settings import ClientSettings

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence

    from airflow_provider_kontext.protocol.record import TaskRecord

T = TypeVar("T")

#: Refuse result files larger than this; a Kontext image is a few MB at most.
DEFAULT_MAX_IMAGE_BYTES = 50 * 1024 * 1024
_CHUNK = 64 * 1024


@dataclass(frozen=True)
class DownloadedImage:
    """What :meth:`KontextHook.download_image` wrote: its size, type and where it came from."""

    url: str
    content_type: str
    size: int
    via_download_url: bool


class KontextHook(BaseHook):
    """
    Interact with Kie.ai's Flux Kontext API.

    The connection's password is the API key and its host the base URL (default
    ``https://api.kie.ai``; mirrors such as ``https://api.fluxapi.ai`` use the same paths).
    Extras: ``connect_timeout``, ``read_timeout``, ``upload_base_url``, ``max_attempts``,
    ``backoff_initial``, ``backoff_max``.

    :param kontext_conn_id: The Airflow connection to use.
    """

    conn_name_attr = "kontext_conn_id"
    default_conn_name = "kontext_default"
    conn_type = "kontext"
    hook_name = "Kie.ai Flux Kontext"

    def __init__(self, kontext_conn_id: str = default_conn_name, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.kontext_conn_id = kontext_conn_id

    def __repr__(self) -> str:
        return f"{type(self).__name__}(kontext_conn_id={self.kontext_conn_id!r})"

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        """Connection form layout for Airflow versions that read it from the hook (before 3.2)."""
        from airflow_provider_kontext import get_provider_info

        behaviour: dict[str, Any] = get_provider_info()["connection-types"][0]["ui-field-behaviour"]
        return behaviour

    @cached_property
    def settings(self) -> ClientSettings:
        """The connection, read once per hook; a missing API key fails here naming the connection."""
        conn = self.get_connection(self.kontext_conn_id)
        return ClientSettings.from_connection_fields(
            self.kontext_conn_id,
            host=conn.host,
            password=conn.password,
            extra=conn.extra_dejson,
            schema=conn.schema,
            port=conn.port,
        )

    @cached_property
    def session(self) -> requests.Session:
        """One keep-alive session per hook. No Authorization here: it is added per API call only."""
        session = requests.Session()
        # No hidden urllib3 retries: every resend decision goes through protocol.retry.
        adapter = HTTPAdapter(max_retries=0, pool_connections=4, pool_maxsize=16)
        session.mount("http://", adapter)
        session.mount("https://", adapter)
        session.headers["User-Agent"] = self.settings.user_agent
        return session

    def get_conn(self) -> requests.Session:
        return self.session

    def close(self) -> None:
        if "session" in self.__dict__:
            self.session.close()
            del self.__dict__["session"]

    # ----------------------------------------------------------------- API calls

    def create_task(self, prompt: str, **fields: Any) -> str:
        """
        Submit one generate (or edit, with ``input_image``) task and return its kie task id.

        Fields are validated before anything is sent. The POST is resent only when kie cannot
        have accepted it (connection never made, 429, 455); an ambiguous failure raises
        :class:`~airflow_provider_kontext.exceptions.KontextSubmissionOutcomeUnknownError`.
        """
        return self.submit(GenerateRequest.from_fields(prompt, **fields))

    def submit(self, request: GenerateRequest) -> str:
        """Submit an already-validated :class:`GenerateRequest`; return the kie task id."""
        task_id = self._call(generate_request(request), parse_generate_response)
        self.log.info("Created kie task %s (%s).", task_id, "edit" if request.is_edit else "text-to-image")
        return task_id

    def get_task(self, task_id: str, *, retry: bool = True) -> TaskRecord:
        """The task's record; a task kie has not persisted yet reads as ``PENDING``."""
        api_request = record_info_request(task_id)
        return self._call(
            api_request,
            lambda status, body, headers: parse_record_info_response(
                status, body, headers, task_id=api_request.params["taskId"]
            ),
            retry=retry,
            task_id=task_id,
        )

    def get_credits(self) -> float:
        """The account's remaining credit balance."""
        return self._call(credit_request(), parse_credit_response)

    def submit_many(
        self,
        requests_: Sequence[GenerateRequest],
        *,
        limiter: CreateRateLimiter | None = None,
        on_created: Callable[[list[str]], None] | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> list[str]:
        """
        Submit several requests in order, paced by ``limiter``; return their kie task ids in order.

        ``on_created`` sees the ids created so far after every create, so a caller can record
        them before the next one (a failure part-way leaves those tasks created and billed).
        A failed create stops the batch and raises; the ids created before it are in the
        error message.
        """
        limiter = limiter or CreateRateLimiter()
        created: list[str] = []
        for index, request in enumerate(requests_):
            wait = limiter.delay()
            if wait > 0:
                sleep(wait)
            limiter.record()
            try:
                created.append(self.submit(request))
            except KontextError as err:
                err.args = (
                    f"{err} (request {index + 1} of {len(requests_)}; {len(created)} task(s) created before it: "
                    f"{created})",
                    *err.args[1:],
                )
                raise
            if on_created is not None:
                on_created(list(created))
        return created

    def ensure_credits(self, min_credits: float) -> float:
        """Read the balance and refuse to go on below ``min_credits``, before anything is spent."""
        balance = self.get_credits()
        if balance < min_credits:
            raise KontextInsufficientCreditsError(
                f"kie balance is {balance:g} credits, below the required min_credits={min_credits:g}; "
                "nothing was submitted."
            )
        self.log.info("kie balance: %g credits (min_credits %g).", balance, min_credits)
        return balance

    def get_download_url(self, url: str) -> str:
        """A fresh 20-minute download link for a kie-generated file."""
        return self._call(download_url_request(url), parse_download_url_response)

    def test_connection(self) -> tuple[bool, str]:
        """Check the key with the credits endpoint, which creates nothing and costs nothing."""
        try:
            balance = self.get_credits()
        except KontextError as err:
            return False, str(err)
        return True, f"Connected to {self.settings.base_url}; remaining credits: {balance:g}."

    # ----------------------------------------------------------------- waiting

    def poll(self, waiter: TaskWaiter, *, clock: Callable[[], float] = time.time) -> WaitResult | None:
        """
        Check every unfinished task of ``waiter`` once and return its outcome (``None``: keep waiting).

        One attempt per task and no retry loop: the waiter's tolerance of transient failures
        across polls is the retry, exactly as in the trigger.
        """
        for task_id in waiter.pending_ids():
            try:
                waiter.on_record(self.get_task(task_id, retry=False), now=clock())
            except KontextError as err:
                waiter.on_error(err, task_id=task_id, now=clock())
                if waiter.outcome(now=clock()) is not None:
                    break
        return waiter.outcome(now=clock())

    def wait_for_tasks(
        self,
        task_ids: Sequence[str],
        *,
        timeout: float = DEFAULT_TIMEOUT_SECONDS,
        poll_interval: float = DEFAULT_POLL_INTERVAL_SECONDS,
        first_poll_delay: float | None = 0.0,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.time,
    ) -> WaitResult:
        """Poll until every task is terminal or ``timeout`` seconds pass; never raises for task failures."""
        waiter = TaskWaiter(task_ids, end_time=clock() + timeout)
        schedule = PollSchedule(interval=poll_interval, first_delay=first_poll_delay)
        polls = 0
        while True:
            sleep(schedule.delay(polls, now=clock(), end_time=waiter.end_time))
            polls += 1
            outcome = self.poll(waiter, clock=clock)
            if outcome is not None:
                return outcome
            done = len(waiter.kie_task_ids) - len(waiter.pending_ids())
            failed = sum(1 for record in waiter.records if record.is_terminal and not record.succeeded)
            self.log.info("kie tasks: %d/%d done, %d failed.", done, len(waiter.kie_task_ids), failed)

    def wait_for_task(self, task_id: str, **kwargs: Any) -> TaskRecord:
        """Wait for one task and return its record, raising the typed error if it failed or timed out."""
        result = self.wait_for_tasks([task_id], **kwargs)
        result.raise_for_status()
        return result.records[0]

    # ----------------------------------------------------------------- result files

    def download_image(
        self, url: str, destination: IO[bytes], *, max_bytes: int = DEFAULT_MAX_IMAGE_BYTES
    ) -> DownloadedImage:
        """
        Stream a result image into ``destination`` without buffering it whole.

        The request carries no Authorization header (result files live on third-party storage).
        If the storage refuses a direct fetch (401/403/404/410), kie's download-url endpoint is
        asked for a fresh link and that is fetched instead.
        """
        check_http_url(url, field="url")
        try:
            return self._stream_file(url, destination, max_bytes=max_bytes, via_download_url=False)
        except _RefusedFetch as refused:
            self.log.info("Direct fetch of %s refused (HTTP %d); asking kie for a download link.", url, refused.status)
        return self._stream_file(self.get_download_url(url), destination, max_bytes=max_bytes, via_download_url=True)

    def _stream_file(
        self, url: str, destination: IO[bytes], *, max_bytes: int, via_download_url: bool
    ) -> DownloadedImage:
        for attempt in tenacity.Retrying(**retry_kwargs(Endpoint.FILE, self.settings.retry_policy)):
            with attempt:
                try:
                    response = self.session.get(
                        url,
                        headers=self.settings.file_headers(),
                        stream=True,
                        timeout=(self.settings.connect_timeout, self.settings.read_timeout),
                    )
                except requests.RequestException as err:
                    raise transport_error(Endpoint.FILE, _failure_kind(err), f"fetching {url}: {err}") from None
                with response:
                    if response.status_code in (401, 403, 404, 410) and not via_download_url:
                        raise _RefusedFetch(response.status_code)
                    if response.status_code >= 500:
                        raise KontextServerError(f"Fetching {url} failed with HTTP {response.status_code}.")
                    if response.status_code != 200:
                        raise KontextResponseError(f"Fetching {url} failed with HTTP {response.status_code}.")
                    content_type = response.headers.get("Content-Type", "").split(";")[0].strip().lower()
                    if not content_type.startswith("image/"):
                        raise KontextResponseError(f"{url} is not an image (Content-Type {content_type!r}).")
                    size = 0
                    for chunk in response.iter_content(_CHUNK):
                        size += len(chunk)
                        if size > max_bytes:
                            raise KontextResponseError(f"{url} is larger than the {max_bytes}-byte limit.")
                        destination.write(chunk)
                    return DownloadedImage(url, content_type, size, via_download_url)
        raise AssertionError("unreachable")  # pragma: no cover - tenacity reraises

    # ----------------------------------------------------------------- transport

    def _call(
        self,
        api_request: ApiRequest,
        parse: Callable[[int, bytes, Mapping[str, str]], T],
        *,
        retry: bool = True,
        task_id: str | None = None,
    ) -> T:
        kwargs = retry_kwargs(api_request.endpoint, self.settings.retry_policy)
        if not retry:
            kwargs["stop"] = tenacity.stop_after_attempt(1)
        for attempt in tenacity.Retrying(**kwargs):
            with attempt:
                status, body, headers = self._exchange(api_request)
                return parse(status, body, headers)
        raise AssertionError("unreachable")  # pragma: no cover - tenacity reraises

    def _exchange(self, api_request: ApiRequest) -> tuple[int, bytes, Mapping[str, str]]:
        settings = self.settings
        endpoint = api_request.endpoint
        try:
            response = self.session.request(
                api_request.method,
                settings.url_for(api_request.path, upload=endpoint.on_upload_host),
                params=dict(api_request.params) or None,
                json=api_request.json_body,
                headers=settings.api_headers(),
                timeout=(settings.connect_timeout, settings.read_timeout),
                allow_redirects=False,
            )
        except requests.RequestException as err:
            raise transport_error(endpoint, _failure_kind(err), _describe(err)) from None
        return response.status_code, response.content, response.headers


class _RefusedFetch(Exception):
    def __init__(self, status: int) -> None:
        self.status = status


def _failure_kind(err: requests.RequestException) -> TransportFailure:
    """Map a ``requests`` error onto what decides whether a create may be resent."""
    if isinstance(err, requests.ConnectTimeout):
        return TransportFailure.CONNECT
    if isinstance(err, requests.ReadTimeout):
        return TransportFailure.READ_TIMEOUT
    if isinstance(err, requests.ConnectionError):
        reason = err.args[0] if err.args else None
        reason = getattr(reason, "reason", reason)  # urllib3 MaxRetryError wraps the cause
        if isinstance(reason, NewConnectionError):  # refused, unreachable, DNS failure
            return TransportFailure.CONNECT
    return TransportFailure.DISCONNECTED


def _describe(err: requests.RequestException) -> str:
    """A short cause without the URL's query string or any header."""
    return type(err).__name__ + (f": {err.args[0]!s:.200}" if err.args else "")


__all__ = ["DownloadedImage", "KontextHook"]
