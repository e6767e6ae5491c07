"""Turn an Airflow ``kontext`` connection into the settings both transports use.

The sync hook and the async client read the connection the same way because they both call
:meth:`ClientSettings.from_connection_fields`. The API key is kept out of ``repr`` so that a
settings object in a log line or a traceback shows no secret.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import urlsplit

from airflow_provider_kontext import __version__
from airflow_provider_kontext._protocol.defaults import (
    DEFAULT_BACKOFF_INITIAL,
    DEFAULT_BACKOFF_MAX,
    DEFAULT_BASE_URL,
    DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_MAX_ATTEMPTS,
    DEFAULT_READ_TIMEOUT,
    DEFAULT_UPLOAD_BASE_URL,
    KIE_CREATES_PER_WINDOW,
    KIE_WINDOW_SECONDS,
)
from airflow_provider_kontext._protocol.defaults import DEFAULT_MAX_IMAGE_BYTES as DEFAULT_MAX_IMAGE_BYTES
from airflow_provider_kontext._protocol.retry import RetryPolicy
from airflow_provider_kontext.exceptions import KontextConfigurationError

if TYPE_CHECKING:
    from collections.abc import Mapping

#: kie sits behind a CDN that refuses requests without a User-Agent (403 "error code: 1010").
USER_AGENT: Final = f"airflow-provider-kontext/{__version__}"

#: Extras a ``kontext`` connection understands; anything else is refused, so typos show.
KNOWN_EXTRAS: Final = frozenset(
    {
        "connect_timeout",
        "read_timeout",
        "upload_base_url",
        "max_attempts",
        "backoff_initial",
        "backoff_max",
        "max_creates_per_window",
        "rate_window_seconds",
        "share_rate_limit",
    }
)


@dataclass(frozen=True)
class ClientSettings:
    """Where and how to reach kie. ``api_key`` never appears in ``repr``."""

    api_key: str = field(repr=False)
    base_url: str = DEFAULT_BASE_URL
    upload_base_url: str = DEFAULT_UPLOAD_BASE_URL
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT
    read_timeout: float = DEFAULT_READ_TIMEOUT
    retry_policy: RetryPolicy = field(default_factory=RetryPolicy)
    user_agent: str = USER_AGENT
    #: The account's create limit (kie's default; kie raises it on request).
    max_creates_per_window: int = KIE_CREATES_PER_WINDOW
    rate_window_seconds: float = KIE_WINDOW_SECONDS
    #: Share the create window with every process of this host that uses the same account.
    share_rate_limit: bool = True

    @classmethod
    def from_connection_fields(
        cls,
        conn_id: str,
        *,
        host: str | None,
        password: str | None,
        extra: Mapping[str, Any] | None,
        schema: str | None = None,
        port: int | None = None,
    ) -> ClientSettings:
        """
        Read a connection: password = API key, host = base URL, extras = timeouts/upload host/retries.

        ``host`` may be a full URL (``https://api.kie.ai``) or a bare host name (then ``schema``
        or https is the scheme and ``port`` is honoured), because the connection form and
        ``AIRFLOW_CONN_*`` URIs fill it in different ways.
        """
        if not password or not password.strip():
            raise KontextConfigurationError(
                f"Connection {conn_id!r} has no API key: set the connection's password to your kie.ai API key."
            )
        extra = dict(extra or {})
        unknown = sorted(set(extra) - KNOWN_EXTRAS)
        if unknown:
            raise KontextConfigurationError(
                f"Connection {conn_id!r} has unknown extra field(s) {unknown}; known: {sorted(KNOWN_EXTRAS)}."
            )
        return cls(
            api_key=password.strip(),
            base_url=_base_url(conn_id, host, schema, port),
            upload_base_url=_url_field(
                conn_id, "upload_base_url", extra.get("upload_base_url"), DEFAULT_UPLOAD_BASE_URL
            ),
            connect_timeout=_positive(
                conn_id, "connect_timeout", extra.get("connect_timeout"), DEFAULT_CONNECT_TIMEOUT
            ),
            read_timeout=_positive(conn_id, "read_timeout", extra.get("read_timeout"), DEFAULT_READ_TIMEOUT),
            retry_policy=RetryPolicy(
                max_attempts=int(_positive(conn_id, "max_attempts", extra.get("max_attempts"), DEFAULT_MAX_ATTEMPTS)),
                backoff_initial=_positive(
                    conn_id, "backoff_initial", extra.get("backoff_initial"), DEFAULT_BACKOFF_INITIAL
                ),
                backoff_max=_positive(conn_id, "backoff_max", extra.get("backoff_max"), DEFAULT_BACKOFF_MAX),
            ),
            max_creates_per_window=_count(conn_id, "max_creates_per_window", extra.get("max_creates_per_window")),
            rate_window_seconds=_positive(
                conn_id, "rate_window_seconds", extra.get("rate_window_seconds"), KIE_WINDOW_SECONDS
            ),
            share_rate_limit=_flag(conn_id, "share_rate_limit", extra.get("share_rate_limit"), True),
        )

    @property
    def account_id(self) -> str:
        """
        A stable, non-reversible name for the kie account (base URL + key), e.g. for a lock file.

        Two connections with the same key share kie's limit, so the key, hashed, is what names
        the account; the hash is never the key and cannot be turned back into it.
        """
        digest = hashlib.sha256(f"{self.base_url}\n{self.api_key}".encode()).hexdigest()
        return digest[:32]

    def url_for(self, path: str, *, upload: bool = False) -> str:
        return (self.upload_base_url if upload else self.base_url) + path

    def api_headers(self) -> dict[str, str]:
        """Headers for kie's API hosts. Never used for result files, which live on third-party storage."""
        return {
            "Authorization": f"Bearer {self.api_key}",
            "User-Agent": self.user_agent,
            "Accept": "application/json",
        }

    def file_headers(self) -> dict[str, str]:
        """Headers for fetching result images: no Authorization, the key stays with kie."""
        return {"User-Agent": self.user_agent}


def _base_url(conn_id: str, host: str | None, schema: str | None, port: int | None) -> str:
    if not host or not host.strip():
        return DEFAULT_BASE_URL
    host = host.strip()
    if "://" not in host:
        scheme = schema if schema in ("http", "https") else "https"
        host = f"{scheme}://{host}" + (f":{port}" if port else "")
    return _url_field(conn_id, "host", host, DEFAULT_BASE_URL)


def _url_field(conn_id: str, name: str, value: Any, default: str) -> str:
    if value is None or value == "":
        return default
    parts = urlsplit(str(value).strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise KontextConfigurationError(f"Connection {conn_id!r}: {name} must be an http(s) base URL, got {value!r}.")
    return str(value).strip().rstrip("/")


def _positive(conn_id: str, name: str, value: Any, default: float) -> float:
    if value is None or value == "":
        return float(default)
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = -1.0
    if number <= 0:
        raise KontextConfigurationError(
            f"Connection {conn_id!r}: extra {name} must be a positive number, got {value!r}."
        )
    return number


def _flag(conn_id: str, name: str, value: Any, default: bool) -> bool:
    if value is None or value == "":
        return default
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "1", "yes", "on"):
        return True
    if text in ("false", "0", "no", "off"):
        return False
    raise KontextConfigurationError(f"Connection {conn_id!r}: extra {name} must be true or false, got {value!r}.")


def _count(conn_id: str, name: str, value: Any) -> int:
    if value is None or value == "":
        return KIE_CREATES_PER_WINDOW
    number = _positive(conn_id, name, value, KIE_CREATES_PER_WINDOW)
    if number != int(number):
        raise KontextConfigurationError(f"Connection {conn_id!r}: extra {name} must be a whole number, got {value!r}.")
    return int(number)
