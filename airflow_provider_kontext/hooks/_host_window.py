"""kie's create window shared by every process of one host, through a locked file.

Celery workers with a concurrency above one, the LocalExecutor's worker processes and mapped
task instances all run as separate processes on the same machine. A window in each process's
memory cannot see the others and the account's limit is then found by being refused; one small
file per account, read and rewritten under ``flock``, makes them share it exactly, together
with the allowance the pacers learnt from kie's 429s (so no process starves behind the others). A lock file
is something every host already has: no service to run, nothing to configure, and a process
that dies releases its lock with it. Processes on other hosts are not seen: there the pacer's
adaptive allowance does the sharing.
"""

from __future__ import annotations

import fcntl
import os
import tempfile
from typing import TYPE_CHECKING, Final, TypeVar

from airflow_provider_kontext._protocol.ratelimit import WindowState

if TYPE_CHECKING:
    from collections.abc import Callable

T = TypeVar("T")

#: Folder of the window files, one per account (named by a hash of base URL and key).
WINDOW_DIR: Final = os.path.join(tempfile.gettempdir(), "airflow-provider-kontext")


class HostWindow:
    """
    A :class:`~airflow_provider_kontext._protocol.ratelimit.SlidingWindow` in a locked file.

    The file holds a header line ``allowance last_decrease`` (``-`` for unset) and one attempt
    time per line; a torn or foreign line costs that line, never the window.
    """

    def __init__(self, account_id: str, directory: str = WINDOW_DIR) -> None:
        os.makedirs(directory, mode=0o700, exist_ok=True)
        self.path = os.path.join(directory, f"{account_id}.window")

    def transact(self, update: Callable[[WindowState], T]) -> T:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            state = _parse(os.pread(fd, os.fstat(fd).st_size, 0))
            result = update(state)
            data = _format(state)
            os.ftruncate(fd, 0)
            os.pwrite(fd, data, 0)
            return result
        finally:
            os.close(fd)  # also releases the lock


def _parse(data: bytes) -> WindowState:
    lines = data.split(b"\n")
    state = WindowState()
    if lines and lines[0].startswith(b"a "):
        fields = lines.pop(0).split()[1:]
        state.allowance = _number(fields[0]) if fields else None
        decreased = _number(fields[1]) if len(fields) > 1 else None
        state.last_decrease = decreased if decreased is not None else float("-inf")
    stamps = [stamp for stamp in map(_number, lines) if stamp is not None]
    state.sent = sorted(stamps)
    return state


def _format(state: WindowState) -> bytes:
    def number(value: float | None) -> str:
        return "-" if value is None or value == float("-inf") else f"{value:.6f}"

    header = f"a {number(state.allowance)} {number(state.last_decrease)}"
    return "\n".join([header, *(f"{stamp:.6f}" for stamp in state.sent)]).encode()


def _number(text: bytes) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None
