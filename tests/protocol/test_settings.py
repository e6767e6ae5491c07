"""Reading a kontext connection: defaults, mirrors, extras, and no key in any repr."""

from __future__ import annotations

import pytest

from airflow_provider_kontext._protocol.settings import USER_AGENT, ClientSettings
from airflow_provider_kontext.exceptions import KontextConfigurationError

KEY = "sk-very-secret-123"


def test_defaults() -> None:
    settings = ClientSettings.from_connection_fields("c", host=None, password=KEY, extra=None)
    assert settings.base_url == "https://api.kie.ai"
    assert settings.upload_base_url == "https://kieai.redpandaai.co"
    assert settings.api_headers()["Authorization"] == f"Bearer {KEY}"
    assert settings.api_headers()["User-Agent"] == USER_AGENT
    assert "Authorization" not in settings.file_headers()
    assert KEY not in repr(settings)


@pytest.mark.parametrize(
    ("host", "schema", "port", "expected"),
    [
        ("https://api.fluxapi.ai/", None, None, "https://api.fluxapi.ai"),
        ("api.kie.ai", None, None, "https://api.kie.ai"),
        ("127.0.0.1", "http", 8765, "http://127.0.0.1:8765"),
        ("http://127.0.0.1:8765", None, None, "http://127.0.0.1:8765"),
    ],
)
def test_host_forms(host: str, schema: str | None, port: int | None, expected: str) -> None:
    settings = ClientSettings.from_connection_fields("c", host=host, password=KEY, extra={}, schema=schema, port=port)
    assert settings.base_url == expected


def test_extras() -> None:
    settings = ClientSettings.from_connection_fields(
        "c",
        host=None,
        password=KEY,
        extra={"connect_timeout": 3, "read_timeout": "7.5", "upload_base_url": "http://up.test", "max_attempts": 2},
    )
    assert (settings.connect_timeout, settings.read_timeout) == (3.0, 7.5)
    assert settings.upload_base_url == "http://up.test"
    assert settings.retry_policy.max_attempts == 2


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"password": None}, "no API key"),
        ({"password": "  "}, "no API key"),
        ({"host": "ftp://x"}, "host"),
        ({"extra": {"timeout": 5}}, "unknown extra"),
        ({"extra": {"read_timeout": -1}}, "read_timeout"),
        ({"extra": {"connect_timeout": "soon"}}, "connect_timeout"),
        ({"extra": {"upload_base_url": "nope"}}, "upload_base_url"),
    ],
)
def test_bad_connections_name_the_connection_and_field(kwargs: dict[str, object], needle: str) -> None:
    fields: dict[str, object] = {"host": None, "password": KEY, "extra": None, **kwargs}
    with pytest.raises(KontextConfigurationError) as raised:
        ClientSettings.from_connection_fields("my_kontext", **fields)  # type: ignore[arg-type]
    assert "my_kontext" in str(raised.value)
    assert needle in str(raised.value)
    assert KEY not in str(raised.value)
