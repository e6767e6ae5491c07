"""Reading the emulator's own files, rendering results lazily and exactly once.

Result images are rendered on the first request for them (in a worker thread, so the event loop
keeps answering polls), then cached on the task. Concurrent first requests share one render. A
Market task may have several results; each is rendered, cached and served on its own.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlsplit

from airflow_provider_kontext.emulator.routes import FILES_PREFIX

if TYPE_CHECKING:
    from collections.abc import Iterable

    from airflow_provider_kontext.emulator.state import EmulatorState, Task

__all__ = ["FileService", "own_file_key"]


def own_file_key(url: str, bases: Iterable[str]) -> str | None:
    """The file-store key if ``url`` is a ``/files/...`` URL of this emulator, else None."""
    try:
        parsed = urlsplit(url)
    except ValueError:
        return None
    for base in bases:
        own = urlsplit(base)
        prefix = own.path.rstrip("/") + FILES_PREFIX
        if (
            parsed.scheme == own.scheme
            and parsed.netloc.lower() == own.netloc.lower()
            and parsed.path.startswith(prefix)
        ):
            return unquote(parsed.path[len(prefix) :])
    return None


def _render_task(task: Task, index: int, long_side: int) -> bytes:
    """Text-to-image render of one result of a task (runs in a worker thread; imports Pillow on first use)."""
    from airflow_provider_kontext.emulator import images

    return images.render_text_to_image(
        task.caption(index), task.aspect_ratio or "16:9", task.output_format, long_side, task.watermark
    )


class FileService:
    """Serves file-store keys as bytes, rendering task results on demand."""

    def __init__(self, state: EmulatorState) -> None:
        self._state = state
        self._renders: dict[str, asyncio.Future[bytes]] = {}

    async def read(self, key: str) -> tuple[bytes, str] | None:
        """Bytes and content type of ``key``, or None if it does not exist (or expired)."""
        target = self._state.resolve_file(key)
        if target is None:
            return None
        if target.data is not None:
            return target.data, target.content_type
        task = target.task
        if task is None:  # pragma: no cover - a FileTarget always has data or a task
            return None
        cached = task.results.get(target.index)
        data = cached if cached is not None else await self._render(task, target.index)
        return data, target.content_type

    async def _render(self, task: Task, index: int) -> bytes:
        render_key = f"{task.task_id}_{index}"
        future = self._renders.get(render_key)
        if future is None:
            long_side = self._state.config.image_long_side
            future = asyncio.ensure_future(asyncio.to_thread(_render_task, task, index, long_side))
            self._renders[render_key] = future
            future.add_done_callback(lambda _: self._renders.pop(render_key, None))
        data = await asyncio.shield(future)
        self._state.store_result(task.task_id, data, index)
        return data
