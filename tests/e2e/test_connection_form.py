"""The api-server of a real deployment serves the connection form's typed extra fields (Airflow 3.2+).

Below 3.2 it serves the legacy form (no typed extras), as the README's version table says.
"""

from __future__ import annotations

import pytest

from airflow_provider_kontext._compat import AIRFLOW_V_3_2_PLUS
from airflow_provider_kontext._protocol.extras import CONN_FIELDS
from tests.e2e.deployment import Deployment
from tests.protocol.test_extras import LEGACY_FORM_LOADED

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]


def test_the_connection_form_metadata_endpoint_serves_the_typed_extras(airflow_deployment: Deployment) -> None:
    hooks = airflow_deployment.api_json("GET", "/ui/connections/hook_meta")
    (kontext,) = [hook for hook in hooks if hook["connection_type"] == "kontext"]
    assert kontext["hook_name"] == "Kie.ai Flux Kontext"
    if LEGACY_FORM_LOADED:
        assert kontext["standard_fields"]["password"]["title"] == "API Key"
        assert kontext["standard_fields"]["login"]["hidden"] is True
    else:  # Airflow 3.0/3.1 without wtforms: Airflow's generic fields
        assert kontext["standard_fields"] is None
    fields = kontext["extra_fields"]
    if not AIRFLOW_V_3_2_PLUS:
        assert fields is None  # the extras go in the Extra JSON box
        return
    assert set(fields) == set(CONN_FIELDS)
    for name, spec in CONN_FIELDS.items():
        assert fields[name]["schema"]["title"] == spec["label"]
        assert fields[name]["value"] == spec["schema"]["default"]
        assert fields[name]["description"] == spec["description"]
