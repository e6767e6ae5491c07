"""Human review through a real api-server: three variants, a reviewer picks one, only it is published.

``example_kontext_review`` runs against the emulator until its review waits for input; the
required-actions form is opened in headless Chromium (its Markdown body must show the three
images), the answer goes through Airflow's HITL REST API, and then only the chosen image may
reach ``publish`` and the disk.

Human-in-the-loop came with Airflow 3.1: on 3.0 the example DAG fails to parse with the
provider's ``KontextAirflowVersionError``, and the DAG processor reports that as the file's import
error (the README's version table), which is what this test asserts there.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import requests

from airflow_provider_kontext._compat import AIRFLOW_V_3_1_PLUS, AIRFLOW_V_3_3_PLUS
from tests.e2e.browser import chromium, loaded_images, log_in, wait_until
from tests.e2e.deployment import REQUEST_TIMEOUT, Deployment, DeploymentError, run_path

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]

DAG_ID = "example_kontext_review"
#: The deferral must outlast the worker's defer-exit report (apache/airflow#67287; see
#: test_real_airflow.py), so the variants take 12 s in the emulator.
BRIEF = "A glass teapot with blossoms, soft daylight [emulator:slow=12]"
OPTIONS = ["Image 1", "Image 2", "Image 3", "None of these"]
CHOSEN = "Image 2"
WAIT_TIMEOUT = 240.0


def xcom(d: Deployment, run_id: str, task_id: str, key: str = "return_value", map_index: int = -1) -> Any:
    path = run_path(DAG_ID, run_id, f"/taskInstances/{task_id}/xcomEntries/{key}?map_index={map_index}")
    value = d.api_json("GET", path)["value"]
    return json.loads(value) if isinstance(value, str) and value[:1] in '[{"' else value


def ti_state(d: Deployment, run_id: str, task_id: str) -> str | None:
    state: str | None = d.api_json("GET", run_path(DAG_ID, run_id, f"/taskInstances/{task_id}"))["state"]
    return state


def assert_the_dag_says_it_needs_airflow_3_1(d: Deployment) -> None:
    def import_error() -> str | None:
        errors = d.api_json("GET", "/api/v2/importErrors", params={"limit": 100})["import_errors"]
        mine = [e["stack_trace"] for e in errors if e["filename"].endswith(f"{DAG_ID}.py")]
        return mine[0] if mine else None

    trace = wait_until("the review DAG's import error", WAIT_TIMEOUT, import_error, every=1.0)
    assert "KontextAirflowVersionError: KontextReviewOperator needs Airflow 3.1 or newer" in trace, trace
    assert d.api("GET", f"/api/v2/dags/{DAG_ID}").status_code == 404


def test_a_reviewer_picks_one_of_three_variants_and_only_that_one_is_published(
    airflow_deployment: Deployment,
) -> None:
    d = airflow_deployment
    if not AIRFLOW_V_3_1_PLUS:
        assert_the_dag_says_it_needs_airflow_3_1(d)
        return
    d.wait_dag_parsed(DAG_ID)
    t0 = time.monotonic()
    run_id = d.trigger(DAG_ID, conf={"brief": BRIEF})

    # Airflow 3.3 shows a review waiting for its answer as "awaiting_input"; 3.1 and 3.2 as "deferred".
    waiting_state = "awaiting_input" if AIRFLOW_V_3_3_PLUS else "deferred"

    def awaiting() -> bool:
        state = ti_state(d, run_id, "review")
        if state in ("failed", "upstream_failed", "success"):
            raise DeploymentError(f"review ended {state} before anyone answered\n{d.diagnostics()}")
        return state == waiting_state

    wait_until("the review to wait for input", WAIT_TIMEOUT, awaiting, every=1.0)
    waited = time.monotonic() - t0
    variants = xcom(d, run_id, "generate_variants")
    assert [v["status"] for v in variants] == ["SUCCESS"] * 3

    # The form Airflow shows: one option per image, pick one, no default (a timeout fails).
    hitl = run_path(DAG_ID, run_id, "/taskInstances/review/-1/hitlDetails")
    detail = d.api_json("GET", hitl)
    assert detail["options"] == OPTIONS
    assert detail["multiple"] is False
    assert detail["defaults"] is None
    for variant in variants:
        assert f"]({variant['result_image_url']})" in detail["body"], "each image is in the Markdown body"

    # The reviewer's page: the Markdown body renders the three images in the browser.
    page = f"/dags/{DAG_ID}/runs/{quote(run_id, safe='')}/tasks/review/required_actions"
    with chromium() as driver:
        log_in(driver, d.base_url, d.token("admin"))
        driver.get(f"{d.base_url}{page}")
        wait_until(
            "the form's images", 60, lambda: len(driver.find_elements("css selector", "img[alt^='Image ']")) == 3
        )
        images = [image for image in loaded_images(driver) if image["alt"].startswith("Image ")]
        driver.save_screenshot(str(d.run_dir / "kontext-review-form.png"))
    assert [image["alt"] for image in images] == ["Image 1", "Image 2", "Image 3"]
    assert all(image["naturalWidth"] > 0 for image in images), images
    assert [image["src"] for image in images] == [v["result_image_url"] for v in variants]

    # Nobody without credentials may answer; the reviewer answers through the REST API.
    anonymous = requests.patch(f"{d.base_url}{hitl}", json={"chosen_options": [CHOSEN]}, timeout=REQUEST_TIMEOUT)
    assert anonymous.status_code == 401, anonymous.text
    answered = d.api_json("PATCH", hitl, json={"chosen_options": [CHOSEN]})
    assert answered["chosen_options"] == [CHOSEN]
    state = d.wait_run(DAG_ID, run_id, WAIT_TIMEOUT)
    print(
        f"\n[kontext ui] review waiting after {waited:.1f} s; run {state} {time.monotonic() - t0:.1f} s after trigger"
    )
    assert state == "success"

    # Only the chosen variant went on: the review's return value, one publish, one file.
    chosen = variants[1]
    assert xcom(d, run_id, "review") == [chosen]
    decisions = [item["review"] for item in xcom(d, run_id, "review", "kontext_review_items")]
    assert decisions == ["rejected", "approved", "rejected"]
    publishes = d.api_json("GET", run_path(DAG_ID, run_id, "/taskInstances"))["task_instances"]
    publish = [ti for ti in publishes if ti["task_id"] == "publish"]
    assert [(ti["map_index"], ti["state"]) for ti in publish] == [(0, "success")], publish
    published = Path(xcom(d, run_id, "publish", map_index=0))
    assert published.is_file()
    assert published.name.startswith(chosen["kie_task_id"])
    files = sorted(path.name for path in published.parent.iterdir())
    assert files == [published.name], f"only the approved image may be stored, found {files}"
    assert published.read_bytes() == requests.get(chosen["result_image_url"], timeout=REQUEST_TIMEOUT).content
    for rejected in (variants[0], variants[2]):
        assert not list(d.output_dir.rglob(f"{rejected['kie_task_id']}*")), "a rejected image was stored"
