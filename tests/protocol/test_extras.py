"""The connection form's typed extra fields (``conn-fields``, Airflow 3.2+) agree with the connection reader.

What the form offers as a default must be what the hook uses when the extra is left out, and
what the form's schema refuses must be what the hook refuses; Airflow's ProvidersManager must
read the fields from the provider info (and the api-server serve them: ``tests/e2e``). Below 3.2
Airflow ignores ``conn-fields``: the form is the legacy one (relabelled password and host, the
extras in the Extra JSON box), which the same tests assert there.
"""

from __future__ import annotations

import importlib.util
import json
from importlib.resources import files
from typing import Any

import jsonschema
import pytest

from airflow_provider_kontext import get_provider_info
from airflow_provider_kontext._compat import AIRFLOW_V_3_2_PLUS
from airflow_provider_kontext._protocol.defaults import KIE_CREATES_PER_WINDOW, KIE_WINDOW_SECONDS
from airflow_provider_kontext._protocol.extras import CONN_FIELDS
from airflow_provider_kontext._protocol.settings import KNOWN_EXTRAS, ClientSettings

SAMPLES: dict[str, list[Any]] = {
    "integer": [-1, 0, 1, 5, 100],
    "number": [-1, 0, 0.001, 2.5, 600],
    "boolean": [True, False],
    "string": ["https://kie.example", "http://127.0.0.1:9000/", "ftp://kie.example", "kie.example", "https://"],
}


def read(extra: dict[str, Any]) -> ClientSettings:
    return ClientSettings.from_connection_fields("kontext_form", host=None, password="key", extra=extra)


def accepted(extra: dict[str, Any]) -> bool:
    try:
        read(extra)
    except Exception:
        return False
    return True


def kind(name: str) -> str:
    types = CONN_FIELDS[name]["schema"]["type"]
    return next(t for t in types if t != "null")


def test_the_form_shows_exactly_the_extras_the_connection_accepts() -> None:
    assert set(CONN_FIELDS) == KNOWN_EXTRAS
    assert read({name: spec["schema"]["default"] for name, spec in CONN_FIELDS.items()}) == read({})


@pytest.mark.parametrize("name", sorted(KNOWN_EXTRAS))
def test_the_forms_default_is_what_the_connection_uses_when_it_is_left_out(name: str) -> None:
    default = CONN_FIELDS[name]["schema"]["default"]
    assert read({name: default}) == read({})
    assert read({name: None}) == read({}), "an emptied field (null) must mean the default"


def test_the_rate_limit_defaults_are_kies() -> None:
    assert CONN_FIELDS["max_creates_per_window"]["schema"]["default"] == KIE_CREATES_PER_WINDOW
    assert CONN_FIELDS["rate_window_seconds"]["schema"]["default"] == KIE_WINDOW_SECONDS


@pytest.mark.parametrize("name", sorted(KNOWN_EXTRAS))
def test_the_form_refuses_what_the_connection_refuses(name: str) -> None:
    schema = CONN_FIELDS[name]["schema"]
    verdicts = {
        value: (jsonschema.Draft202012Validator(schema).is_valid(value), accepted({name: value}))
        for value in SAMPLES[kind(name)]
    }
    assert all(form == reader for form, reader in verdicts.values()), verdicts
    if kind(name) != "boolean":  # a boolean has no value to refuse
        assert {form for form, _ in verdicts.values()} == {True, False}, "the samples must probe both sides"


def test_the_fields_follow_airflows_conn_fields_schema() -> None:
    schema = json.loads((files("airflow") / "provider.yaml.schema.json").read_text())
    connection_type = schema["properties"]["connection-types"]["items"]
    if not AIRFLOW_V_3_2_PLUS:
        # No conn-fields in this Airflow's schema; the provider info may carry them (it is not
        # validated against the schema at run time, test_airflows_providers_manager_reads_the_fields).
        assert "conn-fields" not in connection_type["properties"]
        return
    conn_fields = connection_type["properties"]["conn-fields"]
    jsonschema.validate(get_provider_info()["connection-types"][0]["conn-fields"], conn_fields)
    with pytest.raises(jsonschema.ValidationError):  # the check can fail
        jsonschema.validate({"connect_timeout": {"lable": "typo", "schema": {"type": "number"}}}, conn_fields)


#: Airflow 3.0/3.1 read a hook's form layout (``get_ui_field_behaviour``) only when ``wtforms``
#: imports (the FAB provider brings it): without it they load no provider's layout at all.
LEGACY_FORM_LOADED = AIRFLOW_V_3_2_PLUS or importlib.util.find_spec("wtforms") is not None


def test_the_hook_describes_the_legacy_form() -> None:
    from airflow_provider_kontext.hooks.kontext import KontextHook

    behaviour = KontextHook.get_ui_field_behaviour()
    assert behaviour == get_provider_info()["connection-types"][0]["ui-field-behaviour"]
    assert behaviour["relabeling"] == {"password": "API Key", "host": "Base URL"}


def test_airflows_providers_manager_reads_the_fields() -> None:
    from airflow.providers_manager import ProvidersManager

    manager = ProvidersManager()
    widgets = manager.connection_form_widgets
    assert manager.hooks["kontext"].hook_name == "Kie.ai Flux Kontext"  # the connection type, on every version
    if LEGACY_FORM_LOADED:  # the legacy layout, what 3.0/3.1 show and 3.2+ still read
        assert manager.field_behaviours["kontext"]["relabeling"] == {"password": "API Key", "host": "Base URL"}
    else:  # documented (README, Airflow versions): Airflow's generic fields, the key in Password
        assert "kontext" not in manager.field_behaviours
    if not AIRFLOW_V_3_2_PLUS:
        assert not [name for name in widgets if name.startswith("extra__kontext__")]
        return
    for name, spec in CONN_FIELDS.items():
        widget = widgets[f"extra__kontext__{name}"]
        assert widget.field_name == name
        assert widget.field["schema"]["title"] == spec["label"]
        assert widget.field["value"] == spec["schema"]["default"]
        assert widget.is_sensitive is False


def test_the_connection_form_metadata_lists_the_fields() -> None:
    # What the api-server's /ui/connections/hook_meta serves to the connection form.
    from airflow.api_fastapi.core_api.services.ui.connections import HookMetaService

    (meta,) = [m for m in HookMetaService.hook_meta_data() if m.connection_type == "kontext"]
    if LEGACY_FORM_LOADED:
        assert meta.standard_fields is not None
        assert meta.standard_fields.password is not None
        assert meta.standard_fields.password.title == "API Key"
    else:
        assert meta.standard_fields is None
    if not AIRFLOW_V_3_2_PLUS:
        assert meta.extra_fields is None  # the form's Extra JSON box takes them
        return
    assert meta.extra_fields is not None
    assert set(meta.extra_fields) == set(CONN_FIELDS)
    assert meta.extra_fields["read_timeout"]["schema"]["type"] == ["number", "null"]
