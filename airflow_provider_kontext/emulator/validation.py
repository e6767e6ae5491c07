"""Server-side validation of a generate request, the way kie answers bad parameters.

Kie answers parameter errors with HTTP 200 and body code 422, except an out-of-range
``safetyTolerance``, which it documents as body code 500 with a message naming the allowed range.
Unknown fields are ignored silently (so a typo like ``imageUrl`` turns an edit into text-to-image,
exactly as on the live API).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from airflow_provider_kontext.emulator.config import ASPECT_RATIOS, MODELS, OUTPUT_FORMATS

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = ["GENERATE_FIELDS", "Rejection", "is_http_url", "validate_generate"]

#: kie's documented generate fields, in the order of the official schema.
GENERATE_FIELDS: tuple[str, ...] = (
    "prompt",
    "enableTranslation",
    "uploadCn",
    "inputImage",
    "aspectRatio",
    "outputFormat",
    "promptUpsampling",
    "model",
    "callBackUrl",
    "safetyTolerance",
    "watermark",
)
_BOOL_FIELDS = ("enableTranslation", "uploadCn", "promptUpsampling")
_URL_FIELDS = ("inputImage", "callBackUrl")


@dataclass(frozen=True)
class Rejection:
    """A refused create: the body ``code`` and ``msg`` to answer with."""

    code: int
    msg: str


def is_http_url(value: object) -> bool:
    """True for an absolute http(s) URL with a host."""
    if not isinstance(value, str):
        return False
    try:
        parsed = urlsplit(value)
    except ValueError:
        return False
    return parsed.scheme in ("http", "https") and bool(parsed.netloc)


def validate_generate(body: Mapping[str, Any]) -> dict[str, Any] | Rejection:
    """The accepted parameters (known fields only, empty optional strings dropped) or a rejection."""
    params: dict[str, Any] = {}
    for name in GENERATE_FIELDS:
        value = body.get(name)
        if value is None or (value == "" and name != "prompt"):
            continue
        params[name] = value

    prompt = params.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        return Rejection(422, "prompt is required and cannot be empty")
    aspect = params.get("aspectRatio")
    if aspect is not None and aspect not in ASPECT_RATIOS:
        return Rejection(422, f"aspectRatio must be one of {', '.join(ASPECT_RATIOS)}")
    output_format = params.get("outputFormat")
    if output_format is not None and output_format not in OUTPUT_FORMATS:
        return Rejection(422, "outputFormat must be one of jpeg, png")
    model = params.get("model")
    if model is not None and model not in MODELS:
        return Rejection(422, f"model must be one of {', '.join(MODELS)}")
    for name in _BOOL_FIELDS:
        if name in params and not isinstance(params[name], bool):
            return Rejection(422, f"{name} must be a boolean")
    for name in _URL_FIELDS:
        if name in params and not is_http_url(params[name]):
            return Rejection(422, f"{name} must be a valid http(s) URL")
    if "watermark" in params and not isinstance(params["watermark"], str):
        return Rejection(422, "watermark must be a string")

    tolerance = params.get("safetyTolerance")
    if tolerance is not None:
        if isinstance(tolerance, bool) or not isinstance(tolerance, int):
            return Rejection(422, "safetyTolerance must be an integer")
        if "inputImage" in params and not 0 <= tolerance <= 2:
            return Rejection(500, "safetyTolerance is out of range: it must be between 0 and 2 for image editing")
        if not 0 <= tolerance <= 6:
            return Rejection(500, "safetyTolerance is out of range: it must be between 0 and 6 for image generation")
    return params
