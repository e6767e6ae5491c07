"""Shared fixtures: a throwaway Airflow home, one real emulator over loopback, and a connection to it.

The API key is deliberately recognisable, so tests can prove it never leaks anywhere.
"""

from __future__ import annotations

import json
import os
import tempfile
from typing import TYPE_CHECKING, Any

# Airflow reads its home and config at import time: set them before anything imports it.
_AIRFLOW_HOME = tempfile.mkdtemp(prefix="kontext-tests-airflow-")
os.environ["AIRFLOW_HOME"] = _AIRFLOW_HOME
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
os.environ.setdefault("AIRFLOW__CORE__UNIT_TEST_MODE", "True")
os.environ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = f"sqlite:///{_AIRFLOW_HOME}/airflow.db"
EXAMPLES_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "dags_examples")
TEST_DAGS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "dags", "test_dags")
# dag.test() serializes DAGs from the configured DAG folder: link the examples and the test-only
# DAGs into one throwaway folder.
_DAGS_FOLDER = os.path.join(_AIRFLOW_HOME, "dags")
os.makedirs(_DAGS_FOLDER)
for _folder in (EXAMPLES_DIR, TEST_DAGS_DIR):
    for _name in os.listdir(_folder):
        if _name.endswith(".py"):
            os.symlink(os.path.join(_folder, _name), os.path.join(_DAGS_FOLDER, _name))
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = _DAGS_FOLDER

import pytest  # noqa: E402

from airflow_provider_kontext.emulator import EmulatorConfig, EmulatorServer  # noqa: E402

if TYPE_CHECKING:
    from collections.abc import Iterator

API_KEY = "kontext-test-SECRET-key-7f3a9c"
CONN_ENV = "AIRFLOW_CONN_KONTEXT_DEFAULT"
#: Fast but realistic: tasks finish after 0.4 s, ``recordInfo is null`` for the first 0.1 s.
FAST_EMULATOR: dict[str, Any] = {"generation_seconds": 0.4, "record_info_null_seconds": 0.1, "image_long_side": 128}
#: Retries without real waiting, short read timeout so timeout faults are quick.
FAST_EXTRAS: dict[str, Any] = {"backoff_initial": 0.01, "backoff_max": 0.05, "read_timeout": 2, "connect_timeout": 2}


def connection_json(base_url: str, *, api_key: str = API_KEY, **extra: Any) -> str:
    return json.dumps(
        {
            "conn_type": "kontext",
            "host": base_url,
            "password": api_key,
            "extra": {**FAST_EXTRAS, "upload_base_url": base_url, **extra},
        }
    )


@pytest.fixture(scope="session")
def emulator_session() -> Iterator[EmulatorServer]:
    with EmulatorServer(EmulatorConfig(api_key=API_KEY, **FAST_EMULATOR)) as server:
        yield server


@pytest.fixture
def emulator(emulator_session: EmulatorServer, monkeypatch: pytest.MonkeyPatch) -> EmulatorServer:
    """The shared emulator, reset, with ``kontext_default`` pointing at it."""
    emulator_session.reset(**FAST_EMULATOR)
    monkeypatch.setenv(CONN_ENV, connection_json(emulator_session.base_url))
    forget_host_window(emulator_session.base_url)
    return emulator_session


def forget_host_window(base_url: str, api_key: str = API_KEY) -> None:
    """Start a test with an empty host-wide create window, as the emulator's limiter is after a reset."""
    from airflow_provider_kontext._protocol.settings import ClientSettings
    from airflow_provider_kontext.hooks._host_window import HostWindow

    path = HostWindow(ClientSettings(api_key=api_key, base_url=base_url).account_id).path
    if os.path.exists(path):
        os.remove(path)


@pytest.fixture(scope="session")
def airflow_db() -> str:
    """A migrated SQLite metadata DB in the throwaway AIRFLOW_HOME (``dag.test()`` needs one)."""
    import subprocess
    import sys

    subprocess.run(
        [sys.executable, "-m", "airflow", "db", "migrate"],
        check=True,
        capture_output=True,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )
    _one_execution_api_per_process()
    return _AIRFLOW_HOME


def _one_execution_api_per_process() -> None:
    """
    Below Airflow 3.3, ``dag.test()`` builds a new in-process execution API app for every task
    and trigger it runs (FastAPI with Cadwyn's versioned routes: about 0.6 s of CPU each, most of
    an example DAG's run); 3.3 caches it for the process (``functools.lru_cache`` on
    ``in_process_api_server``). Cache it the same way on every line.
    """
    import functools

    from airflow.sdk.execution_time import supervisor

    if not hasattr(supervisor.in_process_api_server, "cache_info"):
        supervisor.in_process_api_server = functools.lru_cache(maxsize=1)(supervisor.in_process_api_server)


def requests_to(emulator: EmulatorServer, endpoint: str) -> int:
    return int(emulator.stats()["requests"].get(endpoint, 0))


@pytest.fixture(scope="session")
def output_dir(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """
    One image folder (``KONTEXT_OUTPUT_DIR``) for every ``dag.test()`` of a process: the content
    pipeline's Asset URIs are built from it.

    Below Airflow 3.3, ``dag.test()`` registers a DAG's assets only the first time that dag_id
    is tested against a metadata DB, and any ``dag.test()`` syncs every DAG of the DAG folder: a
    run that parsed the examples with another folder would leave their Asset URIs behind, so
    every test that runs ``dag.test()`` sets this one. Runs write under their own run id, so
    sharing the folder mixes nothing.
    """
    return tmp_path_factory.mktemp("kontext-images")
