"""Airflow discovers the provider through its ``apache_airflow_provider`` entry point.

Cheap (one CLI call, a few seconds) and not marked ``e2e``, so it runs everywhere.
"""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
from pathlib import Path

from airflow_provider_kontext import __version__

PACKAGE = "airflow-provider-kontext"
AIRFLOW = str(Path(sys.executable).parent / "airflow")


def test_airflow_providers_list_shows_the_provider(tmp_path: Path) -> None:
    env = {key: value for key, value in os.environ.items() if not key.startswith("AIRFLOW")}
    env.update(
        AIRFLOW_HOME=str(tmp_path),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=f"sqlite:///{tmp_path / 'airflow.db'}",
        PYTHONWARNINGS="ignore",
    )
    done = subprocess.run(
        [AIRFLOW, "providers", "list"], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=180, check=False
    )
    assert done.returncode == 0, f"airflow providers list failed:\n{done.stdout}\n{done.stderr}"
    # A table: "package_name | description | version", one provider a row.
    rows = {
        cells[0]: cells
        for line in done.stdout.splitlines()
        if len(cells := [cell.strip() for cell in line.split("|")]) == 3
    }
    assert PACKAGE in rows, f"{PACKAGE} is not listed:\n{done.stdout}"
    assert rows[PACKAGE][2] == __version__
    assert "Kontext" in rows[PACKAGE][1]


def test_providers_manager_resolves_the_kontext_connection_type() -> None:
    from airflow.providers_manager import ProvidersManager

    from airflow_provider_kontext.hooks.kontext import KontextHook

    manager = ProvidersManager()
    assert manager.providers[PACKAGE].version == __version__
    hook_info = manager.hooks["kontext"]
    assert hook_info is not None, "connection type 'kontext' is not registered"
    module_name, class_name = hook_info.hook_class_name.rsplit(".", 1)
    assert getattr(importlib.import_module(module_name), class_name) is KontextHook
    assert hook_info.package_name == PACKAGE
    assert hook_info.connection_id_attribute_name == "kontext_conn_id"
    assert "airflow_provider_kontext.triggers.task" in {info.trigger_class_name for info in manager.trigger}
    assert "airflow_provider_kontext.links.KontextImageLink" in manager.extra_links_class_names
