"""What the app tests share: Airflow's own auth manager, with one DAG nobody may read, and a reader's token."""

from __future__ import annotations

import pytest

#: The DAG the auth manager below refuses to everyone.
HIDDEN_DAG = "hidden"


def _one_dag_hidden() -> object:
    """Airflow's simple auth manager, except that nobody may read the DAG :data:`HIDDEN_DAG`."""
    from airflow.api_fastapi.auth.managers.simple.simple_auth_manager import SimpleAuthManager

    class OneDagHidden(SimpleAuthManager):  # type: ignore[misc]
        def is_authorized_dag(
            self, *, method: str, user: object, access_entity: object = None, details: object = None
        ) -> bool:
            if getattr(details, "id", None) == HIDDEN_DAG:
                return False
            return bool(
                super().is_authorized_dag(method=method, user=user, access_entity=access_entity, details=details)
            )

    return OneDagHidden()


@pytest.fixture
def viewer_headers(airflow_db: str, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """An ``Authorization`` header of a viewer, checked by that auth manager as the api-server would."""
    from airflow.api_fastapi import app as api_app
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser

    monkeypatch.setenv("AIRFLOW__API_AUTH__JWT_SECRET", "unit-test-secret-" * 4)
    manager = _one_dag_hidden()
    if hasattr(api_app, "_AuthManagerState"):  # Airflow 3.2+
        monkeypatch.setattr(api_app._AuthManagerState, "instance", manager)
    else:  # 3.0, 3.1: a module global
        monkeypatch.setattr(api_app, "auth_manager", manager)
    token = manager.generate_jwt(SimpleAuthManagerUser(username="vera", role="viewer"))  # type: ignore[attr-defined]
    return {"Authorization": f"Bearer {token}"}
