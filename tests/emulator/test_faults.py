"""Every fault kind, observed the way a real HTTP client observes it."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import pytest
import requests

from airflow_provider_kontext.emulator.faults import http_date

from .helpers import AUTH, CREDIT, DOWNLOAD_URL, GENERATE, RECORD_INFO

if TYPE_CHECKING:
    from airflow_provider_kontext.emulator import EmulatorServer

    from .helpers import KieClient


def post_generate(emu: EmulatorServer, timeout: float = 5.0) -> requests.Response:
    return requests.post(emu.url(GENERATE), json={"prompt": "fault"}, headers=AUTH, timeout=timeout)


@pytest.mark.parametrize("code", [401, 402, 404, 422, 429, 455, 500, 501, 505])
def test_code_fault_on_generate_is_http_200_and_creates_nothing(emu: EmulatorServer, code: int) -> None:
    emu.inject_fault("generate", "code", code=code)
    response = post_generate(emu)
    assert response.status_code == 200
    answer = response.json()
    assert answer["code"] == code
    assert answer["msg"]
    assert answer["data"] is None
    assert emu.stats()["tasks"] == 0
    assert post_generate(emu).json()["code"] == 200  # the fault was used up


def test_code_faults_on_other_endpoints(kie: KieClient, emu: EmulatorServer) -> None:
    emu.inject_fault("record-info", "code", code=422)
    assert kie.record("whatever") == {"code": 422, "msg": "recordInfo is null", "data": None}
    emu.inject_fault("upload-base64", "code", code=500, msg="upload broke")
    answer = kie.post("/api/file-base64-upload", json={"base64Data": "aGk=", "uploadPath": "a"}).json()
    assert answer == {"success": False, "code": 500, "msg": "upload broke", "data": None}
    emu.inject_fault("download-url", "code", code=455)
    assert kie.post(DOWNLOAD_URL, json={"url": "x"}).json()["code"] == 455


def test_faults_are_fifo_with_counts(kie: KieClient, emu: EmulatorServer) -> None:
    emu.inject_fault("credit", "code", count=2, code=500)
    emu.inject_fault("credit", "code", code=455)
    codes = [kie.get(CREDIT, headers=AUTH).json()["code"] for _ in range(4)]
    assert codes == [500, 500, 455, 200]
    assert emu.stats()["requests"]["credit"] == 4


@pytest.mark.parametrize("retry_after", [None, 3, "HTTPDATE"])
@pytest.mark.parametrize("status", [429, 500, 502, 503, 504])
def test_http_fault(kie: KieClient, emu: EmulatorServer, status: int, retry_after: int | str | None) -> None:
    if retry_after == "HTTPDATE":
        retry_after = http_date(time.time() + 5)
    params: dict[str, Any] = {} if retry_after is None else {"retry_after": retry_after}
    emu.inject_fault("record-info", "http", status=status, **params)
    response = kie.get(RECORD_INFO, params={"taskId": "x"}, headers=AUTH)
    assert response.status_code == status
    assert response.json()["code"] == status
    assert response.headers.get("Retry-After") == (None if retry_after is None else str(retry_after))


def test_malformed_json(kie: KieClient, emu: EmulatorServer) -> None:
    emu.inject_fault("generate", "malformed_json")
    response = post_generate(emu)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    with pytest.raises(requests.JSONDecodeError):
        response.json()


def test_html_error_page(emu: EmulatorServer) -> None:
    emu.inject_fault("generate", "html")
    response = post_generate(emu)
    assert response.status_code == 502
    assert response.headers["content-type"].startswith("text/html")
    assert "<html" in response.text
    assert emu.stats()["tasks"] == 0


def test_empty_body(kie: KieClient, emu: EmulatorServer) -> None:
    emu.inject_fault("credit", "empty_body")
    response = kie.get(CREDIT, headers=AUTH)
    assert response.status_code == 200
    assert response.content == b""


def test_drop_closes_the_connection_without_processing(emu: EmulatorServer) -> None:
    emu.inject_fault("generate", "drop")
    with pytest.raises(requests.ConnectionError) as caught:
        post_generate(emu)
    assert "RemoteDisconnected" in repr(caught.value) or "reset" in repr(caught.value).lower()
    stats = emu.stats()
    assert stats["tasks"] == 0
    assert stats["creates_accepted"] == 0
    assert stats["credits"] == 1000
    assert stats["rate_limit_in_window"] == 0
    assert stats["requests"]["generate"] == 1
    assert post_generate(emu).json()["code"] == 200  # the server is fine afterwards


def test_drop_after_accept_is_the_ambiguous_case(emu: EmulatorServer) -> None:
    emu.inject_fault("generate", "drop_after_accept")
    with pytest.raises(requests.ConnectionError):
        post_generate(emu)
    stats = emu.stats()
    assert stats["tasks"] == 1
    assert stats["creates_accepted"] == 1
    assert stats["credits"] == 995


def test_drop_on_polls_and_files(kie: KieClient, emu: EmulatorServer) -> None:
    done = kie.wait(kie.create(prompt="file drop"))
    emu.inject_fault("record-info", "drop")
    emu.inject_fault("file", "drop")
    with pytest.raises(requests.ConnectionError):
        requests.get(emu.url(RECORD_INFO), params={"taskId": "x"}, headers=AUTH, timeout=5)
    with pytest.raises(requests.ConnectionError):
        requests.get(done["response"]["resultImageUrl"], timeout=5)


def test_slow_generate_times_out_on_the_client_but_creates_the_task(emu: EmulatorServer) -> None:
    emu.inject_fault("generate", "slow", delay=1.0)
    with pytest.raises(requests.ReadTimeout):
        post_generate(emu, timeout=0.3)
    assert emu.stats()["tasks"] == 1


def test_slow_answers_normally_after_the_delay(kie: KieClient, emu: EmulatorServer) -> None:
    emu.inject_fault("credit", "slow", delay=0.3)
    started = time.monotonic()
    assert kie.get(CREDIT, headers=AUTH).json()["code"] == 200
    assert time.monotonic() - started >= 0.3


def test_forbidden_result_then_download_url_fallback(kie: KieClient, emu: EmulatorServer) -> None:
    done = kie.wait(kie.create(prompt="forbidden"))
    result_url = done["response"]["resultImageUrl"]
    emu.inject_fault("file", "forbidden")
    refused = requests.get(result_url, timeout=5)
    assert refused.status_code == 403
    link = kie.post(DOWNLOAD_URL, json={"url": result_url}).json()["data"]
    fetched = requests.get(link, timeout=5)
    assert fetched.status_code == 200
    assert fetched.headers["content-type"] == "image/jpeg"
    assert emu.stats()["file_requests_with_auth"] == 0


def test_control_api_faults(kie: KieClient, emu: EmulatorServer) -> None:
    added = requests.post(
        emu.url("/_emulator/faults"), json={"endpoint": "credit", "kind": "http", "status": 503}, timeout=5
    )
    assert added.status_code == 200
    assert requests.get(emu.url("/_emulator/faults"), timeout=5).json()[0]["kind"] == "http"
    assert kie.get(CREDIT, headers=AUTH).status_code == 503
    bad = requests.post(emu.url("/_emulator/faults"), json={"endpoint": "credit", "kind": "explode"}, timeout=5)
    assert bad.status_code == 400
    assert "kind" in bad.json()["error"]
    requests.post(emu.url("/_emulator/faults"), json={"endpoint": "credit", "kind": "drop", "count": 3}, timeout=5)
    assert requests.delete(emu.url("/_emulator/faults"), timeout=5).status_code == 200
    assert kie.get(CREDIT, headers=AUTH).status_code == 200
