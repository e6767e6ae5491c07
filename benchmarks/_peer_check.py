"""The peer's response check: what a user of ``HttpEventTrigger`` must write to wait on a kie task.

``HttpEventTrigger`` imports (and reloads) this module by its dotted path on every poll, and the
check must be a coroutine function; it gets a ``requests.Response`` rebuilt from aiohttp's.
"""

from __future__ import annotations

from typing import Any


async def kie_task_finished(response: Any) -> bool:
    """Done once kie's ``successFlag`` leaves 0 (generating)."""
    return bool(response.json()["data"]["successFlag"] != 0)
