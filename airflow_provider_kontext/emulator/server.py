"""Run the emulator as a real HTTP server on loopback, in a background thread.

Tests and demos need a genuine socket (so timeouts, dropped connections and keep-alive behave as
on the wire) but must not pay for a subprocess. The listening socket is bound before uvicorn
starts, so the port (including an ephemeral ``port=0``) is known up front, and ``start()``
returns only once uvicorn is accepting connections.
"""

from __future__ import annotations

import socket
import threading
import time
from typing import TYPE_CHECKING, Any, Self

import uvicorn

from airflow_provider_kontext.emulator.app import create_app
from airflow_provider_kontext.emulator.config import EmulatorConfig
from airflow_provider_kontext.emulator.state import EmulatorState, Fault

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from types import TracebackType

    from airflow_provider_kontext.emulator.chaos import AppliedFault, FaultSpec, RandomFaults

__all__ = ["EmulatorServer"]


class EmulatorServer:
    """The emulator on ``host:port`` in a daemon thread; use as a context manager.

    >>> with EmulatorServer(EmulatorConfig(api_key="k", generation_seconds=0.3)) as emu:  # doctest: +SKIP
    ...     requests.get(emu.base_url + "/api/v1/chat/credit", headers={"Authorization": "Bearer k"})
    """

    def __init__(
        self,
        config: EmulatorConfig | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        http: str = "h11",
        loop: str = "auto",
        state: EmulatorState | None = None,
        startup_timeout: float = 120.0,
    ) -> None:
        self.config = config or EmulatorConfig(api_key="emulator-key")
        self.state = state or EmulatorState(self.config)
        self.app = create_app(self.config, self.state)
        self._host = host
        self._port = port
        # Any: uvicorn's Literal of accepted names changes between the versions Airflow pins.
        self._http: Any = http
        self._loop: Any = loop
        self._startup_timeout = startup_timeout
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._base_url: str | None = None

    @property
    def base_url(self) -> str:
        """``http://host:port`` of the running server (no trailing slash)."""
        if self._base_url is None:
            raise RuntimeError("EmulatorServer is not running; call start() or use it as a context manager")
        return self._base_url

    @property
    def port(self) -> int:
        """The bound TCP port."""
        return int(self.base_url.rsplit(":", 1)[1])

    def url(self, path: str) -> str:
        """Absolute URL for a path on this server."""
        return self.base_url + ("" if path.startswith("/") else "/") + path

    def start(self) -> Self:
        """Bind, start uvicorn in a thread and wait until it accepts connections."""
        if self._thread is not None:
            return self
        sock = socket.socket(socket.AF_INET6 if ":" in self._host else socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self._host, self._port))
        except OSError:
            sock.close()
            raise
        sock.set_inheritable(True)
        host, port = sock.getsockname()[:2]
        config = uvicorn.Config(
            self.app,
            log_level="warning",
            access_log=False,
            lifespan="on",
            http=self._http,
            loop=self._loop,
            backlog=4096,
            timeout_keep_alive=5,
            timeout_graceful_shutdown=2,
        )
        server = uvicorn.Server(config)
        thread = threading.Thread(
            target=server.run, kwargs={"sockets": [sock]}, name=f"kontext-emulator-{port}", daemon=True
        )
        thread.start()
        deadline = time.monotonic() + self._startup_timeout
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                server.should_exit = True
                thread.join(timeout=2)
                sock.close()
                raise RuntimeError(f"kontext emulator failed to start on {host}:{port}")
            time.sleep(0.005)
        self._server = server
        self._thread = thread
        display_host = f"[{host}]" if ":" in host else host
        self._base_url = f"http://{display_host}:{port}"
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Ask uvicorn to exit and wait for the thread; force it if it takes too long."""
        server, thread = self._server, self._thread
        if server is None or thread is None:
            return
        server.should_exit = True
        thread.join(timeout=timeout)
        if thread.is_alive():  # pragma: no cover - only with stuck connections
            server.force_exit = True
            thread.join(timeout=timeout)
        self._server = None
        self._thread = None
        self._base_url = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # Conveniences that forward to the shared state, so tests need no HTTP for bookkeeping.

    def stats(self) -> dict[str, Any]:
        """Same data as ``GET /_emulator/stats``."""
        return self.state.stats()

    def inject_fault(self, endpoint: str, kind: str, count: int = 1, **params: Any) -> Fault:
        """Queue a fault for the next ``count`` requests of ``endpoint``."""
        return self.state.inject_fault(endpoint, kind, count, **params)

    def inject_random_faults(
        self,
        rate: float,
        seed: int,
        *,
        endpoints: Sequence[str] | None = None,
        kinds: Mapping[str, Sequence[FaultSpec]] | None = None,
    ) -> RandomFaults:
        """Fault about ``rate`` of the requests at random, reproducibly for ``seed`` (see ``EmulatorState``)."""
        return self.state.inject_random_faults(rate, seed, endpoints=endpoints, kinds=kinds)

    def applied_faults(self) -> list[AppliedFault]:
        """Every fault applied since the last reset, with the prompt or task id it hit."""
        return self.state.applied_faults()

    def share_account(self, creates: int, seconds: float | None = None) -> None:
        """Another client of the account holds ``creates`` of every create window, for ``seconds`` or for good."""
        self.state.share_account(creates, seconds)

    def reset(self, **config_overrides: Any) -> EmulatorConfig:
        """Forget all tasks, files, counters and faults; restore the initial config plus overrides."""
        return self.state.reset(**config_overrides)

    def configure(self, **config_overrides: Any) -> EmulatorConfig:
        """Change config values live (like ``POST /_emulator/config``)."""
        return self.state.update_config(**config_overrides)

    def finish_now(self, *task_ids: str) -> None:
        """End these tasks' generation now, each with the outcome it would have had."""
        for task_id in task_ids:
            self.state.finish_now(task_id)
