"""The real deployment every e2e test shares, and its component logs on any failing test report.

One deployment per session: starting it costs about 30 s on 2 cores, and the tests tolerate each
other (they read emulator counters as deltas and use their own runs and DAGs).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.conftest import API_KEY, EXAMPLES_DIR, connection_json
from tests.e2e.deployment import Deployment, DeploymentSpec, deploy

if TYPE_CHECKING:
    from collections.abc import Iterator

E2E_DAGS_DIR = Path(__file__).resolve().parent / "dags"
#: Real logins (simple auth manager): requests without credentials are refused, as in production.
#: ``Deployment.http`` carries the admin's token; the UI tests also log in as the viewer.
E2E_USERS = {"admin": "admin", "viewer": "viewer"}

#: Triggerer failover timing, shortened so the kill -9 test waits seconds, not a minute.
#: A triggerer heartbeats its Job row every ``[triggerer] job_heartbeat_sec`` (default 5 s);
#: another triggerer adopts a trigger only once the owner's last heartbeat is older than
#: ``[triggerer] triggerer_health_check_threshold`` (default 30 s; ``Trigger.assign_unassigned``
#: in airflow/models/trigger.py). 1 s and 5 s keep a 5x margin between them. Safe in this
#: deployment: with one live triggerer at a time, a late heartbeat of the live one only makes it
#: re-adopt its own triggers.
TRIGGERER_FAILOVER_ENV = {
    "AIRFLOW__TRIGGERER__JOB_HEARTBEAT_SEC": "1",
    "AIRFLOW__TRIGGERER__TRIGGERER_HEALTH_CHECK_THRESHOLD": "5",
}


def e2e_dag_files() -> list[Path]:
    """The example DAGs (with the module they share) and the e2e-only DAGs."""
    return sorted(Path(EXAMPLES_DIR).glob("*.py")) + sorted(E2E_DAGS_DIR.glob("*.py"))


@pytest.fixture(scope="session")
def airflow_deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    spec = DeploymentSpec(
        dag_files=e2e_dag_files(),
        api_key=API_KEY,
        connection=connection_json,
        extra_env=TRIGGERER_FAILOVER_ENV,
        users=E2E_USERS,
    )
    with deploy(tmp_path_factory.mktemp("kontext-e2e"), spec) as deployment:
        yield deployment


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[Any]) -> Any:
    outcome = yield
    report = outcome.get_result()
    if not report.failed:
        return
    funcargs = getattr(item, "funcargs", {})
    # The LocalExecutor deployment, or the distributed one (test_distributed.py's Cluster).
    deployment = funcargs.get("airflow_deployment") or getattr(funcargs.get("distributed"), "deployment", None)
    if deployment is None:
        return
    deployment.failed = True
    for name, text in deployment.log_tails().items():
        report.sections.append((f"{name} (tail)", text))
