"""A deferred wait that leaves the worker nothing to do ends in the triggerer, in a real deployment.

``dag.test()`` always resumes on the "worker" after an inline trigger, so only the real
deployment can show it: a deferrable generate without ``output_path`` finishes ``success`` with
the resume's XComs and one worker start; one with ``output_path`` still resumes on a worker and
stores the file (two starts); a deferrable sensor whose ids are written in its DAG file starts and
ends in the triggerer (no worker start). Worker starts are counted from Airflow's event log.

Airflow 3.2+ for the ends, 3.3+ for the sensor's start (the README's version table); below, the
same DAGs run as before the feature: every deferred wait resumes on a worker (two starts) and the
sensor starts on one, which this test asserts there instead.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests

from airflow_provider_kontext._compat import AIRFLOW_ENDS_TASKS_FROM_TRIGGERS, AIRFLOW_STARTS_TASKS_FROM_TRIGGERS
from tests.conftest import API_KEY
from tests.e2e.deployment import REQUEST_TIMEOUT, Deployment, fired_events, run_path

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(720)]

DAG_ID = "kontext_e2e_trigger_end"
SENSOR_DAG_ID = "kontext_e2e_sensor_in_triggerer"
RUN_TIMEOUT = 240.0
#: Longer than the LocalExecutor's report of the defer-exit (apache/airflow#67287, see test_real_airflow).
SLOW_MARKER = "[emulator:slow=15]"
#: How the triggerer logs a fired ``TaskSuccessEvent`` (its payload is the state): the task ends there.
ENDED_IN_TRIGGERER = "TriggerEvent<'success'>"


def xcom(d: Deployment, dag_id: str, run_id: str, task_id: str, key: str) -> Any:
    value = d.api_json("GET", run_path(dag_id, run_id, f"/taskInstances/{task_id}/xcomEntries/{key}"))["value"]
    return json.loads(value) if isinstance(value, str) and value[:1] in '{["' else value


def sensor_dag(kie_task_id: str) -> str:
    return textwrap.dedent(
        f'''
        """Written by test_end_from_trigger: a sensor whose kie task id is known at parse time."""
        from airflow.sdk import DAG

        from airflow_provider_kontext.sensors.task import KontextTaskSensor

        with DAG(dag_id="{SENSOR_DAG_ID}", schedule=None, catchup=False, tags=["kontext", "e2e"]):
            KontextTaskSensor(task_id="wait", kie_task_ids="{kie_task_id}", deferrable=True, poll_interval=2)
        '''
    )


def test_wait_with_nothing_left_for_the_worker_ends_in_the_triggerer(airflow_deployment: Deployment) -> None:
    d = airflow_deployment
    d.wait_dag_parsed(DAG_ID)
    before = d.emulator_stats()
    # The sensor's DAG names its kie task literally, so it is written once that task exists.
    sensed_id = d.create_kie_task(f"A lighthouse in fog {SLOW_MARKER}", API_KEY)
    dags_dir = Path(d.env["AIRFLOW__CORE__DAGS_FOLDER"])
    (dags_dir / f"{SENSOR_DAG_ID}.py").write_text(sensor_dag(sensed_id), encoding="utf-8")
    d.wait_dag_parsed(SENSOR_DAG_ID)

    # One run at a time: two runs starting together on a loaded 2-core machine have hit
    # SQLite's 5-s lock timeout in the api-server.
    run_id = d.trigger(DAG_ID, {"prompt": f"A paper lantern at dusk {SLOW_MARKER}"})
    assert d.wait_run(DAG_ID, run_id, RUN_TIMEOUT) == "success", d.diagnostics()
    sensor_run = d.trigger(SENSOR_DAG_ID)
    assert d.wait_run(SENSOR_DAG_ID, sensor_run, RUN_TIMEOUT) == "success", d.diagnostics()
    stats = d.emulator_stats()
    assert stats["creates_accepted"] - before["creates_accepted"] == 3, (before, stats)  # 2 operators + 1 by hand

    # 1. No output_path: one worker start (create + defer); the trigger ended the task with the
    #    XComs the resume would have pushed.
    starts = d.worker_starts(DAG_ID, run_id, "in_triggerer")
    result = xcom(d, DAG_ID, run_id, "in_triggerer", "return_value")
    assert result["status"] == "SUCCESS", result
    assert result["kie_task_id"] == xcom(d, DAG_ID, run_id, "in_triggerer", "kie_task_id")
    url = result["result_image_url"]
    assert urlsplit(url).netloc == urlsplit(d.emulator_url).netloc, url
    assert xcom(d, DAG_ID, run_id, "in_triggerer", "result_image_url") == url
    assert xcom(d, DAG_ID, run_id, "in_triggerer", "result_image_urls") == [url]
    assert result["create_stats"]["attempts"] == 1, result  # the worker's create stats travelled with the trigger
    assert "stored_path" not in result
    # The "Kontext image" extra link, which the api-server reads from the XCom the trigger pushed.
    links = d.api_json("GET", run_path(DAG_ID, run_id, "/taskInstances/in_triggerer/links"))
    assert url in json.dumps(links), links
    ti = d.api_json("GET", run_path(DAG_ID, run_id, "/taskInstances/in_triggerer"))
    assert ti["state"] == "success" and ti["try_number"] == 1, ti
    trigger_logs = d.trigger_logs(DAG_ID, run_id, "in_triggerer")
    assert len(trigger_logs) == 1, trigger_logs
    (fired,) = fired_events(next(iter(trigger_logs.values())))
    worker_log = d.home / "logs" / f"dag_id={DAG_ID}" / f"run_id={run_id}" / "task_id=in_triggerer" / "attempt=1.log"
    worker_text = worker_log.read_text(encoding="utf-8", errors="replace")
    assert worker_text.count("Pausing task as DEFERRED") == 1, worker_text[-3000:]
    if AIRFLOW_ENDS_TASKS_FROM_TRIGGERS:
        assert fired["result"] == ENDED_IN_TRIGGERER, fired
        assert "1 kie task(s) succeeded." not in worker_text, "the worker resumed: its finish path logged the result"
        assert starts == {-1: 1}, f"worker starts {starts}; event log {d.event_rows(DAG_ID, run_id, 'in_triggerer')}"
    else:  # below 3.2: the trigger reports, the worker resumes and finishes (same result, XComs and link)
        assert "'status': 'success'" in fired["result"] and fired["result"] != ENDED_IN_TRIGGERER, fired
        assert "1 kie task(s) succeeded." in worker_text, worker_text[-3000:]
        assert starts == {-1: 2}, f"worker starts {starts}; event log {d.event_rows(DAG_ID, run_id, 'in_triggerer')}"

    # 2. output_path: the worker still has to store the file, so the task resumed there.
    stored = xcom(d, DAG_ID, run_id, "stored", "return_value")
    assert stored["status"] == "SUCCESS", stored
    path = Path(urlsplit(stored["stored_path"]).path)
    assert path.is_file() and d.output_dir.resolve() in path.resolve().parents, stored
    assert path.read_bytes() == requests.get(stored["result_image_url"], timeout=REQUEST_TIMEOUT).content
    (fired,) = fired_events(next(iter(d.trigger_logs(DAG_ID, run_id, "stored").values())))
    assert "'status': 'success'" in fired["result"] and fired["result"] != ENDED_IN_TRIGGERER, fired
    assert d.worker_starts(DAG_ID, run_id, "stored") == {-1: 2}

    # 3. The sensor with a literal id started in the triggerer and ended there: no worker start.
    sensed = xcom(d, SENSOR_DAG_ID, sensor_run, "wait", "return_value")
    assert sensed["kie_task_id"] == sensed_id and sensed["status"] == "SUCCESS", sensed
    assert xcom(d, SENSOR_DAG_ID, sensor_run, "wait", "result_image_url") == sensed["result_image_url"]
    sensor_ti = d.api_json("GET", run_path(SENSOR_DAG_ID, sensor_run, "/taskInstances/wait"))
    assert sensor_ti["state"] == "success", sensor_ti
    sensor_starts = d.worker_starts(SENSOR_DAG_ID, sensor_run, "wait")
    sensor_task_dir = d.home / "logs" / f"dag_id={SENSOR_DAG_ID}" / f"run_id={sensor_run}" / "task_id=wait"
    if AIRFLOW_STARTS_TASKS_FROM_TRIGGERS:
        assert sensor_starts == {}, d.event_rows(SENSOR_DAG_ID, sensor_run, "wait")
        assert not (sensor_task_dir / "attempt=1.log").exists(), "a worker ran the sensor"
    else:  # below 3.3: started on a worker, whose first check found the task done (it was created
        # before the other run, which waited out its own slow generation): one start, no deferral
        assert sensor_starts == {-1: 1}, d.event_rows(SENSOR_DAG_ID, sensor_run, "wait")
        sensor_log = (sensor_task_dir / "attempt=1.log").read_text(encoding="utf-8", errors="replace")
        assert "Pausing task as DEFERRED" not in sensor_log, sensor_log[-3000:]
    print(
        f"\n[kontext e2e] worker starts: generate {starts[-1]}, with output_path 2, sensor {sensor_starts.get(-1, 0)}"
    )
