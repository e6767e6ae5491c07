"""The ``kontext`` connection's extra fields, described for Airflow's connection form (``conn-fields``).

Airflow 3.2+ reads this from the provider info and shows labelled, typed inputs with defaults
and bounds instead of a bare JSON box; 3.0/3.1 keep the legacy ``ui-field-behaviour``. Each
bound is the rule :class:`~airflow_provider_kontext._protocol.settings.ClientSettings` applies
when it reads the connection, so the form refuses what the hook would refuse; the defaults
are :mod:`~airflow_provider_kontext._protocol.defaults`, the reader's own.

Imports only :mod:`~airflow_provider_kontext._protocol.defaults` (which imports nothing):
``get_provider_info`` returns it, and that must stay cheap.
"""

from __future__ import annotations

from typing import Any, Final

from airflow_provider_kontext._protocol.defaults import (
    DEFAULT_BACKOFF_INITIAL,
    DEFAULT_BACKOFF_MAX,
    DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_MAX_ATTEMPTS,
    DEFAULT_READ_TIMEOUT,
    DEFAULT_UPLOAD_BASE_URL,
    KIE_CREATES_PER_WINDOW,
    KIE_WINDOW_SECONDS,
)

#: Positive seconds, as the connection reader requires; empty means the default.
_SECONDS: Final[dict[str, Any]] = {"type": ["number", "null"], "exclusiveMinimum": 0}

#: Extra name -> Airflow ``conn-fields`` entry (label, description, JSON schema with the default).
CONN_FIELDS: Final[dict[str, dict[str, Any]]] = {
    "connect_timeout": {
        "label": "Connect timeout (s)",
        "description": "Seconds to wait for a connection to kie. A create that never connected is safe to resend.",
        "schema": {**_SECONDS, "default": DEFAULT_CONNECT_TIMEOUT},
    },
    "read_timeout": {
        "label": "Read timeout (s)",
        "description": (
            "Seconds to wait for kie's answer. A create whose answer times out is never resent: "
            "kie may have accepted (and billed) it."
        ),
        "schema": {**_SECONDS, "default": DEFAULT_READ_TIMEOUT},
    },
    "upload_base_url": {
        "label": "Upload base URL",
        "description": "kie's File Upload API host, used when input_image is a local file or storage path.",
        "schema": {
            "type": ["string", "null"],
            "format": "url",
            "pattern": "^(https?://[^/\\s]+.*)?$",
            "default": DEFAULT_UPLOAD_BASE_URL,
        },
    },
    "max_attempts": {
        "label": "Max attempts per call",
        "description": "Attempts per API call, the first included, for the errors that are safe to retry.",
        "schema": {"type": ["integer", "null"], "minimum": 1, "default": DEFAULT_MAX_ATTEMPTS},
    },
    "backoff_initial": {
        "label": "Backoff initial (s)",
        "description": "Scale of the jittered exponential backoff between attempts.",
        "schema": {**_SECONDS, "default": DEFAULT_BACKOFF_INITIAL},
    },
    "backoff_max": {
        "label": "Backoff max (s)",
        "description": "Longest single backoff sleep (kie's Retry-After is honoured up to 60 s).",
        "schema": {**_SECONDS, "default": DEFAULT_BACKOFF_MAX},
    },
    "max_creates_per_window": {
        "label": "Max creates per window",
        "description": (
            "The kie account's create limit: tasks created per rate window by everything that uses "
            "this connection (kie's default is 20 per 10 s; lower it to leave room for other clients)."
        ),
        "schema": {"type": ["integer", "null"], "minimum": 1, "default": KIE_CREATES_PER_WINDOW},
    },
    "rate_window_seconds": {
        "label": "Rate window (s)",
        "description": "The window of the account's create limit.",
        "schema": {**_SECONDS, "default": KIE_WINDOW_SECONDS},
    },
    "share_rate_limit": {
        "label": "Share the rate limit on this host",
        "description": (
            "Every process on one host paces its creates through one shared window (a locked file), "
            "so parallel tasks do not exceed the account's limit together."
        ),
        "schema": {"type": ["boolean", "null"], "default": True},
    },
}
