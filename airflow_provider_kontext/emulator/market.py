"""kie's Market jobs API as the emulator sees it: the models it knows, what it refuses, what it bills.

This is the emulator's *own* table, written from the Market reference (§4 schemas, §5 prices) and
deliberately independent of the client's catalog (``airflow_provider_kontext._protocol.catalog``):
a test that runs the client against the emulator can only catch the two disagreeing if they do
not share a source. It is compact on purpose: required fields, enums, URL fields, image counts and
prices, i.e. what kie refuses or bills on. Other fields pass unchecked, as kie ignores fields it
does not know. Where the docs contradict each other the table accepts what kie may accept.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from airflow_provider_kontext.emulator.validation import Rejection, is_http_url

__all__ = [
    "MODELS",
    "UNKNOWN_MODEL_MSG",
    "Count",
    "Field",
    "MarketModel",
    "MarketOrder",
    "Price",
    "validate_market",
]

#: What kie answered live for an unknown or unpublished ``model`` (body code 422).
UNKNOWN_MODEL_MSG = "The page does not exist or is not published"

FieldKind = Literal["text", "enum", "url", "urls", "bool", "count"]
#: A rule kie checks only after accepting the task: the reason the task will fail, or None.
LateRule = Callable[[Mapping[str, Any]], str | None]


@dataclass(frozen=True)
class Field:
    """
    One checked field of a model's ``input``.

    ``low``/``high`` bound a text's length or a count's value, ``high`` a URL list's length. A ``count``
    is an int or its decimal string (kie types ``num_images`` as ``"1"``-``"4"``, ``n`` as an int).
    """

    kind: FieldKind
    required: bool = False
    choices: tuple[str, ...] = ()
    low: int | None = None
    high: int | None = None


@dataclass(frozen=True)
class Price:
    """
    Credits per output image: flat ``credits``, or ``table[input[by]]`` (``default`` when absent).

    ``per_task`` marks a price kie charges per task whatever the image count (Grok Imagine).
    """

    credits: float = 0.0
    by: str | None = None
    table: Mapping[object, float] = field(default_factory=dict)
    default: object = None
    per_task: bool = False

    def per_unit(self, values: Mapping[str, Any]) -> float:
        """The per-image (or per-task) price for this input; enums are checked before this runs."""
        if self.by is None:
            return self.credits
        key = values.get(self.by, self.default)
        return self.table.get(key, max(self.table.values()))


@dataclass(frozen=True)
class Count:
    """
    How many images a task returns: ``fixed``, else the value of input field ``by`` (``default`` when absent).

    ``when`` is ``(bool field, max, default)`` replacing the range top and the default while that
    input is true (Wan's ``enable_sequential``: ``n`` 1-12, default 12, instead of 1-4, default 4).
    """

    by: str | None = None
    default: int = 1
    fixed: int | None = None
    when: tuple[str, int, int] | None = None


@dataclass(frozen=True)
class MarketModel:
    """One Market model: checked ``input`` fields, price, image count and the output format default."""

    slug: str
    fields: Mapping[str, Field]
    price: Price
    count: Count = Count()
    #: Format of the results when the input sends no ``output_format``.
    default_format: str = "jpeg"
    late_rule: LateRule | None = None


@dataclass(frozen=True)
class MarketOrder:
    """An accepted createTask body, reduced to what the emulator needs to run and bill the task."""

    model: str
    #: The whole create body as received: recordInfo's ``param`` is its JSON string.
    body: dict[str, Any]
    #: ``input.prompt`` ("" for models without one); prompt markers are read from it.
    prompt: str
    #: Caption drawn on the rendered images: the prompt, else the model and its input URL.
    caption: str
    images: int
    #: Credits for the whole task (per-image price times ``images`` unless priced per task).
    price: float
    #: ``"W:H"`` the images are rendered at.
    aspect_ratio: str
    output_format: str
    callback_url: str | None
    #: Why kie will accept the task and then fail it (gpt-image-2's ratio/resolution rules).
    late_failure: str | None = None


# --------------------------------------------------------------------------------- field builders


def _prompt(high: int | None, low: int = 1, *, required: bool = True) -> Field:
    return Field("text", required, low=low, high=high)


def _enum(*choices: str, required: bool = False) -> Field:
    return Field("enum", required, choices=choices)


def _urls(high: int, *, required: bool = False) -> Field:
    return Field("urls", required, high=high)


def _url() -> Field:
    return Field("url", True)


def _flag() -> Field:
    return Field("bool")


def _count(low: int, high: int) -> Field:
    return Field("count", low=low, high=high)


_FAL_SIZES = ("square", "square_hd", "portrait_4_3", "portrait_16_9", "landscape_4_3", "landscape_16_9")
_SEEDREAM_V4_SIZES = (*_FAL_SIZES, "portrait_3_2", "landscape_3_2", "landscape_21_9")
#: fal-style ``image_size`` names as the ratio the emulator renders them at.
_SIZE_RATIOS = {
    "square": "1:1",
    "square_hd": "1:1",
    "portrait_4_3": "3:4",
    "portrait_16_9": "9:16",
    "portrait_3_2": "2:3",
    "landscape_4_3": "4:3",
    "landscape_16_9": "16:9",
    "landscape_3_2": "3:2",
    "landscape_21_9": "21:9",
}
_RATIO = re.compile(r"([1-9]\d{0,2}):([1-9]\d{0,2})")
_NANO_RATIOS = ("1:1", "9:16", "16:9", "3:4", "4:3", "3:2", "2:3", "5:4", "4:5", "21:9", "auto")
_NANO_2_RATIOS = (
    *("auto", "1:1", "1:4", "1:8", "2:3", "3:2", "3:4", "4:1"),
    *("4:3", "4:5", "5:4", "8:1", "9:16", "16:9", "21:9"),
)
_FLUX2_RATIOS = ("1:1", "4:3", "3:4", "16:9", "9:16", "3:2", "2:3")
_SEEDREAM_RATIOS = ("1:1", "4:3", "3:4", "16:9", "9:16", "2:3", "3:2", "21:9")
_GPT_2_RATIOS = (
    *("auto", "1:1", "3:2", "2:3", "4:3", "3:4", "5:4", "4:5"),
    *("16:9", "9:16", "2:1", "1:2", "3:1", "1:3", "21:9", "9:21"),
)
_IMAGEN_RATIOS = ("1:1", "16:9", "9:16", "3:4", "4:3", "auto")
_RES_1K_2K = ("1K", "2K")
_RES_1K_4K = ("1K", "2K", "4K")
_IDEOGRAM_STYLES = ("AUTO", "GENERAL", "REALISTIC", "DESIGN")
_IDEOGRAM_PRICE = Price(
    by="rendering_speed", table={"TURBO": 3.5, "BALANCED": 7.0, "QUALITY": 10.0}, default="BALANCED"
)


def _gpt_image_2_rule(values: Mapping[str, Any]) -> str | None:
    """gpt-image-2's documented ratio/resolution limits: kie accepts such a task, then fails it."""
    ratio = values.get("aspect_ratio") or "auto"
    resolution = values.get("resolution") or "1K"
    if ratio == "auto" and resolution != "1K":
        return f"resolution {resolution} needs an explicit aspect_ratio: auto supports 1K only"
    if resolution != "1K" and ratio in ("5:4", "4:5", "3:1", "1:3", "9:21"):
        return f"aspect_ratio {ratio} supports resolution 1K only"
    if resolution == "4K" and ratio == "1:1":
        return "aspect_ratio 1:1 does not support resolution 4K"
    return None


def _model(
    slug: str,
    price: Price,
    *groups: Mapping[str, Field],
    count: Count = Count(),
    default_format: str = "jpeg",
    late_rule: LateRule | None = None,
    **fields: Field,
) -> MarketModel:
    """A table row: ``groups`` are field sets shared by a model family, ``fields`` the model's own."""
    merged: dict[str, Field] = {}
    for group in groups:
        merged.update(group)
    merged.update(fields)
    return MarketModel(slug, merged, price, count, default_format, late_rule)


def _flux2(slug: str, price: Price, *, edit: bool) -> MarketModel:
    extra: dict[str, Field] = {"input_urls": _urls(8, required=True)} if edit else {}
    # The doc enums disagree on ``auto``: listed for image-to-image and on one flex T2I page.
    ratios = (*_FLUX2_RATIOS, "auto") if edit or "flex" in slug else _FLUX2_RATIOS
    return _model(
        slug,
        price,
        extra,
        prompt=_prompt(5000, 3),
        aspect_ratio=_enum(*ratios, required=True),
        resolution=_enum(*_RES_1K_2K, required=True),
        nsfw_checker=_flag(),
    )


_FLUX2_PRO = Price(by="resolution", table={"1K": 5.0, "2K": 7.0}, default="1K")
_FLUX2_FLEX = Price(by="resolution", table={"1K": 14.0, "2K": 24.0}, default="1K")
_GPT_2_PRICE = Price(by="resolution", table={"1K": 6.0, "2K": 10.0, "4K": 16.0}, default="1K")
_GPT_15_PRICE = Price(by="quality", table={"medium": 4.0, "high": 22.0}, default="medium")
_SEEDREAM_V4: dict[str, Field] = {
    "prompt": _prompt(5000),
    "image_size": _enum(*_SEEDREAM_V4_SIZES),
    "image_resolution": _enum(*_RES_1K_4K),
    "max_images": _count(1, 6),
    "nsfw_checker": _flag(),
}
_SEEDREAM_45: dict[str, Field] = {
    "prompt": _prompt(3000),
    "aspect_ratio": _enum(*_SEEDREAM_RATIOS, required=True),
    "quality": _enum("basic", "high", required=True),
    "nsfw_checker": _flag(),
}
_IMAGEN: dict[str, Field] = {"prompt": _prompt(5000), "negative_prompt": _prompt(5000, required=False)}

_TABLE: tuple[MarketModel, ...] = (
    # Google
    _model(
        "google/nano-banana",
        Price(4.0),
        default_format="png",
        prompt=_prompt(5000),
        output_format=_enum("png", "jpeg"),
        aspect_ratio=_enum(*_NANO_RATIOS),
        image_size=_enum(*_NANO_RATIOS),
    ),
    _model(
        "google/nano-banana-edit",
        Price(4.0),
        default_format="png",
        prompt=_prompt(5000),
        image_urls=_urls(10, required=True),
        output_format=_enum("png", "jpeg"),
        aspect_ratio=_enum(*_NANO_RATIOS),
        image_size=_enum(*_NANO_RATIOS),
    ),
    _model(
        "nano-banana-pro",
        Price(by="resolution", table={"1K": 18.0, "2K": 18.0, "4K": 24.0}, default="1K"),
        default_format="png",
        prompt=_prompt(20000),  # the docs say 10000, the kie.ai page copy 20000: accept the larger
        image_input=_urls(8),
        aspect_ratio=_enum(*_NANO_RATIOS),
        resolution=_enum(*_RES_1K_4K),
        output_format=_enum("png", "jpg"),
    ),
    _model(
        "nano-banana-2",
        Price(by="resolution", table={"1K": 8.0, "2K": 12.0, "4K": 18.0}, default="1K"),
        prompt=_prompt(20000),
        image_input=_urls(14),
        aspect_ratio=_enum(*_NANO_2_RATIOS),
        resolution=_enum(*_RES_1K_4K),
        output_format=_enum("jpg", "png"),
    ),
    _model("google/imagen4", Price(8.0), _IMAGEN, aspect_ratio=_enum(*_IMAGEN_RATIOS)),
    _model("google/imagen4-fast", Price(4.0, per_task=True), _IMAGEN, aspect_ratio=_enum(*_IMAGEN_RATIOS)),
    _model("google/imagen4-ultra", Price(12.0), _IMAGEN, aspect_ratio=_enum(*_IMAGEN_RATIOS)),
    # FLUX.2
    _flux2("flux-2/pro-text-to-image", _FLUX2_PRO, edit=False),
    _flux2("flux-2/pro-image-to-image", _FLUX2_PRO, edit=True),
    _flux2("flux-2/flex-text-to-image", _FLUX2_FLEX, edit=False),
    _flux2("flux-2/flex-image-to-image", _FLUX2_FLEX, edit=True),
    # ByteDance Seedream (4.0 is not in the 2026 pricing feed: older third-party lists say 5)
    _model("bytedance/seedream-v4-text-to-image", Price(5.0), _SEEDREAM_V4, count=Count("max_images")),
    _model(
        "bytedance/seedream-v4-edit",
        Price(5.0),
        _SEEDREAM_V4,
        count=Count("max_images"),
        image_urls=_urls(10, required=True),
    ),
    _model("seedream/4.5-text-to-image", Price(6.5), _SEEDREAM_45),
    _model("seedream/4.5-edit", Price(6.5), _SEEDREAM_45, image_urls=_urls(14, required=True)),
    # OpenAI GPT Image
    _model(
        "gpt-image/1.5-text-to-image",
        _GPT_15_PRICE,
        prompt=_prompt(None),
        aspect_ratio=_enum("1:1", "2:3", "3:2", required=True),
        quality=_enum("medium", "high", required=True),
    ),
    _model(
        "gpt-image/1.5-image-to-image",
        _GPT_15_PRICE,
        prompt=_prompt(None),
        input_urls=_urls(16, required=True),
        aspect_ratio=_enum("1:1", "2:3", "3:2", required=True),
        quality=_enum("medium", "high", required=True),
    ),
    _model(
        "gpt-image-2-text-to-image",
        _GPT_2_PRICE,
        late_rule=_gpt_image_2_rule,
        prompt=_prompt(20000),
        aspect_ratio=_enum(*_GPT_2_RATIOS),
        resolution=_enum(*_RES_1K_4K),
    ),
    _model(
        "gpt-image-2-image-to-image",
        _GPT_2_PRICE,
        late_rule=_gpt_image_2_rule,
        prompt=_prompt(20000),
        input_urls=_urls(16, required=True),
        aspect_ratio=_enum(*_GPT_2_RATIOS),
        resolution=_enum(*_RES_1K_4K),
    ),
    # Qwen: priced per megapixel; the emulator bills its ~1 MP default size per image
    _model(
        "qwen/image-edit",
        Price(5.0),
        count=Count("num_images"),
        default_format="png",
        prompt=_prompt(2000),
        image_url=_url(),
        image_size=_enum(*_FAL_SIZES),
        num_images=_count(1, 4),
        output_format=_enum("png", "jpeg"),
        acceleration=_enum("none", "regular", "high"),
        enable_safety_checker=_flag(),
        sync_mode=_flag(),
    ),
    # Ideogram
    _model(
        "ideogram/v3-text-to-image",
        _IDEOGRAM_PRICE,
        prompt=_prompt(5000),
        rendering_speed=_enum("TURBO", "BALANCED", "QUALITY"),
        style=_enum(*_IDEOGRAM_STYLES),
        image_size=_enum(*_FAL_SIZES),
        expand_prompt=_flag(),
    ),
    _model(
        "ideogram/v3-remix",
        _IDEOGRAM_PRICE,
        count=Count("num_images"),
        prompt=_prompt(None),
        image_url=_url(),
        rendering_speed=_enum("TURBO", "BALANCED", "QUALITY"),
        style=_enum(*_IDEOGRAM_STYLES),
        image_size=_enum(*_FAL_SIZES),
        num_images=_count(1, 4),
        expand_prompt=_flag(),
    ),
    # Others
    _model(
        "wan/2-7-image",
        Price(4.8),
        count=Count("n", default=4, when=("enable_sequential", 12, 12)),
        prompt=_prompt(5000),
        input_urls=_urls(9),
        aspect_ratio=_enum("1:1", "16:9", "4:3", "21:9", "3:4", "9:16", "8:1", "1:8"),
        enable_sequential=_flag(),
        n=_count(1, 4),
        resolution=_enum(*_RES_1K_2K),
    ),
    _model(
        "z-image",
        Price(0.8),
        prompt=_prompt(1000),
        aspect_ratio=_enum("1:1", "4:3", "3:4", "16:9", "9:16", required=True),
        nsfw_checker=_flag(),
    ),
    _model(
        "grok-imagine/text-to-image",
        # "4 per generation (quality mode 5)"; the credit feed prices a generation of 2 images.
        Price(by="enable_pro", table={False: 4.0, True: 5.0}, default=False, per_task=True),
        count=Count(fixed=2),
        prompt=_prompt(5000),
        aspect_ratio=_enum("2:3", "3:2", "1:1", "16:9", "9:16"),
        enable_pro=_flag(),
        nsfw_checker=_flag(),
    ),
    _model(
        "topaz/image-upscale",
        # ≤2K output 10, 4K 20, 8K 40: the emulator cannot know the input size, so the factor decides.
        Price(by="upscale_factor", table={"1": 10.0, "2": 10.0, "4": 20.0, "8": 40.0}, default="2"),
        image_url=_url(),
        upscale_factor=_enum("1", "2", "4", "8", required=True),
    ),
    _model("recraft/crisp-upscale", Price(0.5), image=_url()),
    _model("recraft/remove-background", Price(1.0), default_format="png", image=_url()),
)

#: Every model the emulator knows, by ``model`` slug.
MODELS: Mapping[str, MarketModel] = {model.slug: model for model in _TABLE}


# --------------------------------------------------------------------------------- validation


def validate_market(body: Mapping[str, Any], *, refusal_code: int = 422) -> MarketOrder | Rejection:
    """
    The order for a createTask body, or kie's refusal.

    Unknown models and malformed bodies are always 422; a missing required field or a value
    outside a field's options answers ``refusal_code``, because kie-mcp reports kie sometimes
    answering those with 500 (``market_validation_code`` in the config).
    """
    model_slug = body.get("model")
    if not isinstance(model_slug, str) or not model_slug:
        return Rejection(422, "model is required")
    model = MODELS.get(model_slug)
    if model is None:
        return Rejection(422, UNKNOWN_MODEL_MSG)
    callback = body.get("callBackUrl")
    if callback in (None, ""):
        callback = None
    elif not is_http_url(callback):
        return Rejection(422, "callBackUrl must be a valid http(s) URL")
    values = body.get("input")
    if values is None:
        values = {}
    if not isinstance(values, dict):
        return Rejection(422, "input must be an object")
    for name, spec in model.fields.items():
        problem = _check(name, spec, values.get(name), refusal_code)
        if problem is not None:
            return problem
    images = _image_count(model, values, refusal_code)
    if isinstance(images, Rejection):
        return images
    unit = model.price.per_unit(values)
    raw_prompt = values.get("prompt")
    prompt = raw_prompt if isinstance(raw_prompt, str) else ""
    return MarketOrder(
        model=model_slug,
        body=dict(body),
        prompt=prompt,
        caption=prompt or " ".join([model_slug, *_input_urls(model, values)[:1]]),
        images=images,
        price=round(unit if model.price.per_task else unit * images, 6),
        aspect_ratio=_render_ratio(values),
        output_format="png" if values.get("output_format", model.default_format) == "png" else "jpeg",
        callback_url=callback,
        late_failure=model.late_rule(values) if model.late_rule is not None else None,
    )


def _check(name: str, spec: Field, value: Any, refusal_code: int) -> Rejection | None:
    """kie's answer to one field's value, or None when it passes."""
    missing = value is None or (spec.kind in ("text", "url") and isinstance(value, str) and not value.strip())
    missing = missing or (spec.kind == "urls" and value == [] and spec.required)
    if missing:
        return Rejection(refusal_code, f"input.{name} is required") if spec.required else None
    if spec.kind == "text":
        if not isinstance(value, str):
            return Rejection(422, f"input.{name} must be a string")
        if spec.high is not None and len(value) > spec.high:
            return Rejection(422, f"input.{name} must be at most {spec.high} characters long")
        if spec.low is not None and len(value) < spec.low:
            return Rejection(422, f"input.{name} must be at least {spec.low} characters long")
    elif spec.kind == "enum":
        if not isinstance(value, str) or value not in spec.choices:
            return Rejection(refusal_code, f"{name} is not within the range of allowed options")
    elif spec.kind == "url":
        if not is_http_url(value):
            return Rejection(422, f"input.{name} must be a file URL (http or https)")
    elif spec.kind == "urls":
        if not isinstance(value, list) or not all(is_http_url(item) for item in value):
            return Rejection(422, f"input.{name} must be a list of file URLs (http or https)")
        if spec.high is not None and len(value) > spec.high:
            return Rejection(422, f"input.{name} accepts at most {spec.high} files")
    elif spec.kind == "bool":
        if not isinstance(value, bool):
            return Rejection(422, f"input.{name} must be a boolean")
    elif _as_count(value) is None:  # count
        return Rejection(422, f"input.{name} must be an integer")
    return None


def _as_count(value: Any) -> int | None:
    """An int, or the decimal string kie's schema types some counts as; None otherwise."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.isascii() and value.isdigit():
        return int(value)
    return None


def _image_count(model: MarketModel, values: Mapping[str, Any], refusal_code: int) -> int | Rejection:
    """How many images the task returns, with the count field's range checked (it may depend on a flag)."""
    count = model.count
    if count.fixed is not None:
        return count.fixed
    if count.by is None:
        return count.default
    spec = model.fields[count.by]
    low, high, default = spec.low or 1, spec.high or count.default, count.default
    if count.when is not None and values.get(count.when[0]) is True:
        high, default = count.when[1], count.when[2]
    raw = values.get(count.by)
    if raw is None:
        return default
    number = _as_count(raw)
    if number is None or not low <= number <= high:
        return Rejection(refusal_code, f"{count.by} is not within the range of allowed options")
    return number


def _input_urls(model: MarketModel, values: Mapping[str, Any]) -> list[str]:
    """The input image URLs of a request, in field order (for captions)."""
    urls: list[str] = []
    for name, spec in model.fields.items():
        value = values.get(name)
        if spec.kind == "url" and isinstance(value, str):
            urls.append(value)
        elif spec.kind == "urls" and isinstance(value, list):
            urls.extend(str(item) for item in value)
    return urls


def _render_ratio(values: Mapping[str, Any]) -> str:
    """The ``"W:H"`` to render at: ``aspect_ratio``, else a fal-style ``image_size``, else square."""
    for name in ("aspect_ratio", "image_size"):
        value = values.get(name)
        if isinstance(value, str):
            if value in _SIZE_RATIOS:
                return _SIZE_RATIOS[value]
            if _RATIO.fullmatch(value):
                return value
    return "1:1"
