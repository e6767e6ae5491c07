"""``KontextHook``: the kie API over ``requests`` + ``tenacity`` for workers.

A thin transport around :mod:`airflow_provider_kontext._protocol`: it turns each
:class:`~airflow_provider_kontext._protocol.envelope.ApiRequest` into an HTTP exchange, maps
``requests`` failures onto :class:`~airflow_provider_kontext._protocol.envelope.TransportFailure`
and hands the raw answer back to the protocol's parsers. What is retried, how answers are read
and when a wait is over are decided there, not here.
"""

from __future__ import annotations

import dataclasses
import mimetypes
import os
import re
import time
import uuid
from dataclasses import dataclass
from functools import cached_property
from typing import IO, TYPE_CHECKING, Any, NamedTuple, Protocol, TypeVar

import requests
import tenacity
from airflow.providers.common.compat.sdk import BaseHook
from requests.adapters import HTTPAdapter
from urllib3.exceptions import NewConnectionError

from airflow_provider_kontext._protocol.defaults import (
    DEFAULT_CONN_ID,
    DEFAULT_MAX_IMAGE_BYTES,
    DEFAULT_POLL_INTERVAL_SECONDS,
    DEFAULT_TIMEOUT_SECONDS,
)
from airflow_provider_kontext._protocol.envelope import (
    BASE64_UPLOAD_MAX_BYTES,
    ApiRequest,
    Endpoint,
    StreamUploadRequest,
    TransportFailure,
    check_upload_file_name,
    check_upload_path,
    create_request,
    credit_request,
    download_url_request,
    parse_create_response,
    parse_credit_response,
    parse_download_url_response,
    parse_retry_after,
    parse_status_response,
    parse_upload_response,
    status_request,
    transport_error,
    upload_base64_request,
    upload_stream_request,
    upload_url_request,
)
from airflow_provider_kontext._protocol.polling import PollSchedule, TaskWaiter, WaitResult
from airflow_provider_kontext._protocol.ratelimit import CreatePacer, CreateStats
from airflow_provider_kontext._protocol.record import ApiFamily
from airflow_provider_kontext._protocol.request import CreateRequest, GenerateRequest, MarketRequest, check_http_url
from airflow_provider_kontext._protocol.retry import retry_kwargs
from airflow_provider_kontext._protocol.settings import ClientSettings
from airflow_provider_kontext.exceptions import (
    KontextAuthError,
    KontextConfigurationError,
    KontextDownloadError,
    KontextError,
    KontextInsufficientCreditsError,
    KontextRateLimitError,
    KontextServerError,
    KontextServiceUnavailableError,
    KontextValidationError,
)
from airflow_provider_kontext.hooks._host_window import HostWindow

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Mapping, Sequence

    from airflow_provider_kontext._protocol.ratelimit import SlidingWindow
    from airflow_provider_kontext._protocol.record import TaskRecord

T = TypeVar("T")

_CHUNK = 64 * 1024

#: Create failures that every further create of the batch would hit as well: stop, do not go on.
#: A 429 or 455 escapes a create only when the task's deadline has come, which ends the others too.
BATCH_FATAL_ERRORS: tuple[type[KontextError], ...] = (
    KontextAuthError,
    KontextConfigurationError,
    KontextRateLimitError,
    KontextServiceUnavailableError,
)

#: Folder prefix of uploads without an explicit ``upload_path``. Each upload gets its own
#: ``<prefix>/<uuid4>`` folder because kie overwrites a file uploaded again under the same
#: path and name (and its CDN may keep serving the old bytes for a while).
UPLOAD_PATH_PREFIX = "airflow-kontext"


class SupportsOpen(Protocol):
    """Anything that opens as a binary file: an Airflow ``ObjectStoragePath``, a ``pathlib.Path``..."""

    def open(self, mode: str, /) -> Any: ...


#: What :meth:`KontextHook.upload_file` accepts: a local path or an object-storage path.
UploadSource = str | os.PathLike[str] | SupportsOpen


class CreateOutcome(NamedTuple):
    """One request's create: its kie task id or the error that stopped it, and what it cost."""

    kie_task_id: str | None
    error: KontextError | None
    stats: CreateStats


@dataclass(frozen=True)
class DownloadedImage:
    """What :meth:`KontextHook.download_image` wrote: its size, type and where it came from."""

    url: str
    content_type: str
    size: int
    via_download_url: bool


class KontextHook(BaseHook):  # type: ignore[misc,unused-ignore]  # BaseHook is untyped on Airflow 3.0
    """
    Interact with Kie.ai's Flux Kontext API.

    The connection's password is the API key and its host the base URL (default
    ``https://api.kie.ai``; mirrors such as ``https://api.fluxapi.ai`` use the same paths).
    Extras: ``connect_timeout``, ``read_timeout``, ``upload_base_url``, ``max_attempts``,
    ``backoff_initial``, ``backoff_max``.

    :param kontext_conn_id: The Airflow connection to use.
    """

    conn_name_attr = "kontext_conn_id"
    default_conn_name = DEFAULT_CONN_ID
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
        # No hidden urllib3 retries: every resend decision goes through _protocol.retry.
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

    def create_market_task(
        self,
        model: str,
        input: Mapping[str, Any],
        *,
        callback_url: str | None = None,
        allow_uncatalogued_model: bool = False,
    ) -> str:
        """
        Submit one Market task (any model of the catalog and its ``input``); return its kie task id.

        ``input`` is validated against the model catalog before anything is sent; the same money
        rules as :meth:`create_task` apply. ``allow_uncatalogued_model`` opts out of the catalog
        for a model it does not have (see :class:`~._protocol.request.MarketRequest`).
        """
        return self.submit(
            MarketRequest(model, input, callback_url=callback_url, allow_uncatalogued_model=allow_uncatalogued_model)
        )

    def submit(self, request: CreateRequest, *, pacer: CreatePacer | None = None) -> str:
        """Submit an already-validated request of either family; return the kie task id."""
        (outcome,) = self.submit_each([request], pacer=pacer, keep_going=False)
        assert outcome.kie_task_id is not None  # keep_going=False raises instead of yielding an error
        return outcome.kie_task_id

    def get_task(self, kie_task_id: str, *, api: ApiFamily = ApiFamily.KONTEXT, retry: bool = True) -> TaskRecord:
        """The task's record, read where its family keeps it; a task kie has not persisted yet reads as ``PENDING``."""
        api_request = status_request(kie_task_id, api)
        return self._call(
            api_request,
            lambda status, body, headers: parse_status_response(
                api, status, body, headers, task_id=api_request.params["taskId"]
            ),
            retry=retry,
        )

    def get_credits(self) -> float:
        """The account's remaining credit balance."""
        return self._call(credit_request(), parse_credit_response)

    def pacer(self, max_creates_per_window: int | None = None, rate_window_seconds: float | None = None) -> CreatePacer:
        """
        A create pacer for one task: the connection's account limit unless the task names its own.

        With the connection's ``share_rate_limit`` (default on) every process of this host
        that uses the same account shares one window (:mod:`._host_window`).
        """
        settings = self.settings
        window: SlidingWindow | None = None
        if settings.share_rate_limit:
            try:
                window = HostWindow(settings.account_id)
            except OSError as err:
                self.log.warning("Cannot share the create window with other processes (%s); pacing alone.", err)
        return CreatePacer(
            settings.max_creates_per_window if max_creates_per_window is None else max_creates_per_window,
            settings.rate_window_seconds if rate_window_seconds is None else rate_window_seconds,
            retry_policy=settings.retry_policy,
            window=window,
        )

    def submit_each(
        self,
        requests_: Sequence[CreateRequest],
        *,
        pacer: CreatePacer | None = None,
        deadline: float | None = None,
        keep_going: bool = True,
        sleep: Callable[[float], None] = time.sleep,
    ) -> Iterator[CreateOutcome]:
        """
        Submit requests in order, paced to the account's limit; yield one :class:`CreateOutcome` each.

        Each outcome is yielded as soon as it is known, so a caller records an id before the
        next create (a failure part-way leaves those tasks created and billed). 429 and 455
        answers are waited out until ``deadline`` (epoch seconds; default 15 minutes from now),
        since kie dropped those requests unprocessed. With ``keep_going`` a create that failed on its own
        (refused, or an unknown outcome, which is never resent) is yielded with its error and the
        batch goes on; without it, or for errors every further create would hit too (a bad key
        or connection, the deadline), it raises with what was created before it in the message.
        """
        pacer = pacer or self.pacer()
        if deadline is None:
            deadline = time.time() + DEFAULT_TIMEOUT_SECONDS
        created: list[str] = []
        for index, request in enumerate(requests_):
            progress = f"{len(created)} of {len(requests_)} created"
            before = dataclasses.replace(pacer.stats)
            try:
                task_id = self._create(request, pacer, deadline=deadline, progress=progress, sleep=sleep)
            except KontextError as err:
                if keep_going and not isinstance(err, BATCH_FATAL_ERRORS):
                    self.log.warning("Create %d of %d failed; the batch goes on: %s", index + 1, len(requests_), err)
                    yield CreateOutcome(None, err, pacer.stats.since(before))
                    continue
                err.args = (
                    f"{err} (request {index + 1} of {len(requests_)}; {len(created)} task(s) created before it: "
                    f"{created})",
                    *err.args[1:],
                )
                raise
            created.append(task_id)
            yield CreateOutcome(task_id, None, pacer.stats.since(before))
        stats = pacer.stats
        if stats.attempts > stats.accepted or stats.waited_seconds >= 1:
            self.log.info(
                "Creates: %d accepted in %d attempt(s); %d rate limited (429), %d in maintenance (455); "
                "%.1f s spent waiting for the account's limit.",
                stats.accepted,
                stats.attempts,
                stats.rate_limited,
                stats.maintenance,
                stats.waited_seconds,
            )

    def _create(
        self,
        request: CreateRequest,
        pacer: CreatePacer,
        *,
        deadline: float,
        progress: str,
        sleep: Callable[[float], None],
    ) -> str:
        """One create: wait for a slot, send, and resend only what kie provably did not accept."""
        api_request = create_request(request)
        last_refusal: KontextError | None = None
        logged_at = float("-inf")
        while True:
            while (wait := pacer.acquire(time.time())) > 0:
                now = time.time()
                if now + wait > deadline:
                    raise _deadline_error(pacer, last_refusal, now, deadline)
                if last_refusal is not None and now - logged_at >= pacer.window_seconds:
                    logged_at = now
                    limited_for = now - (pacer.refused_since or now)
                    self.log.warning(
                        "Rate limited by kie%s (%s); %s; next try in %.1f s, still trying until %s.",
                        f" for {limited_for:.0f} s" if limited_for >= 1 else "",
                        last_refusal.code,
                        progress,
                        wait,
                        _clock_time(deadline),
                    )
                sleep(wait)
                pacer.stats.waited_seconds += wait
            try:
                status, body, headers = self._exchange(api_request)
                task_id = parse_create_response(api_request.endpoint, status, body, headers)
            except KontextError as err:
                if pacer.on_failure(err, now=time.time()) is None:
                    raise
                last_refusal = err
                continue
            pacer.on_accepted(time.time())
            kind = "edit" if request.is_edit else "text-to-image"
            if isinstance(request, MarketRequest):
                kind = f"{request.model}, {kind}"
            self.log.info("Created kie task %s (%s).", task_id, kind)
            return task_id

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
                waiter.on_record(self.get_task(task_id, api=waiter.api, retry=False), now=clock())
            except KontextError as err:
                waiter.on_error(err, task_id=task_id, now=clock())
                if waiter.outcome(now=clock()) is not None:
                    break
        return waiter.outcome(now=clock())

    def wait_for_tasks(
        self,
        kie_task_ids: Sequence[str],
        *,
        timeout: float = DEFAULT_TIMEOUT_SECONDS,
        poll_interval: float = DEFAULT_POLL_INTERVAL_SECONDS,
        schedule: PollSchedule | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.time,
        api: ApiFamily = ApiFamily.KONTEXT,
    ) -> WaitResult:
        """
        Poll until every task is terminal or ``timeout`` seconds pass; never raises for task failures.

        :param poll_interval: The longest gap between two status-check rounds; the first round
            follows :class:`~airflow_provider_kontext._protocol.polling.PollSchedule`'s default,
            which skips the rounds before any Kontext generation can be done.
        :param schedule: A complete schedule instead (e.g. ``first_delay=0`` for tasks created
            long ago); overrides ``poll_interval``.
        :param api: The tasks' API family (Kontext or Market): where their status is read.
        """
        waiter = TaskWaiter(kie_task_ids, end_time=clock() + timeout, api=api)
        if schedule is None:
            schedule = PollSchedule(interval=poll_interval)
        polls = 0
        while True:
            sleep(schedule.delay(polls, now=clock(), end_time=waiter.end_time))
            polls += 1
            outcome = self.poll(waiter, clock=clock)
            if outcome is not None:
                return outcome
            self.log.info("%s", waiter.progress())

    def wait_for_task(self, kie_task_id: str, **kwargs: Any) -> TaskRecord:
        """Wait for one task and return its record, raising the typed error if it failed or timed out."""
        result = self.wait_for_tasks([kie_task_id], **kwargs)
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
        # A retry after a partial body starts the file over: rewind when the destination can,
        # otherwise a broken body is final (appending a second copy would corrupt the file).
        seekable = getattr(destination, "seekable", None)
        start = destination.tell() if callable(seekable) and seekable() else None
        for attempt in tenacity.Retrying(**retry_kwargs(Endpoint.FILE, self.settings.retry_policy)):
            with attempt:
                if start is not None:
                    destination.seek(start)
                    destination.truncate()
                return self._fetch_once(
                    url,
                    destination,
                    max_bytes=max_bytes,
                    via_download_url=via_download_url,
                    rewindable=start is not None,
                )
        raise AssertionError("unreachable")  # pragma: no cover - tenacity reraises

    def _fetch_once(
        self, url: str, destination: IO[bytes], *, max_bytes: int, via_download_url: bool, rewindable: bool
    ) -> DownloadedImage:
        try:
            response = self.session.get(
                url,
                headers=self.settings.file_headers(),
                stream=True,
                timeout=(self.settings.connect_timeout, self.settings.read_timeout),
            )
        except requests.RequestException as err:
            raise transport_error(Endpoint.FILE, _failure_kind(err), f"fetching {url}: {_describe(err)}") from None
        with response:
            status = response.status_code
            if status in (401, 403, 404, 410) and not via_download_url:
                raise _RefusedFetch(status)
            if status == 429:
                raise KontextRateLimitError(
                    f"Fetching {url} was rate limited (HTTP 429).",
                    http_status=status,
                    retry_after=parse_retry_after(response.headers.get("Retry-After")),
                )
            if status >= 500:
                raise KontextServerError(f"Fetching {url} failed with HTTP {status}.", http_status=status)
            if status != 200:
                raise KontextDownloadError(f"Fetching {url} failed with HTTP {status}.", http_status=status)
            content_type = response.headers.get("Content-Type", "").split(";")[0].strip().lower()
            if not content_type.startswith("image/"):
                raise KontextDownloadError(f"{url} is not an image (Content-Type {content_type!r}).")
            size = 0
            try:
                for chunk in response.iter_content(_CHUNK):
                    size += len(chunk)
                    if size > max_bytes:
                        raise KontextDownloadError(f"{url} is larger than the {max_bytes}-byte limit.")
                    destination.write(chunk)
            except requests.RequestException as err:
                if not rewindable and size:
                    raise KontextDownloadError(
                        f"The download of {url} broke after {size} bytes ({_describe(err)}) and the destination "
                        "cannot be rewound for a retry."
                    ) from None
                raise transport_error(
                    Endpoint.FILE, TransportFailure.DISCONNECTED, f"reading {url}: {_describe(err)}"
                ) from None
            return DownloadedImage(url, content_type, size, via_download_url)

    # ----------------------------------------------------------------- uploads

    def upload_file(self, source: UploadSource, *, upload_path: str | None = None, file_name: str | None = None) -> str:
        """
        Upload a local or object-storage file to kie and return its download URL (for ``input_image``).

        Files up to 1 MiB go through the base64 endpoint; larger ones are streamed as multipart
        (``/api/file-stream-upload``) in chunks, never read into memory whole. Uploads are free
        and create nothing billable, so failures are retried like reads; a retried stream upload
        reopens the source and sends it from the start.

        kie keeps uploads for 24 hours to 3 days (its docs disagree): upload right before the
        edit that uses it, not days ahead.

        :param source: A local path (``str``/``PathLike``) or anything with ``.open("rb")``,
            such as ``airflow.sdk.ObjectStoragePath``. Checked before any request is sent.
        :param upload_path: kie folder; default ``airflow-kontext/<uuid4>``, unique per upload
            because kie overwrites an upload with the same folder and name.
        :param file_name: kie file name; default the source's own name, made filesystem-safe.
        """
        return self._upload(source, upload_path=upload_path, file_name=file_name, field="source")

    def upload_url(self, file_url: str, *, upload_path: str | None = None, file_name: str | None = None) -> str:
        """
        Have kie copy a public http(s) URL (fetched by kie, 30 s timeout) and return the download URL.

        Useful when the source host is slow, short-lived or blocks kie's edit fetcher: the edit
        then reads kie's own copy.
        """
        api_request = upload_url_request(
            file_url, upload_path=new_upload_path() if upload_path is None else upload_path, file_name=file_name
        )
        url = self._call(
            api_request,
            lambda status, body, headers: parse_upload_response(status, body, headers, endpoint=Endpoint.UPLOAD_URL),
        )
        self.log.info("kie copied %s to %s.", file_url, url)
        return url

    def resolve_input_image(self, value: UploadSource | None, *, field: str = "input_image") -> str | None:
        """
        Turn an ``input_image`` value into something kie accepts: an http(s) URL.

        ``None`` stays ``None`` (text-to-image) and an http(s) URL is returned unchanged without
        any request. A local path (``str``/``PathLike``) or an ``ObjectStoragePath`` is uploaded
        and kie's download URL is returned. Anything else, including a string that is neither an
        http(s) URL nor an existing file, raises :class:`KontextValidationError` for
        ``input_image`` (or ``field``: a Market model's image field) before any request, so a typo
        never turns into a paid text-to-image.
        """
        if value is None:
            return None
        if isinstance(value, str) and value.strip().lower().startswith(("http://", "https://")):
            return check_http_url(value, field=field)
        return self._upload(value, upload_path=None, file_name=None, field=field)

    def _upload(self, source: UploadSource, *, upload_path: str | None, file_name: str | None, field: str) -> str:
        folder = check_upload_path(new_upload_path() if upload_path is None else upload_path)
        name = check_upload_file_name(file_name)
        opener, described, source_name = _open_source(source, field=field)
        part_name = name or safe_upload_file_name(source_name)
        with opener() as handle:
            size = _seekable_size(handle)
            small = size is None or size <= BASE64_UPLOAD_MAX_BYTES
            head: bytes = handle.read(BASE64_UPLOAD_MAX_BYTES + 1 if small else 64)
        if not head:
            raise KontextValidationError(f"{field} {described} is empty; kie refuses empty uploads.", field=field)
        content_type = guess_content_type(head, part_name)
        if small and len(head) <= BASE64_UPLOAD_MAX_BYTES:
            api_request = upload_base64_request(
                head, upload_path=folder, file_name=name or part_name, content_type=content_type
            )
            url = self._call(
                api_request,
                lambda status, body, headers: parse_upload_response(
                    status, body, headers, endpoint=Endpoint.UPLOAD_BASE64
                ),
            )
            how = "base64"
        else:
            stream_request = upload_stream_request(
                upload_path=folder,
                file_name=name or part_name,
                part_file_name=part_name or "upload.bin",
                content_type=content_type,
            )
            url = self._stream_upload(stream_request, opener, size)
            how = "multipart stream"
        self.log.info("Uploaded %s to kie (%s, %s): %s", described, how, content_type, url)
        return url

    def _stream_upload(
        self, stream_request: StreamUploadRequest, opener: Callable[[], IO[bytes]], size: int | None
    ) -> str:
        """Send one multipart upload per attempt, each from a freshly opened source."""
        endpoint = stream_request.endpoint
        settings = self.settings
        for attempt in tenacity.Retrying(**retry_kwargs(endpoint, settings.retry_policy)):
            with attempt, opener() as handle:
                body = (
                    _MultipartBody(stream_request, handle)
                    if size is None
                    else _SizedMultipartBody(stream_request, handle, size)
                )
                try:
                    response = self.session.post(
                        settings.url_for(endpoint.path, upload=endpoint.on_upload_host),
                        data=body,
                        headers={**settings.api_headers(), "Content-Type": stream_request.content_type},
                        timeout=(settings.connect_timeout, settings.read_timeout),
                        allow_redirects=False,
                    )
                except requests.RequestException as err:
                    raise transport_error(endpoint, _failure_kind(err), _describe(err)) from None
                return parse_upload_response(
                    response.status_code, response.content, response.headers, endpoint=endpoint
                )
        raise AssertionError("unreachable")  # pragma: no cover - tenacity reraises

    # ----------------------------------------------------------------- transport

    def _call(
        self,
        api_request: ApiRequest,
        parse: Callable[[int, bytes, Mapping[str, str]], T],
        *,
        retry: bool = True,
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


def _deadline_error(pacer: CreatePacer, refusal: KontextError | None, now: float, deadline: float) -> KontextError:
    """The error of a create that ran out of time waiting for the account's limit."""
    if refusal is not None and not isinstance(refusal, KontextRateLimitError | KontextServiceUnavailableError):
        return refusal  # a connection that could not be made: that is the cause, not the limit
    waited = now - pacer.refused_since if pacer.refused_since is not None else pacer.stats.waited_seconds
    cause = f"; kie's last answer: {refusal}" if refusal is not None else ""
    error = KontextRateLimitError(
        f"Gave up creating after waiting {waited:.0f} s for kie's rate limit: the task's deadline "
        f"({_clock_time(deadline)}, its timeout capped by execution_timeout) leaves no time to send it again"
        f"{cause}",
        retry_after=getattr(refusal, "retry_after", None),
        waited_seconds=round(waited, 1),
        code=getattr(refusal, "code", None) or 429,
        endpoint=Endpoint.GENERATE.label,
    )
    if isinstance(refusal, KontextServiceUnavailableError):
        return KontextServiceUnavailableError(error.message, retry_after=refusal.retry_after, code=455)
    return error


def _clock_time(epoch: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(epoch))


def new_upload_path() -> str:
    """A fresh kie upload folder, ``airflow-kontext/<uuid4>``: kie overwrites same path+name."""
    return f"{UPLOAD_PATH_PREFIX}/{uuid.uuid4().hex}"


_UNSAFE_NAME_CHARS = re.compile(r"[^A-Za-z0-9._-]+")

#: Magic bytes of the image types kie's edit accepts, checked before the file name's extension.
_IMAGE_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
)


def safe_upload_file_name(name: str | None) -> str | None:
    """``name``'s last component reduced to ``[A-Za-z0-9._-]``; ``None`` when nothing usable is left."""
    if not name:
        return None
    base = name.replace("\\", "/").rstrip("/").rsplit("/", 1)[-1]
    cleaned = _UNSAFE_NAME_CHARS.sub("_", base).strip("._")[-200:]
    return cleaned or None


def guess_content_type(head: bytes, file_name: str | None) -> str:
    """The upload's MIME type: magic bytes first (names lie), then the name's extension."""
    for magic, mime in _IMAGE_MAGIC:
        if head.startswith(magic):
            return mime
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    guessed = mimetypes.guess_type(file_name)[0] if file_name else None
    return guessed or "application/octet-stream"


def _open_source(source: object, *, field: str) -> tuple[Callable[[], IO[bytes]], str, str | None]:
    """
    Check an upload source and return (opener, description, file name) without sending anything.

    The opener is called once per attempt, so a retried stream upload starts from byte 0.
    """
    from airflow_provider_kontext._compat import is_object_storage_path  # PathLike below Airflow 3.2

    if isinstance(source, (str, os.PathLike)) and not is_object_storage_path(source):
        path = os.fspath(source)
        if not isinstance(path, str) or not path.strip():
            raise KontextValidationError(f"{field} must be a non-empty path, got {source!r}.", field=field)
        if "://" in path:
            raise KontextValidationError(
                f"{field} {path!r} is neither an http(s) URL nor an existing local file; "
                "pass object-storage files as airflow.sdk.ObjectStoragePath.",
                field=field,
            )
        path = os.path.expanduser(path)
        if not os.path.isfile(path):
            raise KontextValidationError(
                f"{field} {path!r} is neither an http(s) URL nor an existing local file.", field=field
            )
        return (lambda: open(path, "rb")), repr(path), os.path.basename(path)
    if callable(getattr(source, "open", None)):
        is_file = getattr(source, "is_file", None)
        if callable(is_file) and not is_file():
            raise KontextValidationError(f"{field} {source} does not exist or is not a file.", field=field)
        openable: Any = source
        name = getattr(source, "name", None)
        return (lambda: openable.open("rb")), str(source), name if isinstance(name, str) else None
    raise KontextValidationError(
        f"{field} must be an http(s) URL, a local path or an ObjectStoragePath, got {type(source).__name__}.",
        field=field,
    )


def _seekable_size(handle: IO[bytes]) -> int | None:
    """Bytes left in ``handle`` when it can seek (local files, fsspec files), else ``None``."""
    try:
        if not handle.seekable():
            return None
        start = handle.tell()
        end = handle.seek(0, os.SEEK_END)
        handle.seek(start)
    except (AttributeError, OSError, ValueError):
        return None
    return max(end - start, 0)


class _MultipartBody:
    """
    A multipart body that reads the file as ``requests``/``urllib3`` pull blocks from it.

    ``requests`` would read a ``files=`` object whole into memory (and ``requests_toolbelt``,
    which streams, is not a dependency); this sends head, file blocks and tail instead. Without
    a length ``requests`` uses chunked transfer encoding.
    """

    def __init__(self, request: StreamUploadRequest, handle: IO[bytes]) -> None:
        self._parts: list[bytes | IO[bytes]] = [request.head(), handle, request.tail()]
        self._sent_file_bytes = 0

    def read(self, size: int = -1) -> bytes:
        block = _CHUNK if size is None or size < 0 else size
        while self._parts:
            part = self._parts[0]
            if isinstance(part, bytes):
                self._parts[0] = part[block:]
                if not self._parts[0]:
                    self._parts.pop(0)
                if part[:block]:
                    return part[:block]
                continue
            data = part.read(block)
            if data:
                self._sent_file_bytes += len(data)
                return data
            self._parts.pop(0)
            self._end_of_file()
        return b""

    def _end_of_file(self) -> None:
        """Hook for the sized body, which must check that the file had the announced length."""

    def __iter__(self) -> Iterator[bytes]:
        while block := self.read(_CHUNK):
            yield block


class _SizedMultipartBody(_MultipartBody):
    """A multipart body with a ``Content-Length``, for sources whose size is known up front."""

    def __init__(self, request: StreamUploadRequest, handle: IO[bytes], file_size: int) -> None:
        super().__init__(request, handle)
        self._file_size = file_size
        self._length = request.body_length(file_size)

    def __len__(self) -> int:
        return self._length

    def _end_of_file(self) -> None:
        if self._sent_file_bytes != self._file_size:
            # The server would wait for the missing bytes (or get extra ones): fail clearly instead.
            raise KontextValidationError(
                f"The upload source changed size while it was sent ({self._file_size} bytes announced, "
                f"{self._sent_file_bytes} read).",
                field="source",
            )


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


__all__ = ["CreateOutcome", "DownloadedImage", "KontextHook", "SupportsOpen", "UploadSource", "new_upload_path"]
