"""Fixtures for the emulator tests: one real server per session, reset before every test."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import ThreadingHTTPServer

import pytest

from airflow_provider_kontext.emulator import EmulatorConfig, EmulatorServer

from .helpers import API_KEY, FAST, KieClient, SideServer, handler_for


@pytest.fixture(scope="session")
def emulator_server() -> Iterator[EmulatorServer]:
    with EmulatorServer(EmulatorConfig(api_key=API_KEY, **FAST)) as server:
        yield server


@pytest.fixture
def emu(emulator_server: EmulatorServer) -> EmulatorServer:
    """The shared server, with all tasks, files, counters, faults and config reset."""
    emulator_server.reset()
    return emulator_server


@pytest.fixture
def kie(emu: EmulatorServer) -> Iterator[KieClient]:
    client = KieClient(emu)
    yield client
    client.session.close()


@pytest.fixture
def side_server() -> Iterator[SideServer]:
    holder: list[SideServer] = []
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler_for(lambda: holder[0]))
    httpd.daemon_threads = True
    host, port = httpd.server_address[:2]
    holder.append(SideServer(base_url=f"http://{host!s}:{port}"))
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield holder[0]
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)
