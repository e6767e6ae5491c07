"""Settings of the local kie-compatible emulator.

Every number that shapes how the emulator behaves lives here, so a test can make the emulator
fast (``generation_seconds=0.2``), strict (``rate_limit_creates=2``) or broke (``credits=0``)
without touching code. The defaults mirror what kie documents for the live API.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = [
    "ASPECT_RATIOS",
    "DEFAULT_CREDITS_PER_TASK",
    "MODELS",
    "OUTPUT_FORMATS",
    "EmulatorConfig",
    "TimeFormat",
]

TimeFormat = Literal["iso", "epoch_ms"]

#: The six aspect ratios in kie's official ``aspectRatio`` enum, as (width, height) parts.
ASPECT_RATIOS: dict[str, tuple[int, int]] = {
    "21:9": (21, 9),
    "16:9": (16, 9),
    "4:3": (4, 3),
    "1:1": (1, 1),
    "3:4": (3, 4),
    "9:16": (9, 16),
}
OUTPUT_FORMATS: tuple[str, ...] = ("jpeg", "png")
MODELS: tuple[str, ...] = ("flux-kontext-pro", "flux-kontext-max")
DEFAULT_CREDITS_PER_TASK: dict[str, float] = {"flux-kontext-pro": 5.0, "flux-kontext-max": 10.0}

_FLOAT_FIELDS = frozenset(
    {
        "generation_seconds",
        "record_info_null_seconds",
        "credits",
        "rate_limit_window_seconds",
        "origin_url_ttl_seconds",
        "download_url_ttl_seconds",
        "upload_ttl_seconds",
        "callback_timeout_seconds",
        "callback_retry_delay_seconds",
        "input_fetch_timeout_seconds",
        "url_upload_timeout_seconds",
    }
)
_INT_FIELDS = frozenset({"rate_limit_creates", "image_long_side", "callback_max_retries", "market_validation_code"})
_BOOL_FIELDS = frozenset({"mirror_http_status"})
_OPTIONAL_INT_FIELDS = frozenset({"rate_limit_retry_after"})
_OPTIONAL_STR_FIELDS = frozenset({"webhook_hmac_key", "public_base_url"})


@dataclass(frozen=True)
class EmulatorConfig:
    """Behaviour of one emulator instance.

    Frozen so that a running server can swap the whole object atomically when a test changes a
    value live (``POST /_emulator/config``) instead of mutating it under concurrent requests.
    """

    #: The only Bearer token the ``/api/...`` endpoints accept.
    api_key: str
    #: Seconds from create until a task reaches its terminal state (``[emulator:slow=N]`` overrides).
    generation_seconds: float = 3.0
    #: Seconds after create during which record-info still answers the ``recordInfo is null`` quirk.
    record_info_null_seconds: float = 0.5
    #: Starting credit balance of the account.
    credits: float = 1000.0
    #: Credits charged per accepted Kontext create, by model (Market prices: ``market.MODELS``).
    credits_per_task: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_CREDITS_PER_TASK))
    #: Creates allowed per sliding window before kie's HTTP 429 (documented default 20 per 10 s).
    rate_limit_creates: int = 20
    rate_limit_window_seconds: float = 10.0
    #: Real kie sends no ``Retry-After``; set a number of seconds to make the emulator send one.
    rate_limit_retry_after: int | None = None
    #: ``originImageUrl`` is documented as valid for 10 minutes after completion.
    origin_url_ttl_seconds: float = 600.0
    #: Links from ``/api/v1/common/download-url`` are documented as valid for 20 minutes.
    download_url_ttl_seconds: float = 1200.0
    #: Uploaded files are temporary; the docs disagree (24 h or 3 days), the emulator uses 24 h.
    upload_ttl_seconds: float = 86400.0
    #: When set, callbacks carry ``X-Webhook-Timestamp`` and ``X-Webhook-Signature`` (HMAC-SHA256).
    webhook_hmac_key: str | None = None
    #: Long side in pixels of every image the emulator renders; small keeps tests fast.
    image_long_side: int = 512
    #: Prefix of the URLs in responses; ``None`` means the server's own base URL.
    public_base_url: str | None = None
    #: ``createTime``/``completeTime`` type: ISO-8601 strings (Flux docs) or epoch ms (sibling APIs).
    time_format: TimeFormat = "iso"
    #: kie documents a 15 s callback timeout.
    callback_timeout_seconds: float = 15.0
    #: Extra delivery attempts after a failed callback (kie: "stops after 3 failed retries").
    callback_max_retries: int = 3
    callback_retry_delay_seconds: float = 1.0
    #: Timeout for fetching a foreign ``inputImage`` before an edit.
    input_fetch_timeout_seconds: float = 10.0
    #: kie documents a 30 s download timeout for ``/api/file-url-upload``.
    url_upload_timeout_seconds: float = 30.0
    #: Body code of a Market create missing a required input or with a value outside a field's
    #: options: 422 as documented, or 500, which kie-mcp reports kie sometimes answers instead.
    market_validation_code: int = 422
    #: kie answers errors as HTTP 200 with the code in the body; True sends the body code as the
    #: HTTP status too (on ``api.kie.ai`` endpoints), for clients that must cope with both.
    mirror_http_status: bool = False

    def __post_init__(self) -> None:
        """Reject settings that would make the emulator misbehave in confusing ways later."""
        if self.time_format not in ("iso", "epoch_ms"):
            raise ValueError(f"time_format must be 'iso' or 'epoch_ms', not {self.time_format!r}")
        for name in _FLOAT_FIELDS:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError(f"{name} must be a number, not {value!r}")
            if not math.isfinite(value) or (value < 0 and name != "credits"):
                raise ValueError(f"{name} must be a finite number >= 0, not {value!r}")
            object.__setattr__(self, name, float(value))  # frozen: normalise ints once, here
        if self.rate_limit_creates < 0:
            raise ValueError("rate_limit_creates must be >= 0")
        if self.image_long_side < 16:
            raise ValueError("image_long_side must be at least 16 pixels")
        if self.callback_max_retries < 0:
            raise ValueError("callback_max_retries must be >= 0")
        if self.market_validation_code not in (422, 500):
            raise ValueError("market_validation_code must be 422 or 500")
        if not isinstance(self.mirror_http_status, bool):
            raise ValueError("mirror_http_status must be a boolean")
        unknown_models = set(self.credits_per_task) - set(MODELS)
        if unknown_models:
            raise ValueError(f"credits_per_task has unknown models: {sorted(unknown_models)}")

    def cost_of(self, model: str) -> float:
        """Credits one task of ``model`` costs (0 for a model missing from ``credits_per_task``)."""
        return float(self.credits_per_task.get(model, 0.0))

    def with_overrides(self, overrides: Mapping[str, Any]) -> EmulatorConfig:
        """Return a copy with ``overrides`` applied, coercing JSON values to the field types.

        Values arrive from JSON bodies of the control API, where ``3`` may mean ``3.0`` and a
        typo must fail loudly instead of being ignored.
        """
        known = {f.name for f in dataclasses.fields(self)}
        unknown = set(overrides) - known
        if unknown:
            raise ValueError(f"unknown config field(s): {sorted(unknown)}")
        coerced = {name: _coerce(name, value) for name, value in overrides.items()}
        return dataclasses.replace(self, **coerced)

    def as_dict(self) -> dict[str, Any]:
        """Plain-JSON view for ``GET /_emulator/config``."""
        return dataclasses.asdict(self)


def _coerce(name: str, value: Any) -> Any:
    """Turn a JSON value into the type of config field ``name`` or raise ``ValueError``."""
    if name in _FLOAT_FIELDS:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"{name} must be a number")
        return float(value)
    if name in _INT_FIELDS or name in _OPTIONAL_INT_FIELDS:
        if value is None and name in _OPTIONAL_INT_FIELDS:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float) or int(value) != value:
            raise ValueError(f"{name} must be an integer")
        return int(value)
    if name in _BOOL_FIELDS:
        if not isinstance(value, bool):
            raise ValueError(f"{name} must be a boolean")
        return value
    if name in _OPTIONAL_STR_FIELDS:
        if value is not None and not isinstance(value, str):
            raise ValueError(f"{name} must be a string or null")
        return value
    if name == "credits_per_task":
        if not isinstance(value, Mapping):
            raise ValueError("credits_per_task must be an object of model -> cost")
        return {str(k): float(v) for k, v in value.items()}
    if not isinstance(value, str):
        raise ValueError(f"{name} must be a string")
    return value
