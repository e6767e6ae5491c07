"""Shared test helpers: a minimal kie client and a side HTTP server (callback receiver / image host)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import TYPE_CHECKING, Any

import requests

if TYPE_CHECKING:
    from airflow_provider_kontext.emulator import EmulatorServer

API_KEY = "test-key"
AUTH = {"Authorization": f"Bearer {API_KEY}"}
GENERATE = "/api/v1/flux/kontext/generate"
RECORD_INFO = "/api/v1/flux/kontext/record-info"
CREDIT = "/api/v1/chat/credit"
DOWNLOAD_URL = "/api/v1/common/download-url"
JOBS_CREATE = "/api/v1/jobs/createTask"
JOBS_RECORD_INFO = "/api/v1/jobs/recordInfo"

#: Fast settings: tasks finish in 0.3 s, the recordInfo-null phase lasts 0.1 s, small images.
FAST: dict[str, Any] = {"generation_seconds": 0.3, "record_info_null_seconds": 0.1, "image_long_side": 256}


def _accepted_task_id(answer: Any) -> str:
    """The task id of a create answer that must be an acceptance (both APIs answer alike)."""
    assert answer["code"] == 200, answer
    task_id: str = answer["data"]["taskId"]
    return task_id


class KieClient:
    """Minimal kie client for tests: plain ``requests`` calls against the emulator."""

    def __init__(self, emu: EmulatorServer) -> None:
        self.emu = emu
        self.session = requests.Session()

    def generate(self, timeout: float = 5.0, headers: dict[str, str] | None = None, **body: Any) -> Any:
        response = self.session.post(self.emu.url(GENERATE), json=body, headers=headers or AUTH, timeout=timeout)
        assert response.status_code == 200, response.text
        return response.json()

    def create(self, **body: Any) -> str:
        return _accepted_task_id(self.generate(**body))

    def record(self, task_id: str) -> Any:
        return self._record_info(RECORD_INFO, task_id)

    def _record_info(self, route: str, task_id: str) -> Any:
        """GET a record-info route (Flux Kontext's or the Market's) for ``task_id``; the JSON answer."""
        response = self.session.get(self.emu.url(route), params={"taskId": task_id}, headers=AUTH, timeout=5)
        assert response.status_code == 200, response.text
        return response.json()

    def wait(self, task_id: str, timeout: float = 10.0) -> dict[str, Any]:
        """Poll until the task is terminal; return its record ``data``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            answer = self.record(task_id)
            if answer["code"] == 200 and answer["data"]["successFlag"] != 0:
                data: dict[str, Any] = answer["data"]
                return data
            time.sleep(0.05)
        raise AssertionError(f"task {task_id} did not finish within {timeout} s")

    def create_job(self, model: str, timeout: float = 5.0, **body: Any) -> Any:
        """POST a Market createTask body (``input`` and ``callBackUrl`` as keywords); the JSON answer."""
        payload = {"model": model, **body}
        response = self.session.post(self.emu.url(JOBS_CREATE), json=payload, headers=AUTH, timeout=timeout)
        assert response.status_code == 200, response.text
        return response.json()

    def job(self, model: str, **body: Any) -> str:
        """Create a Market task that must be accepted; its task id."""
        return _accepted_task_id(self.create_job(model, **body))

    def job_record(self, task_id: str) -> Any:
        return self._record_info(JOBS_RECORD_INFO, task_id)

    def finished_job(self, task_id: str) -> dict[str, Any]:
        """End the task now (``finish_now``) and return its recordInfo ``data``: no waiting on a clock."""
        self.emu.finish_now(task_id)
        answer = self.job_record(task_id)
        assert answer["code"] == 200, answer
        data: dict[str, Any] = answer["data"]
        assert data["state"] in ("success", "fail"), data
        return data

    def post(self, path: str, headers: dict[str, str] | None = None, **kwargs: Any) -> requests.Response:
        return self.session.post(self.emu.url(path), headers=headers or AUTH, timeout=5, **kwargs)

    def get(self, path_or_url: str, **kwargs: Any) -> requests.Response:
        url = path_or_url if path_or_url.startswith("http") else self.emu.url(path_or_url)
        kwargs.setdefault("timeout", 5)
        return self.session.get(url, **kwargs)


@dataclass
class Received:
    """One request the side server received."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class SideServer:
    """A tiny plain ``http.server`` standing in for a callback receiver and a foreign image host."""

    base_url: str
    received: list[Received] = field(default_factory=list)
    #: HTTP statuses to answer POSTs with, consumed in order; 200 once empty.
    post_statuses: list[int] = field(default_factory=list)
    #: path -> (content type, bytes) served to GETs.
    files: dict[str, tuple[str, bytes]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def wait_for(self, count: int, timeout: float = 5.0) -> list[Received]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if len(self.received) >= count:
                    return list(self.received)
            time.sleep(0.02)
        raise AssertionError(f"expected {count} requests, got {len(self.received)}")


def handler_for(side: Callable[[], SideServer]) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _record(self) -> SideServer:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            server = side()
            with server.lock:
                server.received.append(Received(self.command, self.path, dict(self.headers.items()), body))
            return server

        def do_POST(self) -> None:
            server = self._record()
            with server.lock:
                status = server.post_statuses.pop(0) if server.post_statuses else 200
            self.send_response(status)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def do_GET(self) -> None:
            server = self._record()
            found = server.files.get(self.path)
            if found is None:
                self.send_response(404)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            content_type, data = found
            self.send_response(200)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    return Handler
