"""The images app on a real run: real XComs in a real metadata DB, Airflow's auth, the stored files.

One ``dag.test()`` of ``tests/_ui/dags/kontext_ui_images.py`` against the emulator: a Market
task with three stored images, a Flux Kontext task, and a result dict as releases before the
Market wrote it. Then the app (as the api-server mounts it) must show and serve what those
XComs name, by index, and nothing else.
"""

from __future__ import annotations

import html
import importlib.util
import os
import re
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from airflow_provider_kontext._compat import AIRFLOW_V_3_1_PLUS
from airflow_provider_kontext._ui import plugin
from airflow_provider_kontext.emulator import EmulatorServer
from tests._ui.dags import kontext_ui_images
from tests.conftest import CONN_ENV, FAST_EMULATOR, connection_json, forget_host_window

pytestmark = [
    pytest.mark.dagtest,
    pytest.mark.skipif(
        not AIRFLOW_V_3_1_PLUS,
        reason="the plugin mounts the app from Airflow 3.1 (external views; test_plugin.py checks it mounts nothing)",
    ),
]

DAG_FILE = Path(kontext_ui_images.__file__)
DAG_ID = kontext_ui_images.dag.dag_id


@pytest.fixture(scope="module")
def images_run(
    airflow_db: str, emulator_session: EmulatorServer, tmp_path_factory: pytest.TempPathFactory, output_dir: Path
) -> dict[str, Any]:
    """
    One finished run of the DAG, shared by the module: its run id and every XCom by (task id, key).

    The DAG file is linked into the throwaway DAG folder for the run only (``dag.test()`` syncs
    DAGs from there), and the connection set as the function-scoped ``emulator`` fixture does.
    """
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    emulator_session.reset(**FAST_EMULATOR)
    forget_host_window(emulator_session.base_url)
    output = tmp_path_factory.mktemp("kontext-ui-images")
    linked = Path(os.environ["AIRFLOW__CORE__DAGS_FOLDER"]) / DAG_FILE.name
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(CONN_ENV, connection_json(emulator_session.base_url))
        patch.setenv(kontext_ui_images.OUTPUT_ENV, str(output))
        # dag.test() syncs every DAG of the folder: the examples must see the folder their own
        # tests use, or below 3.3 their Asset URIs would stay this run's (see ``output_dir``).
        patch.setenv("KONTEXT_OUTPUT_DIR", str(output_dir))
        linked.symlink_to(DAG_FILE)
        try:
            spec = importlib.util.spec_from_file_location("kontext_ui_images_run", linked)
            assert spec is not None and spec.loader is not None
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            dag_run = module.dag.test()
        finally:
            linked.unlink()
    assert dag_run.state == "success"
    with create_session() as session:
        rows = session.query(XComModel).filter(XComModel.dag_id == DAG_ID, XComModel.run_id == dag_run.run_id)
        values = {(row.task_id, row.key): XComModel.deserialize_value(row) for row in rows}
    return {"run_id": dag_run.run_id, "xcom": values}


async def get(headers: dict[str, str], view: str, **params: Any) -> httpx.Response:
    transport = httpx.ASGITransport(app=plugin.LazyApp())
    async with httpx.AsyncClient(transport=transport, base_url="http://airflow", headers=headers) as client:
        return await client.get(f"/{view}", params={"dag_id": DAG_ID, **params})


def image_srcs(page: str) -> list[str]:
    return [html.unescape(src) for src in re.findall(r'<img src="([^"]+)"', page)]


def stored_file(uri: str) -> bytes:
    return Path(urlsplit(uri).path).read_bytes()


async def test_a_market_task_shows_its_three_images_each_served_by_index(
    images_run: dict[str, Any], viewer_headers: dict[str, str]
) -> None:
    run_id = images_run["run_id"]
    result = images_run["xcom"][("market", "return_value")]
    assert result["api"] == "market" and len(result["stored_paths"]) == 3

    page = await get(viewer_headers, "ti", run_id=run_id, task_id="market", map_index="-1")
    assert page.status_code == 200
    srcs = image_srcs(page.text)
    assert len(srcs) == 3
    assert [parse_qs(urlsplit(src).query)["index"] for src in srcs] == [["0.0"], ["0.1"], ["0.2"]]
    assert "<dt>API</dt><dd>Market</dd>" in page.text
    assert f"<dt>Model</dt><dd>{kontext_ui_images.MARKET_MODEL}</dd>" in page.text
    assert "<dt>Images</dt><dd>3</dd>" in page.text

    served = []
    for src in srcs:
        answer = await get(viewer_headers, "image", **{k: v[0] for k, v in parse_qs(urlsplit(src).query).items()})
        assert answer.status_code == 200, answer.text
        assert answer.headers["x-content-type-options"] == "nosniff"
        served.append(answer.content)
    assert served == [stored_file(path) for path in result["stored_paths"]]
    assert len(set(served)) == 3, "each address serves its own image"


@pytest.mark.parametrize("index", ["0.3", "1.0", "1", "0.-1", "0.", ".1", "0.1.0", "0.1e0", "0.01x", "0/1"])
async def test_an_image_past_a_tasks_images_or_badly_named_is_refused(
    images_run: dict[str, Any], viewer_headers: dict[str, str], index: str
) -> None:
    answer = await get(viewer_headers, "image", run_id=images_run["run_id"], task_id="market", index=index)
    assert answer.status_code == 404
    assert answer.content[:8] != b"\x89PNG\r\n\x1a\n" and answer.content[:3] != b"\xff\xd8\xff"


async def test_the_run_view_totals_the_credits_and_marks_the_estimated_ones(
    images_run: dict[str, Any], viewer_headers: dict[str, str]
) -> None:
    market = images_run["xcom"][("market", "return_value")]
    kontext = images_run["xcom"][("kontext", "return_value")]
    # kie reported the Market task's cost; the Flux Kontext figure is the catalog's price.
    assert (market["credits_estimated"], kontext["credits_estimated"]) == (False, True)
    assert market["credits"] > 0 and kontext["credits"] > 0

    page = await get(viewer_headers, "run", run_id=images_run["run_id"])
    assert page.status_code == 200
    summary = re.search(r'<p class="summary">(.*?)</p>', page.text)
    assert summary is not None
    total = market["credits"] + kontext["credits"]
    assert f"{total:g} credits" in summary.group(1)
    assert f"({kontext['credits']:g} estimated)" in summary.group(1)
    assert "for 2 kie tasks" in summary.group(1)
    assert f"<dt>Credits</dt><dd>{market['credits']:g}</dd>" in page.text
    assert f"<dt>Credits</dt><dd>≈ {kontext['credits']:g} " in page.text
    assert "5 images in 3 task instances" in page.text  # 3 Market, 1 Flux Kontext, 1 from the older release


async def test_a_result_from_before_the_market_renders_and_serves_as_it_did(
    images_run: dict[str, Any], viewer_headers: dict[str, str]
) -> None:
    legacy = images_run["xcom"][("legacy", "return_value")]
    assert "api" not in legacy and "credits" not in legacy and "result_image_urls" not in legacy
    page = await get(viewer_headers, "ti", run_id=images_run["run_id"], task_id="legacy")
    assert page.status_code == 200
    (src,) = image_srcs(page.text)
    assert parse_qs(urlsplit(src).query)["index"] == ["0"]  # the one-image address, as before
    assert "Credits" not in page.text and "Images</dt>" not in page.text
    assert "1 image in 1 task instance</p>" in page.text
    assert "<dt>Model</dt><dd>flux-kontext-pro</dd>" in page.text
    assert "a kite from an older release" in page.text
    answer = await get(viewer_headers, "image", run_id=images_run["run_id"], task_id="legacy", index="0")
    assert answer.status_code == 200
    assert answer.content == stored_file(legacy["stored_path"])
    past = await get(viewer_headers, "image", run_id=images_run["run_id"], task_id="legacy", index="0.1")
    assert past.status_code == 404
