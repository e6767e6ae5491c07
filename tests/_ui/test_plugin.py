"""The plugin is found where Airflow looks, costs nothing to load, and its app refuses strangers."""

from __future__ import annotations

import json
import subprocess
import sys
from importlib import metadata

import httpx
import pytest

import airflow_provider_kontext
from airflow_provider_kontext._compat import AIRFLOW_HAS_EXTERNAL_VIEWS, AIRFLOW_V_3_1_PLUS
from airflow_provider_kontext._ui import plugin
from tests._ui.conftest import HIDDEN_DAG


def test_registered_by_entry_point_and_in_the_provider_info() -> None:
    (entry,) = [e for e in metadata.entry_points(group="airflow.plugins") if e.name == "kontext_images"]
    assert entry.load() is plugin.KontextImagesPlugin
    (info,) = airflow_provider_kontext.get_provider_info()["plugins"]
    assert info == {"name": "kontext_images", "plugin-class": "airflow_provider_kontext._ui.plugin.KontextImagesPlugin"}


def test_views_on_task_instances_and_dag_runs_with_the_uis_placeholders() -> None:
    apps, external_views = plugin._views(supported=True)
    views = {view["destination"]: view for view in external_views}
    assert set(views) == {"task_instance", "dag_run"}
    assert views["task_instance"]["href"] == (
        "/kontext/ti?dag_id={DAG_ID}&run_id={RUN_ID}&task_id={TASK_ID}&map_index={MAP_INDEX}"
    )
    assert views["dag_run"]["href"] == "/kontext/run?dag_id={DAG_ID}&run_id={RUN_ID}"
    (app,) = apps
    assert app["url_prefix"] == "/kontext"


def test_the_plugin_registers_its_views_from_airflow_3_1() -> None:
    """Documented: below 3.1 (no external views) the plugin registers nothing; the extra link stays."""
    assert AIRFLOW_HAS_EXTERNAL_VIEWS is AIRFLOW_V_3_1_PLUS
    apps, views = plugin._views(supported=AIRFLOW_V_3_1_PLUS)
    assert plugin.KontextImagesPlugin.external_views == views
    assert [app["url_prefix"] for app in plugin.KontextImagesPlugin.fastapi_apps] == [app["url_prefix"] for app in apps]
    assert bool(views) is AIRFLOW_V_3_1_PLUS
    assert plugin._views(supported=False) == ([], [])


def test_loading_the_plugin_builds_no_app() -> None:
    probe = (
        "import sys, json; import airflow.plugins_manager; before = set(sys.modules);"
        "import airflow_provider_kontext._ui.plugin;"
        "new = set(sys.modules) - before;"
        "print(json.dumps(sorted(m for m in new if m.startswith(('airflow_provider_kontext', 'fastapi')))))"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    loaded = json.loads(out.strip().splitlines()[-1])
    assert "airflow_provider_kontext._ui.app" not in loaded
    assert "airflow_provider_kontext._ui.store" not in loaded


@pytest.mark.parametrize("path", ["/ti", "/run", "/image"])
async def test_the_app_answers_401_without_credentials(path: str) -> None:
    app = plugin.LazyApp()
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://airflow") as client:
        answer = await client.get(path, params={"dag_id": "d", "run_id": "r", "task_id": "t", "index": "0"})
    assert answer.status_code == 401
    assert answer.json() == {"detail": "Not authenticated"}


async def test_the_auth_manager_decides_per_dag(viewer_headers: dict[str, str]) -> None:
    transport = httpx.ASGITransport(app=plugin.LazyApp())
    async with httpx.AsyncClient(transport=transport, base_url="http://airflow", headers=viewer_headers) as client:
        visible = await client.get("/run", params={"dag_id": "visible", "run_id": "r"})
        hidden = await client.get("/run", params={"dag_id": HIDDEN_DAG, "run_id": "r"})
        hidden_image = await client.get(
            "/image", params={"dag_id": HIDDEN_DAG, "run_id": "r", "task_id": "t", "index": "0"}
        )
    assert visible.status_code == 200
    assert "No Kontext images here" in visible.text
    if not AIRFLOW_V_3_1_PLUS:
        # Airflow 3.0's requires_access_dag reads the DAG id from the URL path only, never from the
        # query: there this app could not refuse a DAG. One more reason the plugin mounts nothing
        # below 3.1 (the README's version table).
        assert hidden.status_code == 200
        assert plugin.KontextImagesPlugin.fastapi_apps == []
        return
    assert hidden.status_code == 403
    assert hidden_image.status_code == 403
