"""Attach the Airflow component logs to any failing e2e test report, with or without ``-s``."""

from __future__ import annotations

from typing import Any

import pytest


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[Any]) -> Any:
    outcome = yield
    report = outcome.get_result()
    if not report.failed:
        return
    deployment = getattr(item, "funcargs", {}).get("airflow_deployment")
    if deployment is None:
        return
    deployment.failed = True
    for name, text in deployment.log_tails().items():
        report.sections.append((f"{name} (tail)", text))
