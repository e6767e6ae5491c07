"""The emulated kie API over real loopback HTTP: happy paths, quirks, limits, files and uploads."""

from __future__ import annotations

import base64
import http.client
import io
import json
import time
from typing import TYPE_CHECKING, Any

import pytest
import requests
from PIL import Image, ImageChops, ImageStat

from .helpers import API_KEY, AUTH, CREDIT, DOWNLOAD_URL, GENERATE, RECORD_INFO

if TYPE_CHECKING:
    from airflow_provider_kontext.emulator import EmulatorServer

    from .helpers import KieClient, SideServer

RATIOS = {"21:9": 21 / 9, "16:9": 16 / 9, "4:3": 4 / 3, "1:1": 1.0, "3:4": 3 / 4, "9:16": 9 / 16}


def decode(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def sample_png(size: tuple[int, int] = (200, 100)) -> bytes:
    """A striped input image, so an edit's inversion is easy to measure."""
    image = Image.new("RGB", size, (30, 60, 90))
    for x in range(0, size[0], 20):
        image.paste((220, 200, 40), (x, 0, x + 10, size[1]))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def test_happy_path_text_to_image(kie: KieClient, emu: EmulatorServer) -> None:
    created = kie.generate(prompt="a lighthouse at dusk", aspectRatio="4:3", outputFormat="png", foo="ignored")
    assert created["code"] == 200
    assert created["msg"] == "success"
    task_id = created["data"]["taskId"]
    assert len(task_id) == 32
    # kie quirk: a brand-new task is "recordInfo is null" for a moment (HTTP 200, body 422).
    assert kie.record(task_id) == {"code": 422, "msg": "recordInfo is null", "data": None}
    time.sleep(0.12)
    running = kie.record(task_id)["data"]
    assert running["successFlag"] == 0
    assert running["response"] is None
    assert running["completeTime"] is None
    assert json.loads(running["paramJson"]) == {
        "prompt": "a lighthouse at dusk",
        "aspectRatio": "4:3",
        "outputFormat": "png",
    }
    assert running["createTime"].endswith("Z")
    done = kie.wait(task_id)
    assert done["successFlag"] == 1
    assert done["errorCode"] is None
    assert done["errorMessage"] == ""
    assert isinstance(done["completeTime"], str)
    url = done["response"]["resultImageUrl"]
    assert url.startswith(emu.base_url + "/files/")
    image_response = kie.get(url)
    assert image_response.status_code == 200
    assert image_response.headers["content-type"] == "image/png"
    image = decode(image_response.content)
    assert image.format == "PNG"
    assert max(image.size) == 256
    assert image.width / image.height == pytest.approx(4 / 3, rel=0.02)
    origin = kie.get(done["response"]["originImageUrl"])
    assert origin.content == image_response.content


@pytest.mark.parametrize("ratio", list(RATIOS))
def test_every_aspect_ratio_renders_jpeg(kie: KieClient, ratio: str) -> None:
    done = kie.wait(kie.create(prompt=f"ratio {ratio}", aspectRatio=ratio))
    image_response = kie.get(done["response"]["resultImageUrl"])
    assert image_response.headers["content-type"] == "image/jpeg"
    image = decode(image_response.content)
    assert image.format == "JPEG"
    assert image.width / image.height == pytest.approx(RATIOS[ratio], rel=0.02)


def test_defaults_are_16_9_jpeg_and_deterministic(kie: KieClient) -> None:
    first = kie.wait(kie.create(prompt="same prompt"))
    second = kie.wait(kie.create(prompt="same prompt"))
    a = kie.get(first["response"]["resultImageUrl"]).content
    b = kie.get(second["response"]["resultImageUrl"]).content
    assert a == b
    image = decode(a)
    assert image.format == "JPEG"
    assert image.size == (256, 144)


def test_time_format_epoch_ms(kie: KieClient, emu: EmulatorServer) -> None:
    emu.configure(time_format="epoch_ms")
    before = time.time() * 1000
    done = kie.wait(kie.create(prompt="t"))
    assert isinstance(done["createTime"], int)
    assert isinstance(done["completeTime"], int)
    assert before - 1000 <= done["createTime"] <= done["completeTime"]


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", GENERATE, {"prompt": "x"}),
        ("GET", RECORD_INFO + "?taskId=abc", None),
        ("GET", CREDIT, None),
        ("POST", DOWNLOAD_URL, {"url": "http://x"}),
        ("POST", "/api/file-base64-upload", {"base64Data": "aGk=", "uploadPath": "a"}),
    ],
)
@pytest.mark.parametrize("auth", [None, "Bearer wrong", API_KEY])
def test_auth_failure_is_http_200_with_code_401(
    emu: EmulatorServer, method: str, path: str, body: Any, auth: str | None
) -> None:
    headers = {} if auth is None else {"Authorization": auth}
    response = requests.request(method, emu.url(path), json=body, headers=headers, timeout=5)
    assert response.status_code == 200
    answer = response.json()
    assert answer["code"] == 401
    assert answer["msg"] == "You do not have access permissions"
    assert answer["data"] is None
    assert emu.stats()["tasks"] == 0
    assert emu.stats()["auth_failures"] == 1


@pytest.mark.parametrize(
    ("body", "code", "fragment"),
    [
        ({}, 422, "prompt"),
        ({"prompt": ""}, 422, "prompt"),
        ({"prompt": "x", "aspectRatio": "16:21"}, 422, "aspectRatio"),
        ({"prompt": "x", "outputFormat": "webp"}, 422, "outputFormat"),
        ({"prompt": "x", "model": "flux-dev"}, 422, "model"),
        ({"prompt": "x", "inputImage": "file:///etc/passwd"}, 422, "inputImage"),
        ({"prompt": "x", "safetyTolerance": 7}, 500, "0 and 6"),
        ({"prompt": "x", "safetyTolerance": 3, "inputImage": "https://e.com/a.png"}, 500, "0 and 2"),
    ],
)
def test_validation_like_kie(kie: KieClient, emu: EmulatorServer, body: Any, code: int, fragment: str) -> None:
    answer = kie.generate(**body)
    assert answer["code"] == code
    assert fragment in answer["msg"]
    assert emu.stats()["tasks"] == 0
    assert emu.stats()["credits"] == 1000


def test_invalid_json_is_422(kie: KieClient) -> None:
    response = kie.post(GENERATE, data=b"{not json", headers={**AUTH, "Content-Type": "application/json"})
    assert response.status_code == 200
    assert response.json()["code"] == 422


def test_rate_limit_is_http_429_and_drops_the_request(kie: KieClient, emu: EmulatorServer) -> None:
    emu.reset(rate_limit_creates=3, rate_limit_window_seconds=0.5)
    assert [kie.generate(prompt=f"p{i}")["code"] for i in range(3)] == [200, 200, 200]
    response = kie.post(GENERATE, json={"prompt": "one too many"})
    assert response.status_code == 429
    assert response.json() == {"code": 429, "msg": "Rate limit exceeded", "data": None}
    assert "Retry-After" not in response.headers  # real kie sends none
    stats = emu.stats()
    assert stats["tasks"] == 3
    assert stats["creates_rejected_rate_limit"] == 1
    assert stats["credits"] == 1000 - 3 * 5
    # record-info and credit do not count toward the limit
    assert kie.get(CREDIT, headers=AUTH).json()["code"] == 200
    time.sleep(0.55)
    assert kie.generate(prompt="after the window")["code"] == 200


def test_rate_limit_retry_after_when_configured(kie: KieClient, emu: EmulatorServer) -> None:
    emu.reset(rate_limit_creates=1, rate_limit_retry_after=7)
    kie.create(prompt="first")
    response = kie.post(GENERATE, json={"prompt": "second"})
    assert response.status_code == 429
    assert response.headers["Retry-After"] == "7"


def test_credits_and_402(kie: KieClient, emu: EmulatorServer) -> None:
    emu.reset(credits=12)
    assert kie.get(CREDIT, headers=AUTH).json() == {"code": 200, "msg": "success", "data": 12}
    kie.create(prompt="max", model="flux-kontext-max")
    assert kie.get(CREDIT, headers=AUTH).json()["data"] == 2
    answer = kie.generate(prompt="pro")
    assert answer["code"] == 402
    assert emu.stats()["tasks"] == 1
    emu.configure(credits=0)
    assert kie.generate(prompt="pro")["code"] == 402
    assert emu.stats()["creates_rejected_credits"] == 2


@pytest.mark.parametrize(
    ("marker", "flag", "error_code", "message"),
    [
        ("[emulator:content_policy]", 3, 400, "Your prompt was flagged by Website as violating content policies."),
        ("[emulator:generate_failed]", 3, 501, "Image generation task failed"),
        ("[emulator:create_failed]", 2, 500, None),
    ],
)
def test_failure_markers(kie: KieClient, marker: str, flag: int, error_code: int, message: str | None) -> None:
    done = kie.wait(kie.create(prompt=f"a castle {marker}"))
    assert done["successFlag"] == flag
    assert done["errorCode"] == error_code
    assert done["errorMessage"]
    if message is not None:
        assert done["errorMessage"] == message
    assert done["response"] is None
    assert done["completeTime"] is not None


def test_no_url_marker(kie: KieClient) -> None:
    done = kie.wait(kie.create(prompt="[emulator:no_url] a bridge"))
    assert done["successFlag"] == 1
    assert "resultImageUrl" not in done["response"]
    assert kie.get(done["response"]["originImageUrl"]).status_code == 200


def test_slow_marker(kie: KieClient) -> None:
    task_id = kie.create(prompt="[emulator:slow=1] take your time")
    time.sleep(0.5)
    assert kie.record(task_id)["data"]["successFlag"] == 0
    started = time.monotonic()
    assert kie.wait(task_id)["successFlag"] == 1
    assert time.monotonic() - started > 0.3


def test_origin_url_expires(kie: KieClient, emu: EmulatorServer) -> None:
    emu.configure(origin_url_ttl_seconds=0.3)
    done = kie.wait(kie.create(prompt="short-lived origin"))
    assert kie.get(done["response"]["originImageUrl"]).status_code == 200
    time.sleep(0.35)
    assert kie.get(done["response"]["originImageUrl"]).status_code == 404
    assert kie.get(done["response"]["resultImageUrl"]).status_code == 200


def test_download_url_for_own_files_and_422_for_foreign(kie: KieClient, emu: EmulatorServer) -> None:
    emu.configure(download_url_ttl_seconds=0.4)
    done = kie.wait(kie.create(prompt="download me"))
    result_url = done["response"]["resultImageUrl"]
    answer = kie.post(DOWNLOAD_URL, json={"url": result_url}).json()
    assert answer["code"] == 200
    link = answer["data"]
    assert isinstance(link, str)
    assert link != result_url
    fetched = kie.get(link)
    assert fetched.status_code == 200
    assert fetched.content == kie.get(result_url).content
    assert fetched.headers["content-type"] == "image/jpeg"
    for foreign in ("https://tempfile.example.com/a.jpg", emu.base_url + "/files/results/nope.jpg", "not a url"):
        assert kie.post(DOWNLOAD_URL, json={"url": foreign}).json()["code"] == 422
    assert kie.post(DOWNLOAD_URL, json={}).json()["code"] == 422
    time.sleep(0.45)
    assert kie.get(link).status_code == 404


def test_three_uploads(kie: KieClient, emu: EmulatorServer, side_server: SideServer) -> None:
    png = sample_png()
    stream = kie.post(
        "/api/file-stream-upload",
        files={"file": ("input.png", png, "image/png")},
        data={"uploadPath": "images/user-uploads", "fileName": "stream.png"},
    ).json()
    assert stream["success"] is True
    assert stream["code"] == 200
    assert stream["msg"] == "File uploaded successfully"
    data = stream["data"]
    assert data["fileName"] == "stream.png"
    assert data["filePath"] == "images/user-uploads/stream.png"
    assert data["fileSize"] == len(png)
    assert data["mimeType"] == "image/png"
    assert data["uploadedAt"].endswith("Z")
    served = kie.get(data["downloadUrl"])
    assert served.content == png
    assert served.headers["content-type"] == "image/png"

    b64 = kie.post(
        "/api/file-base64-upload",
        json={"base64Data": "data:image/png;base64," + base64.b64encode(png).decode(), "uploadPath": "b64"},
    ).json()
    assert b64["code"] == 200
    assert b64["data"]["fileName"].endswith(".png")  # random name when fileName is omitted
    assert kie.get(b64["data"]["downloadUrl"]).content == png
    plain = kie.post(
        "/api/file-base64-upload",
        json={"base64Data": base64.b64encode(png).decode(), "uploadPath": "b64", "fileName": "p.png"},
    ).json()
    assert plain["data"]["mimeType"] == "image/png"

    side_server.files["/remote.png"] = ("image/png", png)
    by_url = kie.post(
        "/api/file-url-upload", json={"fileUrl": side_server.base_url + "/remote.png", "uploadPath": "url"}
    ).json()
    assert by_url["code"] == 200
    assert by_url["data"]["fileName"].endswith(".png")  # random name, kept extension
    assert kie.get(by_url["data"]["downloadUrl"]).content == png
    assert emu.stats()["uploads"] == 4


def test_upload_errors(kie: KieClient) -> None:
    def code(path: str, **kwargs: Any) -> int:
        answer = kie.post(path, **kwargs).json()
        assert answer["success"] is False
        return int(answer["code"])

    assert code("/api/file-base64-upload", json={"uploadPath": "a"}) == 400
    assert code("/api/file-base64-upload", json={"base64Data": "!!!", "uploadPath": "a"}) == 400
    assert code("/api/file-base64-upload", json={"base64Data": "aGk=", "uploadPath": "../etc"}) == 400
    assert code("/api/file-stream-upload", data={"uploadPath": "a"}) == 400
    assert code("/api/file-url-upload", json={"fileUrl": "ftp://x/y", "uploadPath": "a"}) == 400
    assert code("/api/file-url-upload", json={"fileUrl": "http://127.0.0.1:1/y.png", "uploadPath": "a"}) == 500


def test_edit_of_uploaded_image_is_visibly_different(kie: KieClient) -> None:
    png = sample_png((200, 100))
    upload = kie.post(
        "/api/file-base64-upload", json={"base64Data": base64.b64encode(png).decode(), "uploadPath": "edit"}
    ).json()
    input_url = upload["data"]["downloadUrl"]
    done = kie.wait(kie.create(prompt="make it night", inputImage=input_url, outputFormat="png"))
    assert done["successFlag"] == 1
    assert json.loads(done["paramJson"])["inputImage"] == input_url
    edited = decode(kie.get(done["response"]["resultImageUrl"]).content).convert("RGB")
    assert edited.size == (256, 128)  # input ratio kept, long side from the config
    original = decode(png).convert("RGB").resize(edited.size)
    mean_difference = sum(ImageStat.Stat(ImageChops.difference(original, edited)).mean) / 3
    assert mean_difference > 60

    cropped = kie.wait(kie.create(prompt="square", inputImage=input_url, aspectRatio="1:1"))
    image = decode(kie.get(cropped["response"]["resultImageUrl"]).content)
    assert image.format == "JPEG"
    assert image.size == (256, 256)


def test_edit_fetches_foreign_input_and_fails_on_unreachable(kie: KieClient, side_server: SideServer) -> None:
    side_server.files["/in.png"] = ("image/png", sample_png((100, 300)))
    done = kie.wait(kie.create(prompt="edit remote", inputImage=side_server.base_url + "/in.png"))
    assert done["successFlag"] == 1
    assert decode(kie.get(done["response"]["resultImageUrl"]).content).size == (85, 256)
    assert [r.path for r in side_server.received] == ["/in.png"]

    failed = kie.wait(kie.create(prompt="edit missing", inputImage="http://127.0.0.1:1/gone.png"))
    assert failed["successFlag"] == 3
    assert failed["errorCode"] == 501


def test_files_never_need_auth_and_auth_is_counted(kie: KieClient, emu: EmulatorServer) -> None:
    done = kie.wait(kie.create(prompt="count me"))
    url = done["response"]["resultImageUrl"]
    assert requests.get(url, timeout=5).status_code == 200
    assert emu.stats()["file_requests_with_auth"] == 0
    assert requests.get(url, headers=AUTH, timeout=5).status_code == 200
    stats = emu.stats()
    assert stats["file_requests"] == 2
    assert stats["file_requests_with_auth"] == 1
    assert requests.get(emu.url("/files/results/unknown.jpg"), timeout=5).status_code == 404


def test_counters_user_agent_and_http_stats(kie: KieClient, emu: EmulatorServer) -> None:
    task_id = kie.create(prompt="ua")
    kie.record(task_id)
    requests.get(emu.url(CREDIT), headers={**AUTH, "User-Agent": "airflow-provider-kontext/0.1"}, timeout=5)
    stats = emu.stats()
    assert stats["requests"]["generate"] == 1
    assert stats["requests"]["record-info"] == 1
    assert stats["requests"]["credit"] == 1
    assert stats["creates_accepted"] == 1
    assert stats["last_user_agent"] == "airflow-provider-kontext/0.1"
    assert "airflow-provider-kontext/0.1" in stats["user_agents"]
    connection = http.client.HTTPConnection("127.0.0.1", emu.port, timeout=5)  # sends no User-Agent
    connection.request("GET", CREDIT, headers=AUTH)
    assert json.loads(connection.getresponse().read())["code"] == 200
    connection.close()
    over_http = requests.get(emu.url("/_emulator/stats"), timeout=5).json()
    assert over_http["last_user_agent"] is None
    assert over_http["api_requests_without_user_agent"] == 1
    assert set(over_http) == set(emu.stats())
    summary = requests.get(emu.url(f"/_emulator/tasks/{task_id}"), timeout=5).json()
    assert summary["params"] == {"prompt": "ua"}


def test_control_api_config_and_reset(kie: KieClient, emu: EmulatorServer) -> None:
    answer = requests.post(emu.url("/_emulator/config"), json={"credits": 7, "generation_seconds": 0}, timeout=5)
    assert answer.status_code == 200
    assert answer.json()["generation_seconds"] == 0
    assert kie.get(CREDIT, headers=AUTH).json()["data"] == 7
    bad = requests.post(emu.url("/_emulator/config"), json={"nope": 1}, timeout=5)
    assert bad.status_code == 400
    kie.create(prompt="x")
    reset = requests.post(emu.url("/_emulator/reset"), json={"credits": 50}, timeout=5)
    assert reset.status_code == 200
    stats = emu.stats()
    assert stats["tasks"] == 0
    assert stats["credits"] == 50
    assert emu.state.config.generation_seconds == 0.3  # back to the server's initial config
    assert requests.post(emu.url("/_emulator/reset"), timeout=5).status_code == 200


def test_public_base_url(kie: KieClient, emu: EmulatorServer) -> None:
    emu.configure(public_base_url="https://tempfile.example.test")
    done = kie.wait(kie.create(prompt="public"))
    assert done["response"]["resultImageUrl"].startswith("https://tempfile.example.test/files/results/")


def test_many_concurrent_polls_are_all_answered(kie: KieClient, emu: EmulatorServer) -> None:
    from concurrent.futures import ThreadPoolExecutor

    emu.configure(generation_seconds=60)
    task_ids = [kie.create(prompt=f"bench {i}") for i in range(10)]
    time.sleep(0.1)

    def poll(i: int) -> int:
        with requests.Session() as session:
            codes = [
                session.get(emu.url(RECORD_INFO), params={"taskId": task_ids[i % 10]}, headers=AUTH, timeout=60).json()[
                    "code"
                ]
                for _ in range(10)
            ]
        return sum(1 for c in codes if c == 200)

    with ThreadPoolExecutor(max_workers=50) as pool:
        ok = sum(pool.map(poll, range(50)))
    assert ok == 500  # how fast is the poll benchmark's question, not this test's
