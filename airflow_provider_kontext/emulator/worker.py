"""Background work per task: loading an edit's input image and delivering the callback.

Status itself is computed from the clock, so a task needs background work only when it has an
``inputImage`` (fetched and rendered once, right after create, so a bad input fails the task the
way kie would) or a ``callBackUrl`` (POSTed when the task turns terminal, with kie's 15 s timeout,
HMAC headers when configured, and a few retries on failure). Market callbacks go through the
same delivery; only their body differs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING

from airflow_provider_kontext.emulator.files import own_file_key
from airflow_provider_kontext.emulator.net import FetchError
from airflow_provider_kontext.emulator.payloads import (
    callback_payload,
    dumps,
    market_callback_payload,
    sign_webhook,
)
from airflow_provider_kontext.emulator.state import CallbackAttempt

if TYPE_CHECKING:
    from airflow_provider_kontext.emulator.files import FileService
    from airflow_provider_kontext.emulator.net import Outbound
    from airflow_provider_kontext.emulator.state import EmulatorState, Task

__all__ = ["TaskWorker"]

log = logging.getLogger(__name__)

_MAX_NAP_SECONDS = 0.5


def _render_edit(task: Task, source: bytes, long_side: int) -> bytes:
    """Edit render (runs in a worker thread; imports Pillow on first use)."""
    from airflow_provider_kontext.emulator import images

    return images.render_edit(source, task.prompt, task.aspect_ratio, task.output_format, long_side, task.watermark)


class TaskWorker:
    """Owns the asyncio tasks doing per-task background work, so shutdown can cancel them."""

    def __init__(self, state: EmulatorState, files: FileService, outbound: Outbound) -> None:
        self._state = state
        self._files = files
        self._outbound = outbound
        self._running: set[asyncio.Task[None]] = set()

    def start(self, task: Task) -> None:
        """Schedule background work for a freshly created task, if it needs any."""
        if not (task.input_pending or task.callback_url):
            return
        job = asyncio.get_running_loop().create_task(self._run(task), name=f"emulator-task-{task.task_id}")
        self._running.add(job)
        job.add_done_callback(self._running.discard)

    async def aclose(self) -> None:
        """Cancel all pending background work (server shutdown or reset)."""
        jobs = list(self._running)
        for job in jobs:
            job.cancel()
        for job in jobs:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await job

    def _bases(self, task: Task) -> list[str]:
        public = self._state.config.public_base_url
        return [task.base_url] if public is None else [public, task.base_url]

    async def _run(self, task: Task) -> None:
        try:
            if task.input_pending:
                await self._prepare_input(task)
            if task.callback_url and await self._wait_terminal(task):
                await self._deliver_callback(task, task.callback_url)
        except asyncio.CancelledError:
            raise
        except Exception:  # pragma: no cover - background work must never kill the loop
            log.exception("emulator background work for task %s failed", task.task_id)

    async def _load_input(self, task: Task) -> bytes:
        url = task.input_image or ""
        key = own_file_key(url, self._bases(task))
        if key is not None:
            found = await self._files.read(key)
            if found is None:
                raise FetchError(f"{url} is not (or no longer) an emulator file")
            return found[0]
        return await self._outbound.fetch(url, timeout=self._state.config.input_fetch_timeout_seconds)

    async def _prepare_input(self, task: Task) -> None:
        result: bytes | None
        try:
            source = await self._load_input(task)
            result = await asyncio.to_thread(_render_edit, task, source, self._state.config.image_long_side)
        except (FetchError, ValueError) as exc:
            log.info("edit task %s fails: %s", task.task_id, exc)
            result = None
        self._state.finish_input(task.task_id, result)

    async def _wait_terminal(self, task: Task) -> bool:
        """
        Sleep until the task is terminal; False if it vanished meanwhile (emulator reset).

        Naps last at most half a second so that a task ended early (``finish_now``) still gets its
        callback at once, not when its original generation time would have run out.
        """
        while self._state.get_task(task.task_id) is task:
            done = task.completes_at()
            now = self._state.now()
            if done is not None and now >= done:
                return True
            await asyncio.sleep(0.05 if done is None else min(_MAX_NAP_SECONDS, max(0.005, done - now)))
        return False

    async def _deliver_callback(self, task: Task, url: str) -> None:
        config = self._state.config
        base = config.public_base_url or task.base_url
        if task.api == "market":
            # After the task ended: a failed task's held credits are back in remainedCredits.
            payload = market_callback_payload(task, self._state.now(), base, self._state.credits)
        else:
            payload = callback_payload(task, base)
        body = dumps(payload)
        for attempt in range(1, config.callback_max_retries + 2):
            if self._state.get_task(task.task_id) is not task:
                return
            headers: dict[str, str] = {}
            timestamp: str | None = None
            signature: str | None = None
            key = self._state.config.webhook_hmac_key
            if key:
                timestamp = str(int(self._state.now()))
                signature = sign_webhook(key, task.task_id, timestamp)
                headers = {"X-Webhook-Timestamp": timestamp, "X-Webhook-Signature": signature}
            status: int | None = None
            error: str | None = None
            try:
                status = await self._outbound.post_json(url, body, headers, timeout=config.callback_timeout_seconds)
            except FetchError as exc:
                error = str(exc)
            ok = status is not None and 200 <= status < 300
            self._state.log_callback(
                CallbackAttempt(
                    task_id=task.task_id,
                    url=url,
                    attempt=attempt,
                    code=int(payload["code"]),
                    at=self._state.now(),
                    ok=ok,
                    http_status=status,
                    error=error,
                    timestamp_header=timestamp,
                    signature_header=signature,
                )
            )
            if ok:
                return
            await asyncio.sleep(config.callback_retry_delay_seconds)
