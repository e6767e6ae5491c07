"""kie's create window shared by every process of one host, through a locked file.

Celery workers with a concurrency above one, the LocalExecutor's worker processes and mapped
task instances all run as separate processes on the same machine. A window in each process's
memory cannot see the others and the account's limit is then found by being refused; one small
file per account, read and rewritten under ``flock``, makes them share it exactly. A lock file
is something every host already has: no service to run, nothing to configure, and a process
that dies releases its lock with it. Processes on other hosts are not seen: there the pacer's
adaptive allowance does the sharing.
"""

from __future__ import annotations

import fcntl
import os
import tempfile
from collections import deque
from typing import Final

from airflow_provider_kontext.protocol.ratelimit import reserve_in

#: Folder of the window files, one per account (named by a hash of base URL and key).
WINDOW_DIR: Final = os.path.join(tempfile.gettempdir(), "airflow-provider-kontext")


class HostWindow:
    """A :class:`~airflow_provider_kontext.protocol.ratelimit.SlidingWindow` in a locked file."""

    def __init__(self, account_id: str, directory: str = WINDOW_DIR) -> None:
        os.makedirs(directory, mode=0o700, exist_ok=True)
        self.path = os.path.join(directory, f"{account_id}.window")

    def reserve(self, now: float, limit: int, window: float) -> float:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            sent = deque(_parse(os.pread(fd, os.fstat(fd).st_size, 0)))
            wait = reserve_in(sent, now, limit, window)
            if wait == 0:
                data = "\n".join(f"{stamp:.6f}" for stamp in sent).encode()
                os.ftruncate(fd, 0)
                os.pwrite(fd, data, 0)
            return wait
        finally:
            os.close(fd)  # also releases the lock


def _parse(data: bytes) -> list[float]:
    stamps: list[float] = []
    for line in data.split(b"\n"):
        try:
            stamps.append(float(line))
        except ValueError:
            continue  # an empty or torn line: lose one stamp, never the whole window
    stamps.sort()
    return stamps
