"""Market models in a real deployment: deferred waits in the triggerer, every image, stored, paid once.

The same api-server, scheduler, dag-processor and triggerer as the other e2e tests; the DAG
(``tests/e2e/dags/kontext_e2e_market.py``) runs a FLUX.2 pro task and a batch of two Market
models, one of which returns two images. Checked from the outside: the run's state, the XComs,
the files on disk, the emulator's counters (one Market create per request, none on the Flux
Kontext endpoint, polls at the Market status endpoint) and the triggerer's log.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import pytest
import requests

from tests.e2e.deployment import REQUEST_TIMEOUT, Deployment

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

DAG_ID = "kontext_e2e_market"
RUN_TIMEOUT = 240.0


def xcom(d: Deployment, run_id: str, task_id: str, key: str) -> Any:
    path = f"/api/v2/dags/{DAG_ID}/dagRuns/{quote(run_id, safe='')}/taskInstances/{task_id}/xcomEntries/{key}"
    value = d.api_json("GET", path)["value"]
    return json.loads(value) if isinstance(value, str) and value[:1] in '{["' else value


def test_market_models_wait_in_the_triggerer_and_store_every_image(airflow_deployment: Deployment) -> None:
    d = airflow_deployment
    d.wait_dag_parsed(DAG_ID)
    before = d.emulator_stats()
    run_id = d.trigger(DAG_ID)
    assert d.wait_run(DAG_ID, run_id, RUN_TIMEOUT) == "success", d.diagnostics()
    stats = d.emulator_stats()

    def delta(name: str, key: str = "requests") -> int:
        return int(stats[key].get(name, 0)) - int(before[key].get(name, 0))

    assert delta("jobs-create") == 3, "one create per request, none resent"
    assert stats["creates_accepted"] - before["creates_accepted"] == 3
    assert delta("generate") == 0, "nothing went to the Flux Kontext endpoint"
    assert delta("jobs-record-info") >= 3, "the waits read the Market status endpoint"

    single = xcom(d, run_id, "flux_2", "return_value")
    assert (single["status"], single["api"], single["model"]) == ("SUCCESS", "market", "flux-2/pro-text-to-image")
    assert single["credits"] == 5, single
    assert xcom(d, run_id, "flux_2", "result_image_urls") == single["result_image_urls"]
    for task_id in ("flux_2", "variants"):
        trigger_logs = d.trigger_logs(DAG_ID, run_id, task_id)
        assert trigger_logs, f"{task_id} never deferred: its wait did not run in the triggerer"

    results = xcom(d, run_id, "variants", "return_value")
    assert [len(result["result_image_urls"]) for result in results] == [2, 1], results
    assert xcom(d, run_id, "variants", "kie_credits") == sum(result["credits"] for result in results)
    stored = [*results[0]["stored_paths"], results[1]["stored_path"]]
    for uri, url in zip(stored, [*results[0]["result_image_urls"], results[1]["result_image_url"]], strict=True):
        path = Path(urlsplit(uri).path)
        assert path.is_file() and d.output_dir.resolve() in path.resolve().parents, uri
        assert path.read_bytes() == requests.get(url, timeout=REQUEST_TIMEOUT).content
