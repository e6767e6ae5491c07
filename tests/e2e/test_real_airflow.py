"""A real Airflow 3 deployment runs the text-to-image example DAG against the kie emulator.

Four components (api-server, scheduler, dag-processor, triggerer) run as separate processes on a
throwaway SQLite home with the LocalExecutor; the emulator runs as its console script. The run is
driven through the REST API, then checked from every side: the run's state, the XCom, the image
on disk, the emulator's counters, proof that the wait happened in the triggerer process, and that
the API key shows up in no log and no REST answer.
"""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import pytest
import requests

from airflow_provider_kontext._compat import AIRFLOW_V_3_1_PLUS
from tests.conftest import API_KEY
from tests.e2e.deployment import REQUEST_TIMEOUT, TERMINAL_RUN_STATES, Deployment

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(720)]

DAG_ID = "example_kontext_text_to_image"
TRIGGER_CLASS = "airflow_provider_kontext.triggers.task.KontextTaskTrigger"
RUN_TIMEOUT = 180.0
SLOW_MARKER = "[emulator:slow=15]"


def run_path(run_id: str, suffix: str = "") -> str:
    return f"/api/v2/dags/{DAG_ID}/dagRuns/{quote(run_id, safe='')}{suffix}"


def api_json(deployment: Deployment, method: str, path: str, *, expect: int = 200, **kwargs: Any) -> Any:
    response = deployment.api(method, path, **kwargs)
    assert response.status_code == expect, f"{method} {path} -> HTTP {response.status_code}: {response.text[:2000]}"
    return response.json()


# ------------------------------------------------------------------------------------------------ test


def test_text_to_image_dag_runs_in_a_real_deployment(airflow_deployment: Deployment) -> None:
    d = airflow_deployment
    t0 = time.monotonic()
    rest_answers: list[str] = []  # every REST body the key-leak check looks at

    # 1. The dag-processor has parsed the example DAG. Emulator counters are read as deltas: the
    #    deployment (and its emulator) is shared with the other e2e tests.
    d.wait_dag_parsed(DAG_ID)
    parsed_at = time.monotonic() - t0
    before = d.emulator_stats()

    # 2. Unpause and trigger a run with an id of our own.
    dag = api_json(d, "PATCH", f"/api/v2/dags/{DAG_ID}", json={"is_paused": False})
    assert dag["is_paused"] is False
    run_id = f"kontext_e2e_{uuid.uuid4().hex[:12]}"
    # The deferral must outlast the LocalExecutor's report of the worker's defer-exit (6 s seen on
    # a loaded 2-core machine): Airflow 3.3.2 fails a task whose stale "success" for that exit
    # arrives after the resume was already queued (apache/airflow#67287, #72716; only the
    # "scheduled" variant is fixed). With 3-s generations it failed one run in six here.
    conf = {"prompt": f"A ceramic coffee mug on a walnut desk, soft morning light {SLOW_MARKER}"}
    body = {"dag_run_id": run_id, "logical_date": None, "conf": conf}
    created = api_json(d, "POST", f"/api/v2/dags/{DAG_ID}/dagRuns", json=body)
    assert created["dag_run_id"] == run_id

    # 3. Poll the run, and the generate task instance, whose state and trigger we record on the way.
    generate_states: list[str] = []
    triggers_seen: list[dict[str, Any]] = []
    state = None
    deadline = time.monotonic() + RUN_TIMEOUT
    while time.monotonic() < deadline:
        try:
            run = d.api("GET", run_path(run_id))
            ti = d.api("GET", run_path(run_id, "/taskInstances/generate"))
        except (requests.ConnectionError, requests.Timeout):
            time.sleep(1)
            continue
        if ti.status_code == 200:
            rest_answers.append(ti.text)
            body = ti.json()
            if body["state"] and (not generate_states or generate_states[-1] != body["state"]):
                generate_states.append(body["state"])
            if body.get("trigger"):
                triggers_seen.append(body["trigger"])
        if run.status_code == 200 and run.json()["state"] in TERMINAL_RUN_STATES:
            state = run.json()["state"]
            break
        dead = d.dead_components()
        assert not dead, f"Airflow component(s) died during the run: {dead}"
        time.sleep(0.25)  # the deferral lasts ~15 s (SLOW_MARKER): seen for sure
    run_seconds = time.monotonic() - t0 - parsed_at
    print(
        f"\n[kontext e2e] DAG parsed after {parsed_at:.1f} s; run {state} after {run_seconds:.1f} s; "
        f"generate states seen: {generate_states}"
    )

    assert state is not None, f"run {run_id} not finished after {RUN_TIMEOUT:.0f} s (generate states {generate_states})"
    tis = api_json(d, "GET", run_path(run_id, "/taskInstances"))
    ti_states = {ti["task_id"]: ti["state"] for ti in tis["task_instances"]}
    assert state == "success", f"run {run_id} ended {state!r}; task states {ti_states}"
    assert ti_states == {"generate": "success", "save_image": "success"}

    # 4. The XCom of generate: a succeeded kie task whose image lives on the emulator.
    xcom_answer = d.api("GET", run_path(run_id, "/taskInstances/generate/xcomEntries/return_value"))
    assert xcom_answer.status_code == 200, xcom_answer.text
    rest_answers.append(xcom_answer.text)
    result = xcom_answer.json()["value"]
    if isinstance(result, str):  # depending on the serialization the API returns a JSON string
        result = json.loads(result)
    assert result["status"] == "SUCCESS", result
    image_url = result["result_image_url"]
    emulator = urlsplit(d.emulator_url)
    assert urlsplit(image_url).netloc == emulator.netloc, f"{image_url} is not on the emulator {d.emulator_url}"

    # 5. save_image wrote that image (a real, decodable PNG) under KONTEXT_OUTPUT_DIR.
    saved = api_json(d, "GET", run_path(run_id, "/taskInstances/save_image/xcomEntries/return_value"))
    rest_answers.append(json.dumps(saved))
    value = saved["value"]
    saved_path = Path(json.loads(value) if value.startswith('"') else value)
    assert saved_path.is_file(), f"save_image returned {saved_path}, which does not exist"
    assert d.output_dir.resolve() in saved_path.resolve().parents, f"{saved_path} is outside {d.output_dir}"
    assert saved_path.name == f"{result['kie_task_id']}.png"
    from PIL import Image

    with Image.open(saved_path) as image:
        image.verify()
        assert image.format == "PNG"
    assert saved_path.read_bytes() == requests.get(image_url, timeout=REQUEST_TIMEOUT).content

    # 6. The emulator saw exactly one create, status reads, one key-less image download.
    stats = d.emulator_stats()

    def delta(key: str, endpoint: str | None = None) -> int:
        if endpoint is None:
            return int(stats[key]) - int(before[key])
        return int(stats[key].get(endpoint, 0)) - int(before[key].get(endpoint, 0))

    assert delta("creates_accepted") == 1, (before, stats)
    assert delta("requests", "generate") == 1, (before, stats)
    assert delta("auth_failures") == 0, (before, stats)
    assert delta("requests", "record-info") >= 2, (before, stats)  # the worker's first check + the trigger's polls
    assert delta("file_requests") >= 1, (before, stats)
    assert delta("file_requests_with_auth") == 0, (before, stats)

    # 7. The wait ran as a KontextTaskTrigger in the triggerer process, after a real deferral:
    #    the REST API showed the task deferred on that trigger, the worker's log says it deferred,
    #    and the triggerer wrote the trigger's own log (start, fired event, completion) for it.
    assert "deferred" in generate_states, f"generate was never seen deferred over REST (states {generate_states})"
    assert triggers_seen, "the deferred generate task instance showed no trigger over REST"
    assert {trigger["classpath"] for trigger in triggers_seen} == {TRIGGER_CLASS}, triggers_seen
    generate_dir = d.home / "logs" / f"dag_id={DAG_ID}" / f"run_id={run_id}" / "task_id=generate"
    worker_log = (generate_dir / "attempt=1.log").read_text(encoding="utf-8", errors="replace")
    assert "Pausing task as DEFERRED" in worker_log, f"the worker log does not show the deferral:\n{worker_log[-3000:]}"
    trigger_logs = sorted(generate_dir.glob("attempt=1.log.trigger.*.log"))
    assert len(trigger_logs) == 1, f"expected one triggerer log for generate, found {trigger_logs}"
    trigger_log = trigger_logs[0].read_text(encoding="utf-8", errors="replace")
    fired = [json.loads(line) for line in trigger_log.splitlines() if '"Trigger fired event"' in line]
    assert len(fired) == 1, f"the trigger fired {len(fired)} events:\n{trigger_log}"
    # Logged by the triggerer process: its runner starts the trigger's log (and from Airflow 3.1
    # each record names the file that wrote it).
    assert '"event":"trigger ' in trigger_log.splitlines()[0] and "starting" in trigger_log.splitlines()[0]
    if AIRFLOW_V_3_1_PLUS:
        assert fired[0]["filename"] == "triggerer_job_runner.py", fired[0]
    assert "'status': 'success'" in fired[0]["result"], fired[0]
    assert result["kie_task_id"] in fired[0]["result"], fired[0]
    assert '"trigger completed"' in trigger_log, trigger_log
    generate_ti = api_json(d, "GET", run_path(run_id, "/taskInstances/generate"))
    assert generate_ti["try_number"] == 1, "resuming after the deferral must not count as a retry"
    task_log = d.api("GET", run_path(run_id, "/taskInstances/generate/logs/1"), headers={"Accept": "application/json"})
    assert task_log.status_code == 200, task_log.text[:2000]
    rest_answers.append(task_log.text)

    # 8. The API key appears in no Airflow log (components, task and trigger logs), nor in the
    #    metadata DB or any other file Airflow wrote, nor in any REST answer we received.
    needle = API_KEY.encode()
    assert needle in d.logs["emulator"].read_bytes(), "positive control: the emulator prints its key at start"
    run_dir = d.home.parent
    scanned = [
        path
        for path in sorted(run_dir.rglob("*"))
        if path.is_file() and not path.name.startswith("emulator.") and d.output_dir not in path.parents
    ]  # the emulator owns the key and prints it; the images are binary output
    assert d.logs["triggerer"] in scanned
    assert len([path for path in scanned if "dag_id=" in str(path)]) >= 3, "task/trigger logs were not scanned"
    leaked = [str(path.relative_to(run_dir)) for path in scanned if needle in path.read_bytes()]
    assert not leaked, f"the API key leaked into {leaked}"
    leaked_answers = [answer[:500] for answer in rest_answers if API_KEY in answer]
    assert not leaked_answers, f"the API key leaked into REST answers: {leaked_answers}"
    print(
        f"[kontext e2e] key absent from {len(scanned)} files and {len(rest_answers)} REST answers; "
        f"{time.monotonic() - t0:.1f} s in the test body"
    )
