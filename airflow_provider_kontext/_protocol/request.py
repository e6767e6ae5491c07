"""The create requests of both API families, validated locally before anything is sent.

:class:`GenerateRequest` is a Flux Kontext ``generate``; :class:`MarketRequest` a Market
``createTask`` (any catalog model and its ``input``). kie silently ignores unknown fields, so a
typo (``imageUrl`` for ``inputImage``) would turn a paid edit into a paid text-to-image.
Validation here refuses unknown names and bad values with a
:class:`~airflow_provider_kontext.exceptions.KontextValidationError` that names the field,
before any HTTP request: nothing sent, nothing paid.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Literal, get_args
from urllib.parse import urlsplit

from airflow_provider_kontext.exceptions import KontextValidationError

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

AspectRatio = Literal["21:9", "16:9", "4:3", "1:1", "3:4", "9:16"]
OutputFormat = Literal["jpeg", "png"]
Model = Literal["flux-kontext-pro", "flux-kontext-max"]

ASPECT_RATIOS: Final[tuple[str, ...]] = get_args(AspectRatio)
OUTPUT_FORMATS: Final[tuple[str, ...]] = get_args(OutputFormat)
MODELS: Final[tuple[str, ...]] = get_args(Model)

#: kie's moderation scale: 0 (strictest) to 6 when generating, capped at 2 when editing.
MAX_SAFETY_TOLERANCE_GENERATE: Final = 6
MAX_SAFETY_TOLERANCE_EDIT: Final = 2


def check_task_id(task_id: Any) -> str:
    """kie task ids are opaque strings; refuse anything else before it reaches a URL."""
    if not isinstance(task_id, str) or not task_id.strip():
        raise KontextValidationError(f"kie task id must be a non-empty string, got {task_id!r}.", field="task_id")
    return task_id.strip()


def check_task_ids(task_ids: Sequence[Any]) -> list[str]:
    """The ids of one wait: at least one, each a valid kie task id."""
    ids = [check_task_id(task_id) for task_id in task_ids]
    if not ids:
        raise KontextValidationError("At least one kie task id is needed.", field="kie_task_ids")
    return ids


def check_poll_interval(seconds: Any) -> float:
    """``poll_interval`` of the operators, the sensor and the trigger: a positive number of seconds."""
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not seconds > 0:  # also refuses NaN
        raise ValueError(f"poll_interval must be a positive number of seconds, got {seconds!r}.")
    return float(seconds)


@dataclass(frozen=True)
class GenerateRequest:
    """
    One ``POST /api/v1/flux/kontext/generate`` request; ``None`` means "not sent, kie's default applies".

    Construct it with :meth:`from_fields` (or directly); construction validates, so an instance
    is always sendable.
    """

    # The one list of kie's generate fields, in its schema order, each with its JSON name.
    prompt: str
    enable_translation: bool | None = dataclasses.field(default=None, metadata={"wire": "enableTranslation"})
    upload_cn: bool | None = dataclasses.field(default=None, metadata={"wire": "uploadCn"})
    input_image: str | None = dataclasses.field(default=None, metadata={"wire": "inputImage"})
    aspect_ratio: AspectRatio | None = dataclasses.field(default=None, metadata={"wire": "aspectRatio"})
    output_format: OutputFormat | None = dataclasses.field(default=None, metadata={"wire": "outputFormat"})
    prompt_upsampling: bool | None = dataclasses.field(default=None, metadata={"wire": "promptUpsampling"})
    model: Model | None = dataclasses.field(default=None, metadata={"wire": "model"})
    callback_url: str | None = dataclasses.field(default=None, metadata={"wire": "callBackUrl"})
    safety_tolerance: int | None = dataclasses.field(default=None, metadata={"wire": "safetyTolerance"})
    watermark: str | None = dataclasses.field(default=None, metadata={"wire": "watermark"})

    def __post_init__(self) -> None:
        validate_fields(dataclasses.asdict(self))

    @classmethod
    def from_fields(cls, prompt: Any, **fields: Any) -> GenerateRequest:
        """Build from snake_case keyword fields, refusing unknown names (kie would ignore them)."""
        unknown = sorted(set(fields) - set(OPTIONAL_FIELDS))
        if unknown:
            raise KontextValidationError(
                f"Unknown generate field(s) {unknown}; valid fields are prompt, {', '.join(OPTIONAL_FIELDS)}.",
                field=unknown[0],
            )
        return cls(prompt=prompt, **fields)

    @property
    def is_edit(self) -> bool:
        """An ``inputImage`` makes the call an edit; without one it is text-to-image."""
        return self.input_image is not None

    @property
    def estimated_credits(self) -> float | None:
        """The catalog's price of this image; ``None`` when unknown."""
        from airflow_provider_kontext._protocol import catalog

        return catalog.kontext_price(self.model)

    @property
    def model_name(self) -> str:
        from airflow_provider_kontext._protocol import catalog

        return self.model or catalog.KONTEXT_DEFAULT_MODEL

    def to_payload(self) -> dict[str, Any]:
        """The JSON body in kie's field names; unset fields are left out so kie's defaults apply."""
        return {WIRE_NAMES[name]: value for name, value in dataclasses.asdict(self).items() if value is not None}


@dataclass(frozen=True)
class MarketRequest:
    """
    One Market ``createTask``: a model of the catalog and its ``input``, validated on construction.

    ``input`` is what is sent: the catalog's normalized copy (e.g. ``num_images`` as the string kie
    wants). ``allow_uncatalogued_model`` is the deliberate opt-out for a model kie has and the
    catalog does not (yet): only then is an unknown model accepted, with just the shape of its
    ``input`` checked (a non-empty JSON object). A catalogued model is always validated in full.
    """

    model: str
    input: Mapping[str, Any]
    callback_url: str | None = None
    allow_uncatalogued_model: bool = False

    def __post_init__(self) -> None:
        from airflow_provider_kontext._protocol import catalog

        if self.callback_url is not None:
            check_http_url(self.callback_url, field="callback_url")
        if not isinstance(self.model, str) or not self.model.strip():
            raise KontextValidationError(f"model must be a non-empty string, got {self.model!r}.", field="model")
        if self.catalogued or not self.allow_uncatalogued_model:
            checked = catalog.validate_input(self.model, self.input)
        else:
            checked = catalog.check_uncatalogued_input(self.model, self.input)
        object.__setattr__(self, "input", checked)

    @property
    def catalogued(self) -> bool:
        from airflow_provider_kontext._protocol import catalog

        return self.model in catalog.catalog_models()

    @property
    def is_edit(self) -> bool:
        """Any image in the input makes it an edit (or upscale); none is text-to-image."""
        from airflow_provider_kontext._protocol import catalog

        fields = catalog.image_url_fields(self.model) if self.catalogued else ()
        return any(self.input.get(name) for name in fields)

    @property
    def model_name(self) -> str:
        return self.model

    @property
    def estimated_credits(self) -> float | None:
        """The catalog's price of this task (all its images); ``None`` when unknown."""
        from airflow_provider_kontext._protocol import catalog

        return catalog.estimated_credits(self.model, self.input) if self.catalogued else None


#: A create of either family: what the hook sends.
CreateRequest = GenerateRequest | MarketRequest


#: Python (snake_case) field name -> kie JSON (camelCase) field name, in kie's schema order.
WIRE_NAMES: Final[dict[str, str]] = {
    spec.name: spec.metadata.get("wire", spec.name) for spec in dataclasses.fields(GenerateRequest)
}
#: The optional fields, i.e. everything a caller may pass besides ``prompt``.
OPTIONAL_FIELDS: Final[tuple[str, ...]] = tuple(name for name in WIRE_NAMES if name != "prompt")


def validate_fields(fields: Mapping[str, Any]) -> None:
    """
    Validate snake_case generate fields; raise :class:`KontextValidationError` naming the first bad one.

    Exposed separately so an operator can check static arguments at DAG-parse time, before
    templates are rendered, using exactly the rules the request model uses.
    """
    prompt = fields.get("prompt")
    if not isinstance(prompt, str):
        raise KontextValidationError(f"prompt must be a string, got {type(prompt).__name__}.", field="prompt")
    if not prompt.strip():
        raise KontextValidationError("prompt must not be empty or only whitespace.", field="prompt")

    for name in ("enable_translation", "upload_cn", "prompt_upsampling"):
        _check_optional_type(fields, name, bool, "a boolean")
    for name in ("input_image", "callback_url", "watermark"):
        _check_optional_type(fields, name, str, "a string")

    _check_choice(fields, "aspect_ratio", ASPECT_RATIOS)
    _check_choice(fields, "output_format", OUTPUT_FORMATS)
    _check_choice(fields, "model", MODELS)

    for name in ("input_image", "callback_url"):
        if fields.get(name) is not None:
            check_http_url(fields[name], field=name)

    watermark = fields.get("watermark")
    if watermark is not None and not watermark.strip():
        raise KontextValidationError("watermark must not be empty; leave it unset for none.", field="watermark")

    tolerance = fields.get("safety_tolerance")
    if tolerance is not None:
        # bool is an int subclass; True must not pass as tolerance 1.
        if isinstance(tolerance, bool) or not isinstance(tolerance, int):
            raise KontextValidationError(
                f"safety_tolerance must be an integer, got {type(tolerance).__name__}.",
                field="safety_tolerance",
            )
        editing = fields.get("input_image") is not None
        upper = MAX_SAFETY_TOLERANCE_EDIT if editing else MAX_SAFETY_TOLERANCE_GENERATE
        if not 0 <= tolerance <= upper:
            mode = "editing (input_image set)" if editing else "generating"
            raise KontextValidationError(
                f"safety_tolerance must be between 0 and {upper} when {mode}, got {tolerance}.",
                field="safety_tolerance",
            )


def check_http_url(value: Any, *, field: str) -> str:
    """Return ``value`` if it is an absolute http(s) URL with a host, else raise naming ``field``."""
    if not isinstance(value, str):
        raise KontextValidationError(f"{field} must be a URL string, got {type(value).__name__}.", field=field)
    try:
        parts = urlsplit(value)
    except ValueError as err:
        raise KontextValidationError(f"{field} is not a valid URL: {err}.", field=field) from None
    if parts.scheme not in ("http", "https") or not parts.netloc or any(c.isspace() for c in value):
        raise KontextValidationError(f"{field} must be an absolute http(s) URL, got {value!r}.", field=field)
    return value


def _check_optional_type(fields: Mapping[str, Any], name: str, kind: type, words: str) -> None:
    value = fields.get(name)
    if value is not None and not isinstance(value, kind):
        raise KontextValidationError(f"{name} must be {words}, got {type(value).__name__}.", field=name)


def _check_choice(fields: Mapping[str, Any], name: str, choices: tuple[str, ...]) -> None:
    value = fields.get(name)
    if value is not None and value not in choices:
        raise KontextValidationError(f"{name} must be one of {', '.join(choices)}; got {value!r}.", field=name)
