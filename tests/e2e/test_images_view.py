"""The "Kontext images" views through a real api-server and a real browser.

One run of ``kontext_e2e_images`` (a batch with stored copies and two failed items, a mapped
generate, a create plus the sensor that collects it) against the emulator; then headless
Chromium logs in as a viewer, opens the run's "Kontext images" tab in the Airflow UI, and every
picture must have loaded. The same app must refuse requests without credentials and must not
be steerable to any file or URL that this task instance's results do not name.

Below Airflow 3.1 (no external views; the README's version table) the run still succeeds, and
each test asserts instead that the plugin loads but registers nothing: no app answers under
``/kontext``, and the "Kontext image" extra link is the way to the pictures.
"""

from __future__ import annotations

import http.server
import json
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, quote, urlsplit

import pytest
import requests

from airflow_provider_kontext._compat import AIRFLOW_HAS_EXTERNAL_VIEWS
from tests.conftest import API_KEY
from tests.e2e.browser import chromium, loaded_images, log_in, wait_until
from tests.e2e.deployment import REQUEST_TIMEOUT, Deployment, run_path

if TYPE_CHECKING:
    from collections.abc import Iterator

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]

DAG_ID = "kontext_e2e_images"
RUN_TIMEOUT = 240.0
#: Kept for the README (docs/) when set; always written under the deployment's run directory.
SCREENSHOT_NAME = "kontext-images-view.png"


@pytest.fixture(scope="module")
def images_run(airflow_deployment: Deployment) -> str:
    """One finished run of the images DAG (all of its tasks succeeded)."""
    d = airflow_deployment
    d.wait_dag_parsed(DAG_ID)
    t0 = time.monotonic()
    run_id = d.trigger(DAG_ID)
    state = d.wait_run(DAG_ID, run_id, RUN_TIMEOUT)
    tis = d.api_json("GET", run_path(DAG_ID, run_id, "/taskInstances"))["task_instances"]
    print(f"\n[kontext ui] {DAG_ID} run {state} after {time.monotonic() - t0:.1f} s")
    assert state == "success", [(ti["task_id"], ti["map_index"], ti["state"]) for ti in tis]
    return run_id


def app_get(d: Deployment, view: str, *, token: str | None, **params: Any) -> requests.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return requests.get(f"{d.base_url}/kontext/{view}", params=params, headers=headers, timeout=REQUEST_TIMEOUT)


def batch_results(d: Deployment, run_id: str) -> list[dict[str, Any]]:
    value = d.api_json("GET", run_path(DAG_ID, run_id, "/taskInstances/batch/xcomEntries/return_value"))["value"]
    results: list[dict[str, Any]] = json.loads(value) if isinstance(value, str) else value
    return results


def assert_no_images_app(d: Deployment, images_run: str) -> None:
    """Airflow below 3.1: the plugin is loaded and registers no app and no view; ``/kontext`` is not ours."""
    ours = [plugin for plugin in d.api_json("GET", "/api/v2/plugins")["plugins"] if plugin["name"] == "kontext_images"]
    assert ours, "the plugin must still load (it is what registers nothing)"
    assert all(plugin["fastapi_apps"] == [] and not plugin.get("external_views") for plugin in ours), ours
    params = {"dag_id": DAG_ID, "run_id": images_run, "task_id": "batch", "map_index": -1, "index": 0}
    for view in ("ti", "run", "image"):
        answer = app_get(d, view, token=d.token("viewer"), **params)
        assert b"\x89PNG" not in answer.content and b"<figure" not in answer.content, (view, answer.status_code)
        assert "Kontext images" not in answer.text, view


def test_the_run_tab_shows_every_image_in_a_real_browser(airflow_deployment: Deployment, images_run: str) -> None:
    d = airflow_deployment
    if not AIRFLOW_HAS_EXTERNAL_VIEWS:
        assert_no_images_app(d, images_run)
        # What is left there: each task instance's "Kontext image" extra link to its first picture.
        for task_id, map_index in (("batch", -1), ("mapped", 0), ("mapped", 1), ("wait", -1)):
            links = d.api_json(
                "GET", run_path(DAG_ID, images_run, f"/taskInstances/{task_id}/links"), params={"map_index": map_index}
            )
            url = d.api_json(
                "GET",
                run_path(DAG_ID, images_run, f"/taskInstances/{task_id}/xcomEntries/result_image_url"),
                params={"map_index": map_index},
            )["value"]
            assert url.strip('"') in json.dumps(links), (task_id, map_index, links)
        return
    t0 = time.monotonic()
    ui_path = f"/dags/{DAG_ID}/runs/{quote(images_run, safe='')}/plugin/kontext-run-images"
    with chromium() as driver:
        log_in(driver, d.base_url, d.token("viewer"))
        driver.get(f"{d.base_url}{ui_path}")
        # The Airflow UI embeds the view in an iframe under its own "Kontext images" tab.
        frame = wait_until(
            "the view's iframe", 60, lambda: driver.find_elements("css selector", "iframe[src*='/kontext/run']")
        )
        wait_until("the images tab to be selected", 30, lambda: "Kontext images" in driver.page_source)
        time.sleep(1)
        screenshot = d.run_dir / SCREENSHOT_NAME
        driver.switch_to.frame(frame[0])
        wait_until("the cards", 30, lambda: len(driver.find_elements("css selector", "figure")) >= 8)
        images = loaded_images(driver)
        cards = driver.execute_script(
            "return [...document.querySelectorAll('figure')].map(f => ({source: f.dataset.source, text: f.innerText}))"
        )
        page = driver.page_source
        full_size = driver.execute_script("return [...document.querySelectorAll('a[href]')].map(a => a.href)")
        driver.switch_to.default_content()
        driver.set_window_size(1400, 1250)  # room for the batch and the mapped task in one picture
        time.sleep(1)
        driver.save_screenshot(str(screenshot))
    print(f"[kontext ui] browser part took {time.monotonic() - t0:.1f} s; screenshot {screenshot}")

    # Every picture loaded: 2 stored batch images, 2 mapped, 1 the sensor collected.
    broken = [image for image in images if image["naturalWidth"] <= 0]
    assert not broken, f"images that did not load: {broken}"
    assert len(images) == 5, images
    sources = sorted(card["source"] for card in cards)
    # batch: 2 stored + 2 failed; create: its id only (the sensor shows the image); wait + mapped: kie.
    assert sources == ["kie", "kie", "kie", "none", "none", "none", "stored", "stored"], cards
    # Stored copies come from the app (by index), the rest straight from kie (here: the emulator).
    stored_srcs = sorted(image["src"] for image in images if "/kontext/image?" in image["src"])
    assert len(stored_srcs) == 2, images
    assert all(
        urlsplit(image["src"]).netloc == urlsplit(d.emulator_url).netloc
        for image in images
        if image not in [i for i in images if "/kontext/image?" in i["src"]]
    ), images
    # Click for full size: every picture is a link to itself.
    assert {image["src"] for image in images} <= set(full_size)
    # Typed errors, mapped tasks' map indexes, prompts and ids are on the page.
    text = "\n".join(card["text"] for card in cards)
    assert "KontextContentPolicyError" in text
    assert "KontextTaskCreateFailedError" in text
    assert "map index 0" in page and "map index 1" in page
    results = batch_results(d, images_run)
    for result in results:
        assert result["kie_task_id"] in text
    assert f'title="{results[0]["stored_path"]}"' in page
    assert API_KEY not in page
    assert screenshot.stat().st_size > 10_000


def test_a_stored_image_is_served_by_index_to_a_reader_of_the_dag(
    airflow_deployment: Deployment, images_run: str
) -> None:
    d = airflow_deployment
    if not AIRFLOW_HAS_EXTERNAL_VIEWS:
        assert_no_images_app(d, images_run)
        return
    token = d.token("viewer")
    results = batch_results(d, images_run)
    for index in (0, 1):
        answer = app_get(
            d, "image", token=token, dag_id=DAG_ID, run_id=images_run, task_id="batch", map_index=-1, index=index
        )
        assert answer.status_code == 200, answer.text
        stored = Path(urlsplit(results[index]["stored_path"]).path)
        assert answer.content == stored.read_bytes()
        assert answer.headers["content-type"] in ("image/png", "image/jpeg")
        assert answer.headers["x-content-type-options"] == "nosniff"
    # The task-instance view of one map index shows that map index only.
    page = app_get(d, "ti", token=token, dag_id=DAG_ID, run_id=images_run, task_id="mapped", map_index=1)
    assert page.status_code == 200
    assert "map index 1" in page.text and "map index 0" not in page.text
    # "{MAP_INDEX}" left unfilled (or -1) on a mapped task: every map index.
    page = app_get(d, "ti", token=token, dag_id=DAG_ID, run_id=images_run, task_id="mapped", map_index="{MAP_INDEX}")
    assert "map index 0" in page.text and "map index 1" in page.text


@pytest.mark.parametrize("path", ["ti", "run", "image"])
def test_requests_without_valid_credentials_are_refused(
    airflow_deployment: Deployment, images_run: str, path: str
) -> None:
    d = airflow_deployment
    if not AIRFLOW_HAS_EXTERNAL_VIEWS:
        assert_no_images_app(d, images_run)
        return
    params = {"dag_id": DAG_ID, "run_id": images_run, "task_id": "batch", "map_index": -1, "index": 0}
    anonymous = app_get(d, path, token=None, **params)
    assert anonymous.status_code == 401, anonymous.text
    forged = app_get(d, path, token="not-a-jwt", **params)
    assert forged.status_code == 403, forged.text
    cookie = requests.get(f"{d.base_url}/kontext/{path}", params=params, cookies={"_token": "x.y.z"}, timeout=20)
    assert cookie.status_code == 403, cookie.text
    assert b"\x89PNG" not in anonymous.content + forged.content + cookie.content


class _Listener(http.server.BaseHTTPRequestHandler):
    """Counts every request: the app must never fetch a URL a request or an XCom names."""

    hits: list[str] = []

    def do_GET(self) -> None:
        _Listener.hits.append(self.path)
        self.send_response(200)
        self.send_header("Content-Type", "image/png")
        self.end_headers()
        self.wfile.write(b"\x89PNG\r\n\x1a\n-not-really")

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def listener() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Listener)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _Listener.hits.clear()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_no_parameter_or_edited_xcom_makes_the_app_read_another_file_or_fetch_a_url(
    airflow_deployment: Deployment, images_run: str, listener: str, tmp_path: Path
) -> None:
    d = airflow_deployment
    if not AIRFLOW_HAS_EXTERNAL_VIEWS:
        assert_no_images_app(d, images_run)
        return
    token = d.token("viewer")
    base = {"dag_id": DAG_ID, "run_id": images_run, "task_id": "batch", "map_index": -1}
    results = batch_results(d, images_run)
    secret = tmp_path / "secret.png"
    secret.write_bytes(b"\x89PNG\r\n\x1a\n" + b"SECRET-BYTES" * 10)

    refused_indexes = [
        "../../../../etc/passwd",
        "..%2F..%2Fetc%2Fpasswd",
        "/etc/passwd",
        str(secret),
        f"file://{secret}",
        f"{listener}/steal.png",
        results[0]["kie_task_id"],
        "-1",
        "2",  # the refused item: no image, so nothing to serve
        "4",  # past the end
        "1e0",
    ]
    for index in refused_indexes:
        answer = app_get(d, "image", token=token, **base, index=index)
        assert answer.status_code in (404, 422), (index, answer.status_code)
        assert b"root:" not in answer.content and b"SECRET-BYTES" not in answer.content, index
    # Extra parameters naming a path or URL are ignored: index 0 is still this run's image 0.
    steered = app_get(d, "image", token=token, **base, index=0, path=str(secret), url=f"{listener}/x", src=str(secret))
    assert steered.status_code == 200
    assert steered.content == Path(urlsplit(results[0]["stored_path"]).path).read_bytes()
    # A run, task or map index other than the one holding the image finds nothing.
    for other in (
        {**base, "run_id": "manual__1970-01-01T00:00:00+00:00"},
        {**base, "run_id": "../" + images_run},
        {**base, "task_id": "generate"},
        {**base, "map_index": "0"},
        {**base, "dag_id": "example_kontext_text_to_image"},
    ):
        answer = app_get(d, "image", token=token, **other, index=0)
        assert answer.status_code == 404, (other, answer.status_code)

    # An XCom edited to point at a file outside storage, or at a URL of ours, serves nothing and
    # makes the api-server fetch nothing.
    tampered = [
        {"kie_task_id": "x1", "status": "SUCCESS", "stored_path": "/etc/passwd", "result_image_url": None},
        {"kie_task_id": "x2", "status": "SUCCESS", "stored_path": f"{listener}/steal.png"},
        {"kie_task_id": "x3", "status": "SUCCESS", "result_image_url": f"{listener}/steal.png"},
        {"kie_task_id": "x4", "status": "SUCCESS", "stored_path": "file:///proc/self/environ"},
    ]
    created = d.api(
        "POST",
        run_path(DAG_ID, images_run, "/taskInstances/create/xcomEntries"),
        json={"key": "kontext_review_items", "value": tampered, "map_index": -1},
    )
    assert created.status_code == 201, created.text
    edited = {**base, "task_id": "create"}
    for index in range(len(tampered)):
        answer = app_get(d, "image", token=token, **edited, index=index)
        assert answer.status_code == 404, (tampered[index], answer.status_code, answer.text[:200])
        assert b"root:" not in answer.content and API_KEY.encode() not in answer.content
    page = app_get(d, "ti", token=token, **edited)
    assert page.status_code == 200
    assert "/steal.png" in page.text  # x3 is linked for the browser to load, and only that
    assert "/etc/passwd" in page.text  # shown as text: where the XCom says the copy is
    assert _Listener.hits == [], f"the api-server fetched {_Listener.hits}"
    assert parse_qs(urlsplit(steered.url).query)["index"] == ["0"]
