"""Everything the emulator remembers, with no I/O.

Kept free of HTTP, asyncio and Pillow so that the tricky rules (task timing, the sliding-window
rate limit, credits, fault queues, file expiry) can be unit-tested with a fake clock, and so that
tests can read and steer the same object in-process that the HTTP server uses. All public methods
take one lock because the server's event loop and a test thread touch the state concurrently.

Both of kie's APIs live here side by side: Flux Kontext tasks and Market jobs are the same
:class:`Task` (``api`` tells them apart), created through the same credit check and counters,
under the one create window kie applies per account.
"""

from __future__ import annotations

import dataclasses
import json
import re
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from airflow_provider_kontext.emulator.chaos import AppliedFault, FaultSpec, RandomFaults
from airflow_provider_kontext.emulator.routes import CREATE_ENDPOINTS

if TYPE_CHECKING:
    from collections.abc import Sequence

    from airflow_provider_kontext.emulator.config import EmulatorConfig
    from airflow_provider_kontext.emulator.market import MarketOrder

__all__ = [
    "CALLBACK_LOG_LIMIT",
    "ENDPOINTS",
    "FAULT_KINDS",
    "MARKET_PHASES",
    "MARKET_STATES",
    "Api",
    "CallbackAttempt",
    "Clock",
    "EmulatorState",
    "Fault",
    "FileTarget",
    "Outcome",
    "SlidingWindowLimiter",
    "StoredFile",
    "Task",
    "outcome_for_prompt",
    "rejected_after_accept",
]

Clock = Callable[[], float]
#: Which of kie's APIs a task was created through.
Api = Literal["kontext", "market"]

#: Names used for request counters and fault injection, one per emulated endpoint.
ENDPOINTS: tuple[str, ...] = (
    "generate",
    "record-info",
    "jobs-create",
    "jobs-record-info",
    "credit",
    "download-url",
    "upload-stream",
    "upload-url",
    "upload-base64",
    "file",
)
FAULT_KINDS: frozenset[str] = frozenset(
    {
        "code",
        "http",
        "malformed_json",
        "html",
        "empty_body",
        "drop",
        "drop_after_accept",
        "slow",
        "forbidden",
    }
)
#: Body codes kie documents for its JSON envelope; a ``code`` fault must use one of them.
FAULT_BODY_CODES: frozenset[int] = frozenset({401, 402, 404, 422, 429, 455, 500, 501, 505})
#: ``stats()`` returns only the newest callback attempts so it stays cheap under benchmarks.
CALLBACK_LOG_LIMIT = 200
_USER_AGENT_LIMIT = 20


@dataclass(frozen=True)
class Outcome:
    """
    How a task ends: what record-info and the callback report once it is terminal.

    ``success_flag`` to ``callback_msg`` are the Flux Kontext view; ``fail_code``/``fail_msg``
    are the Market view of the same end (``failCode`` is a numeric *string* there).
    """

    success_flag: int
    error_code: int | None
    error_message: str
    callback_code: int
    callback_msg: str
    has_result_url: bool = True
    fail_code: str = ""
    fail_msg: str = ""

    @property
    def succeeded(self) -> bool:
        """True for ``successFlag == 1``: only then does the task have image files."""
        return self.success_flag == 1


SUCCESS = Outcome(1, None, "", 200, "BFL image generated successfully.")
NO_URL = Outcome(1, None, "", 200, "BFL image generated successfully.", has_result_url=False)
_FLAGGED = "Your prompt was flagged by Website as violating content policies."
#: Market has no documented refusal text; this reads like kie's, and clients should match on text.
_MARKET_FLAGGED = "The content violates our content policy. Please modify your prompt and try again."
CONTENT_POLICY = Outcome(3, 400, _FLAGGED, 400, _FLAGGED, fail_code="400", fail_msg=_MARKET_FLAGGED)
#: The same refusal under code 500: Market's failCode for a refusal is undocumented ("400", "500"
#: or "501"), so a client that classifies by code instead of text is caught by this one.
CONTENT_POLICY_500 = Outcome(3, 500, _FLAGGED, 500, _FLAGGED, fail_code="500", fail_msg=_MARKET_FLAGGED)
GENERATE_FAILED = Outcome(
    3,
    501,
    "Image generation task failed",
    501,
    "Image generation task failed",
    fail_code="501",
    fail_msg="Generation failed, please try again later.",
)
CREATE_FAILED = Outcome(
    2,
    500,
    "Internal error, please try again later.",
    500,
    "Internal error, please try again later.",
    fail_code="500",
    fail_msg="Internal server error",
)
INPUT_FAILED = Outcome(
    3,
    501,
    "Image generation task failed: inputImage could not be loaded",
    501,
    "Image generation task failed",
    fail_code="501",
    fail_msg="Generation failed: the input image could not be loaded",
)

_MARKERS: tuple[tuple[str, Outcome], ...] = (
    ("[emulator:content_policy_500]", CONTENT_POLICY_500),
    ("[emulator:content_policy]", CONTENT_POLICY),
    ("[emulator:generate_failed]", GENERATE_FAILED),
    ("[emulator:create_failed]", CREATE_FAILED),
    ("[emulator:internal_error]", CREATE_FAILED),
    ("[emulator:no_url]", NO_URL),
)
_SLOW_MARKER = re.compile(r"\[emulator:slow=(\d+(?:\.\d+)?)\]")


def outcome_for_prompt(prompt: str, default_seconds: float) -> tuple[Outcome, float]:
    """Read the ``[emulator:...]`` markers of a prompt: the terminal outcome and the duration.

    Markers let a test or demo pick a failure mode through the public API alone, exactly as a
    real prompt would travel, without any back channel into the emulator.
    """
    outcome = SUCCESS
    for marker, marked in _MARKERS:
        if marker in prompt:
            outcome = marked
            break
    slow = _SLOW_MARKER.search(prompt)
    return outcome, float(slow.group(1)) if slow else default_seconds


def rejected_after_accept(reason: str) -> Outcome:
    """A task kie accepted and then failed on its parameters (recordInfo: "422, see failMsg")."""
    return Outcome(3, 422, reason, 501, reason, fail_code="422", fail_msg=reason)


#: Market states before the end, each from its share of the generation time onwards.
MARKET_PHASES: tuple[tuple[str, float], ...] = (("waiting", 0.0), ("queuing", 0.2), ("generating", 0.4))
MARKET_STATES: tuple[str, ...] = (*(name for name, _ in MARKET_PHASES), "success", "fail")


@dataclass
class Task:
    """One generation task. Its status is derived from the clock, never stored."""

    task_id: str
    params: dict[str, Any]
    prompt: str
    model: str
    output_format: str
    aspect_ratio: str | None
    input_image: str | None
    callback_url: str | None
    watermark: str | None
    base_url: str
    created_at: float
    duration: float
    outcome: Outcome
    #: True while an edit's input image is still being fetched; the task stays running until then.
    input_pending: bool = False
    ready_at: float | None = None
    #: Rendered image bytes by result index, cached so that polls and repeated downloads never re-render.
    results: dict[int, bytes] = field(default_factory=dict)
    api: Api = "kontext"
    #: Images the task returns (Market: ``max_images``/``num_images``/``n``; Kontext: always 1).
    image_count: int = 1
    #: Market: the task's price, what ``creditsConsumed`` reports once it succeeds.
    price: float = 0.0
    #: Credits taken from the balance for this task right now (a failed Market task's are refunded).
    charged: float = 0.0
    #: Market: drawn on the images instead of the prompt (models without one name their input).
    caption_base: str | None = None

    @property
    def param_json(self) -> str:
        """The request parameters as kie returns them: a JSON *string* inside the JSON record."""
        return json.dumps(self.params, separators=(",", ":"), ensure_ascii=False)

    def caption(self, index: int) -> str:
        """Text drawn on result ``index``; several images of one task get distinct captions (and pictures)."""
        base = self.caption_base if self.caption_base is not None else self.prompt
        return f"{base} ({index + 1}/{self.image_count})" if self.image_count > 1 else base

    def result_key_at(self, index: int) -> str:
        """File-store key of result ``index`` (Kontext's single result keeps its historic key)."""
        if self.api == "kontext":
            return self.result_key
        return f"results/{self.task_id}_{index}.{self.extension}"

    def result_index(self, suffix: str) -> int | None:
        """The result index named by a key's ``_N`` suffix ("" for Kontext), or None if there is none such."""
        if self.api == "kontext":
            return 0 if suffix == "" else None
        if not (suffix.isascii() and suffix.isdigit()) or str(int(suffix)) != suffix:
            return None
        index = int(suffix)
        return index if index < self.image_count else None

    @property
    def extension(self) -> str:
        """File extension of the result, as kie's storage URLs use it."""
        return "png" if self.output_format == "png" else "jpg"

    @property
    def content_type(self) -> str:
        """MIME type of the result file."""
        return "image/png" if self.output_format == "png" else "image/jpeg"

    @property
    def result_key(self) -> str:
        """File-store key of the result image (14-day storage in real kie)."""
        return f"results/{self.task_id}.{self.extension}"

    @property
    def origin_key(self) -> str:
        """File-store key of the short-lived upstream copy (``originImageUrl``)."""
        return f"origin/{self.task_id}.{self.extension}"

    def completes_at(self) -> float | None:
        """When the task turns terminal, or ``None`` while its input image is still loading."""
        if self.input_pending:
            return None
        end = self.created_at + self.duration
        return end if self.ready_at is None else max(end, self.ready_at)

    def is_terminal(self, now: float) -> bool:
        """Whether record-info reports the final ``successFlag`` at ``now``."""
        done = self.completes_at()
        return done is not None and now >= done

    def market_phase(self, now: float) -> tuple[str, float, int]:
        """
        Market ``state`` at ``now``, when that state began, and ``progress`` (0-100).

        Derived from the clock like everything else, so ``finish_now`` or a fake clock moves a
        task through ``waiting`` -> ``queuing`` -> ``generating`` -> ``success``/``fail``.
        """
        done = self.completes_at()
        if done is not None and now >= done:
            return ("success" if self.outcome.succeeded else "fail"), done, 100
        share = (now - self.created_at) / self.duration if self.duration > 0 else 0.0
        name, begins = MARKET_PHASES[0]
        for phase, start in MARKET_PHASES:
            if share >= start:
                name, begins = phase, start
        last_start = MARKET_PHASES[-1][1]
        progress = min(99, round((share - last_start) / (1 - last_start) * 100)) if name == "generating" else 0
        return name, self.created_at + begins * self.duration, progress


@dataclass
class StoredFile:
    """An uploaded file: bytes kept in memory until ``expires_at``."""

    data: bytes
    content_type: str
    created_at: float
    expires_at: float


@dataclass(frozen=True)
class FileTarget:
    """What a ``/files/...`` path resolves to: stored bytes, or a task whose result is served."""

    content_type: str
    data: bytes | None = None
    task: Task | None = None
    #: Which of the task's results (Market tasks may have several).
    index: int = 0


@dataclass
class Fault:
    """A queued misbehaviour for the next ``remaining`` requests of one endpoint."""

    endpoint: str
    kind: str
    remaining: int
    params: dict[str, Any] = field(default_factory=dict)

    def matches(self, path: str) -> bool:
        """Whether this fault applies to a request for ``path`` (only file faults filter).

        ``forbidden`` models a storage host refusing a *direct* fetch, so by default it spares
        the temporary links handed out by download-url; that is what lets a client's fallback work.
        """
        prefix = self.params.get("path_prefix")
        if isinstance(prefix, str):
            return path.startswith(prefix)
        if self.kind == "forbidden":
            return not path.startswith("/files/dl/")
        return True

    def as_dict(self) -> dict[str, Any]:
        """JSON view for the stats and the control API."""
        return {"endpoint": self.endpoint, "kind": self.kind, "remaining": self.remaining, **self.params}


@dataclass(frozen=True)
class CallbackAttempt:
    """One POST to a ``callBackUrl``, successful or not."""

    task_id: str
    url: str
    attempt: int
    code: int
    at: float
    ok: bool
    http_status: int | None
    error: str | None
    timestamp_header: str | None
    signature_header: str | None

    def as_dict(self) -> dict[str, Any]:
        """JSON view for the stats and the control API."""
        return {
            "taskId": self.task_id,
            "url": self.url,
            "attempt": self.attempt,
            "code": self.code,
            "at": self.at,
            "ok": self.ok,
            "http_status": self.http_status,
            "error": self.error,
            "timestamp": self.timestamp_header,
            "signature": self.signature_header,
        }


class SlidingWindowLimiter:
    """At most ``limit`` acquisitions within any ``window`` seconds (kie: 20 creates per 10 s).

    A true sliding window rather than fixed buckets, because clients that pace themselves with a
    sliding window of their own must never see a 429 that a bucket boundary would cause.
    """

    def __init__(self, limit: int, window: float, clock: Clock) -> None:
        self._limit = limit
        self._window = window
        self._clock = clock
        self._stamps: deque[float] = deque()
        self._held = 0
        self._held_until = 0.0

    def hold(self, creates: int, seconds: float | None = None) -> None:
        """
        Let another client of the same account use ``creates`` of every window, for ``seconds``
        (``None``: for good, ``0`` creates: stop). kie's limit is per account, so what others
        send is simply not there for us; modelled as a smaller limit while it lasts.
        """
        if creates < 0 or (seconds is not None and seconds < 0):
            raise ValueError("creates and seconds must not be negative")
        self._held = creates
        self._held_until = float("inf") if seconds is None else self._clock() + seconds

    def _limit_now(self, now: float) -> int:
        return max(self._limit - self._held, 0) if now < self._held_until else self._limit

    def configure(self, limit: int, window: float) -> None:
        """Change limits live; recorded acquisitions stay and count against the new limit."""
        self._limit = limit
        self._window = window

    def _expire(self, now: float) -> None:
        while self._stamps and self._stamps[0] <= now - self._window:
            self._stamps.popleft()

    def try_acquire(self) -> bool:
        """Record one acquisition and return True, or return False if the window is full."""
        now = self._clock()
        self._expire(now)
        if len(self._stamps) >= self._limit_now(now):
            return False
        self._stamps.append(now)
        return True

    def seconds_until_free(self) -> float:
        """How long until one more acquisition would succeed (0 if it would now)."""
        now = self._clock()
        self._expire(now)
        limit = self._limit_now(now)
        if len(self._stamps) < limit:
            return 0.0
        if not self._stamps or limit == 0:
            return max(0.0, self._held_until - now) if self._held_until != float("inf") else self._window
        return max(0.0, self._stamps[len(self._stamps) - limit] + self._window - now)

    def in_window(self) -> int:
        """Acquisitions still inside the window."""
        self._expire(self._clock())
        return len(self._stamps)

    def clear(self) -> None:
        """Forget all acquisitions and any other client's hold."""
        self._stamps.clear()
        self._held = 0
        self._held_until = 0.0


class EmulatorState:
    """The emulator's memory: config, tasks, files, counters, credits, rate limit and faults."""

    def __init__(self, config: EmulatorConfig, clock: Clock = time.time) -> None:
        self._lock = threading.RLock()
        self._clock = clock
        self._base_config = config
        self._config = config
        self._limiter = SlidingWindowLimiter(config.rate_limit_creates, config.rate_limit_window_seconds, clock)
        self._init_memory()

    def _init_memory(self) -> None:
        self._tasks: dict[str, Task] = {}
        self._uploads: dict[str, StoredFile] = {}
        self._links: dict[str, tuple[str, float]] = {}
        self._faults: dict[str, deque[Fault]] = {name: deque() for name in ENDPOINTS}
        self._faults_applied: dict[str, dict[str, int]] = {}
        self._fault_log: list[AppliedFault] = []
        self._random_faults: RandomFaults | None = None
        self._requests: dict[str, int] = dict.fromkeys(ENDPOINTS, 0)
        self._callbacks: deque[CallbackAttempt] = deque(maxlen=CALLBACK_LOG_LIMIT)
        self._user_agents: dict[str, None] = {}
        self._credits = float(self._config.credits)
        #: Failed-to-be Market tasks whose held credits go back once they end (kie: "held, then refunded").
        self._refunds: dict[str, Task] = {}
        self._credits_refunded = 0.0
        self._creates_by_api: dict[str, int] = {"kontext": 0, "market": 0}
        self._counters: dict[str, int] = {
            "creates_accepted": 0,
            "creates_rejected_rate_limit": 0,
            "creates_rejected_credits": 0,
            "creates_rejected_validation": 0,
            "auth_failures": 0,
            "api_requests": 0,
            "api_requests_without_user_agent": 0,
            "file_requests": 0,
            "file_requests_with_auth": 0,
            "callbacks_delivered": 0,
            "callbacks_failed": 0,
        }
        self._credits_spent = 0.0
        self._last_user_agent: str | None = None
        self._limiter.clear()
        self._limiter.configure(self._config.rate_limit_creates, self._config.rate_limit_window_seconds)

    # ----------------------------------------------------------------------------- config & clock

    def now(self) -> float:
        """Current time of the injected clock (epoch seconds by default)."""
        return self._clock()

    @property
    def config(self) -> EmulatorConfig:
        """The config in force right now."""
        return self._config

    def replace_config(self, config: EmulatorConfig) -> None:
        """Adopt ``config`` as both the current and the reset baseline (used by ``create_app``)."""
        with self._lock:
            self._base_config = config
            self._apply_config(config)

    def update_config(self, **overrides: Any) -> EmulatorConfig:
        """Change config values live; ``credits`` also sets the current balance."""
        with self._lock:
            self._apply_config(self._config.with_overrides(overrides))
            if "credits" in overrides:
                self._credits = float(self._config.credits)
            return self._config

    def _apply_config(self, config: EmulatorConfig) -> None:
        self._config = config
        self._limiter.configure(config.rate_limit_creates, config.rate_limit_window_seconds)

    def reset(self, **overrides: Any) -> EmulatorConfig:
        """Forget everything and return to the initial config plus ``overrides``."""
        with self._lock:
            self._config = self._base_config.with_overrides(overrides)
            self._init_memory()
            return self._config

    # ----------------------------------------------------------------------------- request counters

    def count_request(self, endpoint: str, *, user_agent: str | None, has_auth: bool) -> None:
        """Count one request; API requests record their User-Agent, files whether they sent auth."""
        with self._lock:
            self._requests[endpoint] = self._requests.get(endpoint, 0) + 1
            if endpoint == "file":
                self._counters["file_requests"] += 1
                if has_auth:
                    self._counters["file_requests_with_auth"] += 1
                return
            self._counters["api_requests"] += 1
            self._last_user_agent = user_agent
            if user_agent is None:
                self._counters["api_requests_without_user_agent"] += 1
            elif user_agent not in self._user_agents and len(self._user_agents) < _USER_AGENT_LIMIT:
                self._user_agents[user_agent] = None

    def count_auth_failure(self) -> None:
        """Count an ``/api`` request refused with body code 401."""
        with self._lock:
            self._counters["auth_failures"] += 1

    def count_validation_rejection(self) -> None:
        """Count a create refused by parameter validation (422, or 500: tolerance, Market's 500 mode)."""
        with self._lock:
            self._counters["creates_rejected_validation"] += 1

    # ----------------------------------------------------------------------------- rate limit

    def try_rate_limited_create(self) -> bool:
        """Pass one create through the sliding window; False (and counted) when it is full."""
        with self._lock:
            if self._limiter.try_acquire():
                return True
            self._counters["creates_rejected_rate_limit"] += 1
            return False

    def share_account(self, creates: int, seconds: float | None = None) -> None:
        """Another client of this account uses ``creates`` of each create window (see ``SlidingWindowLimiter.hold``)."""
        with self._lock:
            self._limiter.hold(creates, seconds)

    def rate_limit_seconds_until_free(self) -> float:
        """Seconds until the create window has room again."""
        with self._lock:
            return self._limiter.seconds_until_free()

    # ----------------------------------------------------------------------------- credits & tasks

    @property
    def credits(self) -> float:
        """Current credit balance."""
        with self._lock:
            self._settle_refunds()
            return self._credits

    def create_task(self, params: Mapping[str, Any], *, base_url: str) -> Task | None:
        """Charge the model's cost and store a new Flux Kontext task, or return None if credits are short.

        ``params`` must already be validated; the task remembers them for ``paramJson``. Kontext
        charges at create whatever the outcome, as the emulator always has.
        """
        with self._lock:
            config = self._config
            model = str(params.get("model") or "flux-kontext-pro")
            prompt = str(params["prompt"])
            outcome, duration = outcome_for_prompt(prompt, config.generation_seconds)
            input_image = params.get("inputImage") or None
            aspect = params.get("aspectRatio") or (None if input_image else "16:9")
            task = Task(
                task_id=uuid.uuid4().hex,
                params=dict(params),
                prompt=prompt,
                model=model,
                output_format=str(params.get("outputFormat") or "jpeg"),
                aspect_ratio=aspect,
                input_image=input_image,
                callback_url=params.get("callBackUrl") or None,
                watermark=params.get("watermark") or None,
                base_url=base_url,
                created_at=self._clock(),
                duration=duration,
                outcome=outcome,
                input_pending=input_image is not None and outcome.succeeded,
            )
            return self._admit(task, config.cost_of(model))

    def create_market_task(self, order: MarketOrder, *, base_url: str) -> Task | None:
        """
        Hold the order's price and store a new Market task, or return None if credits are short.

        The price is held at create (so concurrent creates cannot overspend) and handed back
        when a task ends in ``fail``: kie bills successes only.
        """
        with self._lock:
            outcome, duration = outcome_for_prompt(order.prompt, self._config.generation_seconds)
            if order.late_failure is not None:
                outcome = rejected_after_accept(order.late_failure)
            task = Task(
                task_id=uuid.uuid4().hex,
                params=dict(order.body),
                prompt=order.prompt,
                model=order.model,
                output_format=order.output_format,
                aspect_ratio=order.aspect_ratio,
                input_image=None,
                callback_url=order.callback_url,
                watermark=None,
                base_url=base_url,
                created_at=self._clock(),
                duration=duration,
                outcome=outcome,
                api="market",
                image_count=order.images,
                price=order.price,
                caption_base=order.caption,
            )
            return self._admit(task, order.price)

    def _admit(self, task: Task, cost: float) -> Task | None:
        """The one credit check and bookkeeping of every accepted create, whichever API (lock held)."""
        self._settle_refunds()
        if self._credits < cost:
            self._counters["creates_rejected_credits"] += 1
            return None
        self._credits -= cost
        self._credits_spent += cost
        task.charged = cost
        self._tasks[task.task_id] = task
        self._counters["creates_accepted"] += 1
        self._creates_by_api[task.api] += 1
        if task.api == "market" and not task.outcome.succeeded:
            self._refunds[task.task_id] = task
        return task

    def _settle_refunds(self) -> None:
        """Give back what failed Market tasks held, once they have failed (lock held)."""
        if not self._refunds:
            return
        now = self._clock()
        for task_id, task in list(self._refunds.items()):
            if task.is_terminal(now):
                self._credits += task.charged
                self._credits_spent -= task.charged
                self._credits_refunded += task.charged
                task.charged = 0.0
                del self._refunds[task_id]

    def get_task(self, task_id: str) -> Task | None:
        """The task with this id, if the emulator knows it."""
        with self._lock:
            return self._tasks.get(task_id)

    def finish_now(self, task_id: str) -> None:
        """
        End the task's generation now, with the outcome it would have had (no-op once it ended).

        For tests that need a task still running until a moment they choose rather than for a
        number of seconds, which a loaded machine can outlast: create it slow, finish it when
        what must see it running has.
        """
        with self._lock:
            task = self._tasks[task_id]
            task.duration = min(task.duration, max(0.0, self._clock() - task.created_at))

    def task_ids(self) -> list[str]:
        """Ids of every task created since the last reset, oldest first."""
        with self._lock:
            return list(self._tasks)

    def record_visible(self, task: Task) -> bool:
        """False while record-info should still answer ``recordInfo is null`` for a fresh task."""
        return self._clock() - task.created_at >= self._config.record_info_null_seconds

    def finish_input(self, task_id: str, result: bytes | None) -> None:
        """Mark an edit's input as handled: store the rendered result, or fail the task."""
        with self._lock:
            task = self._tasks.get(task_id)
            if task is None:
                return
            task.input_pending = False
            task.ready_at = self._clock()
            if result is None:
                task.outcome = INPUT_FAILED
            else:
                task.results[0] = result

    def store_result(self, task_id: str, data: bytes, index: int = 0) -> None:
        """Cache a lazily rendered result so it is rendered once per task and index."""
        with self._lock:
            task = self._tasks.get(task_id)
            if task is not None:
                task.results.setdefault(index, data)

    # ----------------------------------------------------------------------------- files

    def store_upload(self, key: str, data: bytes, content_type: str) -> StoredFile:
        """Store (or overwrite, as kie does for the same path) an uploaded file."""
        with self._lock:
            now = self._clock()
            stored = StoredFile(data, content_type, now, now + self._config.upload_ttl_seconds)
            self._uploads[key] = stored
            return stored

    def create_download_link(self, target_key: str, name: str) -> str:
        """Register a temporary link to ``target_key`` and return its file-store key."""
        with self._lock:
            token = uuid.uuid4().hex
            self._links[token] = (target_key, self._clock() + self._config.download_url_ttl_seconds)
            return f"dl/{token}/{name}"

    def resolve_file(self, key: str) -> FileTarget | None:
        """What the file-store key ``key`` (path after ``/files/``) serves right now, if anything."""
        with self._lock:
            return self._resolve(key, self._clock(), follow_links=True)

    def _resolve(self, key: str, now: float, *, follow_links: bool) -> FileTarget | None:
        kind, _, rest = key.partition("/")
        if kind in ("results", "origin"):
            stem, dot, ext = rest.partition(".")
            task_id, _, suffix = stem.partition("_")
            task = self._tasks.get(task_id)
            if task is None or not dot or ext != task.extension:
                return None
            index = task.result_index(suffix)
            if index is None or not task.is_terminal(now) or not task.outcome.succeeded:
                return None
            if kind == "origin":
                done = task.completes_at()
                if task.api != "kontext" or done is None or now >= done + self._config.origin_url_ttl_seconds:
                    return None
            return FileTarget(content_type=task.content_type, task=task, index=index)
        if kind == "uploads":
            stored = self._uploads.get(key)
            if stored is None or now >= stored.expires_at:
                return None
            return FileTarget(content_type=stored.content_type, data=stored.data)
        if kind == "dl" and follow_links:
            token = rest.partition("/")[0]
            link = self._links.get(token)
            if link is None or now >= link[1]:
                return None
            return self._resolve(link[0], now, follow_links=False)
        return None

    # ----------------------------------------------------------------------------- faults

    def inject_fault(self, endpoint: str, kind: str, count: int = 1, **params: Any) -> Fault:
        """Queue a fault for the next ``count`` requests of ``endpoint`` (FIFO per endpoint)."""
        fault = _validated_fault(endpoint, kind, count, params)
        with self._lock:
            self._faults[endpoint].append(fault)
        return fault

    def take_fault(self, endpoint: str, path: str = "") -> Fault | None:
        """Consume one use of the oldest fault for ``endpoint`` that applies to ``path``."""
        applied = self.apply_fault(endpoint, path)
        return applied[0] if applied is not None else None

    def apply_fault(
        self, endpoint: str, path: str = "", *, task_id: str | None = None
    ) -> tuple[Fault, AppliedFault] | None:
        """
        The fault for this request, if any, and its log entry: a queued fault first, else a random one.

        ``task_id`` (the polled task, when the caller knows it) goes into the log; the caller
        may add the prompt or the created task id later with :meth:`annotate_fault`.
        """
        with self._lock:
            fault = self._next_queued(endpoint, path)
            drawn = fault is None
            if fault is None and self._random_faults is not None:
                spec = self._random_faults.draw(endpoint)
                if spec is not None:
                    params = {name: value for name, value in spec.items() if name != "kind"}
                    fault = _validated_fault(endpoint, str(spec["kind"]), 1, params)
            if fault is None:
                return None
            counts = self._faults_applied.setdefault(endpoint, {})
            counts[fault.kind] = counts.get(fault.kind, 0) + 1
            entry = AppliedFault(
                seq=len(self._fault_log),
                endpoint=endpoint,
                kind=fault.kind,
                params=dict(fault.params),
                random=drawn,
                task_id=task_id,
            )
            self._fault_log.append(entry)
            return fault, entry

    def _next_queued(self, endpoint: str, path: str) -> Fault | None:
        queue = self._faults.get(endpoint)
        if not queue:
            return None
        for fault in queue:
            if fault.matches(path):
                fault.remaining -= 1
                if fault.remaining <= 0:
                    queue.remove(fault)
                return fault
        return None

    def annotate_fault(self, entry: AppliedFault, *, prompt: str | None = None, task_id: str | None = None) -> None:
        """Add what the fault layer learnt about a faulted request after taking the fault."""
        with self._lock:
            if prompt is not None:
                entry.prompt = prompt
            if task_id is not None:
                entry.task_id = task_id

    def inject_random_faults(
        self,
        rate: float,
        seed: int,
        *,
        endpoints: Sequence[str] | None = None,
        kinds: Mapping[str, Sequence[FaultSpec]] | None = None,
    ) -> RandomFaults:
        """
        Fault about ``rate`` of the requests at random, reproducibly for ``seed`` (replaces any earlier plan).

        Defaults: every create fault kind on both create endpoints, transient faults on the reads
        (:data:`~.chaos.DEFAULT_RANDOM_FAULTS`). Queued faults still come first. Every spec is
        checked here, so a typo fails at once instead of mid-soak.
        """
        plan = RandomFaults.build(rate, seed, endpoints=endpoints, kinds=kinds)
        for endpoint, specs in plan.catalogue.items():
            for spec in specs:
                params = {name: value for name, value in spec.items() if name != "kind"}
                _validated_fault(endpoint, str(spec["kind"]), 1, params)
        with self._lock:
            self._random_faults = plan
        return plan

    def applied_faults(self) -> list[AppliedFault]:
        """Every fault applied since the last reset, in the order applied (copies)."""
        with self._lock:
            return [dataclasses.replace(entry, params=dict(entry.params)) for entry in self._fault_log]

    def clear_faults(self) -> None:
        """Drop all pending faults and stop random ones."""
        with self._lock:
            for queue in self._faults.values():
                queue.clear()
            self._random_faults = None

    def pending_faults(self) -> list[dict[str, Any]]:
        """Queued faults, oldest first per endpoint."""
        with self._lock:
            return [fault.as_dict() for queue in self._faults.values() for fault in queue]

    # ----------------------------------------------------------------------------- callbacks

    def log_callback(self, attempt: CallbackAttempt) -> None:
        """Record one callback delivery attempt."""
        with self._lock:
            self._callbacks.append(attempt)
            self._counters["callbacks_delivered" if attempt.ok else "callbacks_failed"] += 1

    def callback_log(self, task_id: str | None = None) -> list[dict[str, Any]]:
        """Recent callback attempts, optionally for one task, oldest first."""
        with self._lock:
            return [a.as_dict() for a in self._callbacks if task_id is None or a.task_id == task_id]

    # ----------------------------------------------------------------------------- introspection

    def task_summary(self, task_id: str) -> dict[str, Any] | None:
        """Inspection view of one task for tests (not part of the kie API)."""
        with self._lock:
            task = self._tasks.get(task_id)
            if task is None:
                return None
            now = self._clock()
            return {
                "taskId": task.task_id,
                "api": task.api,
                "params": dict(task.params),
                "prompt": task.prompt,
                "model": task.model,
                "images": task.image_count,
                "price": task.price,
                "charged": task.charged,
                "state": task.market_phase(now)[0] if task.api == "market" else None,
                "createdAt": task.created_at,
                "duration": task.duration,
                "completesAt": task.completes_at(),
                "terminal": task.is_terminal(now),
                "successFlag": task.outcome.success_flag if task.is_terminal(now) else 0,
                "outcome": {
                    "successFlag": task.outcome.success_flag,
                    "errorCode": task.outcome.error_code,
                    "errorMessage": task.outcome.error_message,
                    "hasResultUrl": task.outcome.has_result_url,
                    "failCode": task.outcome.fail_code,
                    "failMsg": task.outcome.fail_msg,
                },
                "inputPending": task.input_pending,
                "rendered": bool(task.results),
            }

    def stats(self) -> dict[str, Any]:
        """
        Everything a test may assert on, as plain JSON-able data (also ``GET /_emulator/stats``).

        ``creates_accepted`` and ``tasks`` count both APIs (``*_by_api`` split them);
        ``tasks_by_success_flag`` counts Flux Kontext tasks, ``tasks_by_state`` Market tasks.
        """
        with self._lock:
            self._settle_refunds()
            now = self._clock()
            by_flag = {"pending": 0, "1": 0, "2": 0, "3": 0}
            by_state = dict.fromkeys(MARKET_STATES, 0)
            by_api = {"kontext": 0, "market": 0}
            for task in self._tasks.values():
                by_api[task.api] += 1
                if task.api == "market":
                    by_state[task.market_phase(now)[0]] += 1
                    continue
                key = str(task.outcome.success_flag) if task.is_terminal(now) else "pending"
                by_flag[key] += 1
            return {
                "requests": dict(self._requests),
                **self._counters,
                "creates_accepted_by_api": dict(self._creates_by_api),
                "tasks": len(self._tasks),
                "tasks_by_api": by_api,
                "tasks_by_success_flag": by_flag,
                "tasks_by_state": by_state,
                "credits": self._credits,
                "credits_spent": self._credits_spent,
                "credits_refunded": self._credits_refunded,
                "rate_limit_in_window": self._limiter.in_window(),
                "last_user_agent": self._last_user_agent,
                "user_agents": list(self._user_agents),
                "uploads": len(self._uploads),
                "download_links": len(self._links),
                "callbacks": [a.as_dict() for a in self._callbacks],
                "faults_pending": [fault.as_dict() for queue in self._faults.values() for fault in queue],
                "faults_applied": {k: dict(v) for k, v in self._faults_applied.items()},
                "random_faults": self._random_faults.as_dict() if self._random_faults is not None else None,
            }


def _validated_fault(endpoint: str, kind: str, count: int, params: dict[str, Any]) -> Fault:
    """Check a fault request and fill in defaults, so mistakes fail at injection, not mid-test."""
    if endpoint not in ENDPOINTS:
        raise ValueError(f"unknown endpoint {endpoint!r}; expected one of {list(ENDPOINTS)}")
    if kind not in FAULT_KINDS:
        raise ValueError(f"unknown fault kind {kind!r}; expected one of {sorted(FAULT_KINDS)}")
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise ValueError("count must be an integer >= 1")
    params = dict(params)
    if kind == "drop_after_accept" and endpoint not in CREATE_ENDPOINTS:
        raise ValueError(f"drop_after_accept only applies to the create endpoints {sorted(CREATE_ENDPOINTS)}")
    if kind == "forbidden" and endpoint != "file":
        raise ValueError("forbidden only applies to the file endpoint")
    if kind in ("code", "malformed_json") and endpoint == "file":
        raise ValueError(f"{kind} faults need a JSON endpoint, not file")
    if kind == "code":
        code = params.get("code")
        if code not in FAULT_BODY_CODES:
            raise ValueError(f"code fault needs code in {sorted(FAULT_BODY_CODES)}, got {code!r}")
    if kind == "http":
        status = params.get("status")
        if isinstance(status, bool) or not isinstance(status, int) or not 400 <= status <= 599:
            raise ValueError("http fault needs an HTTP error status (400-599)")
    if kind == "html":
        status = params.setdefault("status", 502)
        if isinstance(status, bool) or not isinstance(status, int) or not 400 <= status <= 599:
            raise ValueError("html fault status must be an HTTP error status (400-599)")
    if kind == "slow":
        delay = params.setdefault("delay", 2.0)
        if isinstance(delay, bool) or not isinstance(delay, int | float) or delay < 0:
            raise ValueError("slow fault needs delay >= 0 seconds")
    retry_after = params.get("retry_after")
    if retry_after is not None and not isinstance(retry_after, int | str):
        raise ValueError("retry_after must be seconds (int) or an HTTP-date string")
    prefix = params.get("path_prefix")
    if prefix is not None and not isinstance(prefix, str):
        raise ValueError("path_prefix must be a string")
    return Fault(endpoint=endpoint, kind=kind, remaining=count, params=params)
