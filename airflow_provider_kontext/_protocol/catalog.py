"""kie's Market image models as data: one catalog that validates, counts and prices a task's ``input``.

The Market jobs API takes one body for every model, ``{"model": slug, "input": {...}}``, and each
model's ``input`` has a schema of its own. kie ignores fields it does not know, so a typo
(``image_url`` for ``image_urls``) turns a paid edit into a paid text-to-image, and some bad values
only fail after the task is queued. Every check here runs before any request: nothing sent,
nothing paid.

Each model is one :class:`ModelSpec` row. Validation, the image count and the price estimate all
read that row, so a schema or price change is one edit. Rows say where their schema comes from:
the official docs, or third-party notes only. Where sources disagree, a row accepts what kie may
accept and says so in a comment; what is sent stays strict (known fields, the types kie wants).
"""

from __future__ import annotations

import difflib
import math
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal

from airflow_provider_kontext._protocol.request import check_http_url
from airflow_provider_kontext.exceptions import KontextCostLimitError, KontextUnknownModelError, KontextValidationError

#: What a field holds. ``float`` is any JSON number; ``url`` and ``url_list`` hold image URLs;
#: ``list`` is a JSON array, of objects with exactly ``item_keys`` when those are given.
FieldKind = Literal["string", "int", "float", "bool", "enum", "url", "url_list", "list"]
#: Where a row's schema comes from: docs.kie.ai (or a verbatim copy) or third-party notes only.
SchemaSource = Literal["doc", "third-party"]
JsonScalar = str | int | float | bool | None
#: A cross-field rule: given a model's normalized input, ``(field, problem)`` or None when it holds.
Rule = Callable[[Mapping[str, Any]], tuple[str, str] | None]

#: The day the prices below were read from kie's public pricing feed. Prices change; estimates age.
PRICES_AS_OF: Final = "2026-09-24"


@dataclass(frozen=True)
class FieldSpec:
    """
    One field of a model's ``input``, as kie's schema describes it.

    ``default`` is kie's own default and is never sent: the catalog reads it only to count and
    price a task whose input leaves the field out. ``as_string`` marks a number kie's schema
    types as a string (``num_images`` ``"1"``-``"4"``): an int is accepted and sent as its
    decimal string, so callers need not know which models want which.
    """

    name: str
    kind: FieldKind
    required: bool = False
    default: JsonScalar = None
    choices: tuple[str, ...] = ()
    minimum: float | None = None
    maximum: float | None = None
    min_length: int | None = None
    max_length: int | None = None
    min_items: int | None = None
    max_items: int | None = None
    item_keys: tuple[str, ...] = ()
    as_string: bool = False

    @property
    def carries_images(self) -> bool:
        """Image URL fields are the ones the provider fills by uploading local files."""
        return self.kind in ("url", "url_list")


@dataclass(frozen=True)
class ImageCount:
    """
    How many images one task returns, i.e. how many ``resultUrls`` to expect.

    Either ``fixed``, or the value of input ``field`` (the field's kie default when it is left
    out). ``default_when`` is ``(bool field, count)``: the default while that input is true.
    """

    fixed: int = 1
    field: str | None = None
    default_when: tuple[str, int] | None = None


@dataclass(frozen=True)
class Price:
    """
    Credits per output image, from the pricing feed of :data:`PRICES_AS_OF`.

    Either flat ``credits``, or a ``table`` keyed by the value of input field ``by`` (that field's
    kie default when the input leaves it out); a value missing from the table means "unknown".
    ``per_task`` marks a price kie charges per task whatever the image count, so one image costs
    a share of it. ``per_extra_input`` is ``(url_list field, credits)`` added for each input
    image after the first.
    """

    credits: float | None = None
    by: str | None = None
    table: Mapping[JsonScalar, float] | None = None
    per_task: bool = False
    per_extra_input: tuple[str, float] | None = None


@dataclass(frozen=True)
class ModelSpec:
    """One Market image model: its ``model`` slug, its ``input`` schema, image count and price."""

    slug: str
    fields: tuple[FieldSpec, ...]
    price: Price | None
    images: ImageCount = ImageCount()
    rules: tuple[Rule, ...] = ()
    source: SchemaSource = "doc"
    note: str = ""

    @property
    def confirmed(self) -> bool:
        """Whether the schema is kie's documented one rather than third-party notes."""
        return self.source == "doc"

    def field_spec(self, name: str) -> FieldSpec:
        """The spec of input field ``name``; KeyError when the model has no such field."""
        for spec in self.fields:
            if spec.name == name:
                return spec
        raise KeyError(name)

    def expected_images(self, input: Mapping[str, Any]) -> int:
        """The image count of a task with this (validated) input."""
        count = self.images
        if count.field is None:
            return count.fixed
        if count.field in input:
            return int(input[count.field])
        if count.default_when is not None and input.get(count.default_when[0]) is True:
            return count.default_when[1]
        default = self.field_spec(count.field).default
        return int(default) if isinstance(default, int | str) else count.fixed

    def price_per_image(self, input: Mapping[str, Any]) -> float | None:
        """Credits one output image of this (validated) input costs; None when kie's price is unknown."""
        price = self.price
        if price is None:
            return None
        if price.by is None or price.table is None:
            credits = price.credits
        else:
            credits = price.table.get(input.get(price.by, self.field_spec(price.by).default))
        if credits is None:
            return None
        if price.per_extra_input is not None:
            field, extra = price.per_extra_input
            credits += extra * max(0, len(input.get(field, ())) - 1)
        if price.per_task:
            credits /= self.expected_images(input)
        return round(credits, 4)


# --- Field builders: the catalog rows below read like kie's schema tables. ---


def _text(
    name: str,
    max_length: int | None = None,
    *,
    required: bool = False,
    min_length: int | None = None,
    as_string: bool = False,
) -> FieldSpec:
    return FieldSpec(
        name, "string", required=required, min_length=min_length, max_length=max_length, as_string=as_string
    )


def _prompt(max_length: int | None = None, *, min_length: int | None = None, required: bool = True) -> FieldSpec:
    return _text("prompt", max_length, required=required, min_length=min_length)


def _enum(
    name: str, choices: tuple[str, ...], *, default: str | None = None, required: bool = False, as_string: bool = False
) -> FieldSpec:
    return FieldSpec(name, "enum", required=required, default=default, choices=choices, as_string=as_string)


def _flag(name: str, *, default: bool | None = None) -> FieldSpec:
    return FieldSpec(name, "bool", default=default)


def _int(
    name: str,
    minimum: int | None = None,
    maximum: int | None = None,
    *,
    default: int | None = None,
    as_string: bool = False,
) -> FieldSpec:
    return FieldSpec(name, "int", default=default, minimum=minimum, maximum=maximum, as_string=as_string)


def _number(name: str, minimum: float, maximum: float, *, default: float | None = None) -> FieldSpec:
    return FieldSpec(name, "float", default=default, minimum=minimum, maximum=maximum)


def _url(name: str, *, required: bool = False) -> FieldSpec:
    return FieldSpec(name, "url", required=required)


def _urls(
    name: str, max_items: int | None = None, *, required: bool = False, min_items: int | None = None
) -> FieldSpec:
    return FieldSpec(name, "url_list", required=required, min_items=min_items, max_items=max_items)


# --- Enumerations shared by several models, as kie lists them. ---

_PNG_JPEG: Final = ("png", "jpeg")
_PNG_JPG: Final = ("png", "jpg")
_RES_1K_2K: Final = ("1K", "2K")
_RES_1K_2K_4K: Final = ("1K", "2K", "4K")
_NANO_BANANA_RATIOS: Final = ("1:1", "9:16", "16:9", "3:4", "4:3", "3:2", "2:3", "5:4", "4:5", "21:9", "auto")
_NANO_BANANA_PRO_RATIOS: Final = ("1:1", "2:3", "3:2", "3:4", "4:3", "4:5", "5:4", "9:16", "16:9", "21:9", "auto")
_NANO_BANANA_2_RATIOS: Final = (
    "auto", "1:1", "1:4", "1:8", "2:3", "3:2", "3:4", "4:1", "4:3", "4:5", "5:4", "8:1", "9:16", "16:9", "21:9",
)  # fmt: skip
_IMAGEN_RATIOS: Final = ("1:1", "16:9", "9:16", "3:4", "4:3", "auto")
_FLUX_2_RATIOS: Final = ("1:1", "4:3", "3:4", "16:9", "9:16", "3:2", "2:3")
#: The fal-style size presets (kie copies fal's schemas for Seedream 3, Qwen and Ideogram).
_FAL_SIZES: Final = ("square", "square_hd", "portrait_4_3", "portrait_16_9", "landscape_4_3", "landscape_16_9")
_SEEDREAM_V4_SIZES: Final = (*_FAL_SIZES, "portrait_3_2", "landscape_3_2", "landscape_21_9")
_SEEDREAM_RATIOS: Final = ("1:1", "4:3", "3:4", "16:9", "9:16", "2:3", "3:2", "21:9")
_GPT_IMAGE_2_RATIOS: Final = (
    "auto", "1:1", "3:2", "2:3", "4:3", "3:4", "5:4", "4:5", "16:9", "9:16", "2:1", "1:2", "3:1", "1:3", "21:9", "9:21",
)  # fmt: skip
_IDEOGRAM_SPEEDS: Final = ("TURBO", "BALANCED", "QUALITY")
_IDEOGRAM_STYLES: Final = ("AUTO", "GENERAL", "REALISTIC", "DESIGN")
_CHARACTER_STYLES: Final = ("AUTO", "REALISTIC", "FICTION")
_WAN_RATIOS: Final = ("1:1", "16:9", "4:3", "21:9", "3:4", "9:16", "8:1", "1:8")

_NSFW_CHECKER: Final = _flag("nsfw_checker", default=False)
_NUM_IMAGES: Final = _int("num_images", 1, 4, default=1, as_string=True)
_COUNT_NUM_IMAGES: Final = ImageCount(field="num_images")


# --- Cross-field rules kie documents: the task fails (and costs a round trip) when they are broken. ---

#: GPT Image 2: ratios kie renders at 1K only, and its resolution when none is given.
_GPT_IMAGE_2_1K_ONLY_RATIOS: Final = frozenset({"5:4", "4:5", "3:1", "1:3", "9:21"})
_GPT_IMAGE_2_DEFAULT_RESOLUTION: Final = "1K"


def _gpt_image_2_resolution_fits_ratio(input: Mapping[str, Any]) -> tuple[str, str] | None:
    """kie fails a GPT Image 2 task whose resolution its aspect ratio cannot have."""
    resolution = input.get("resolution", _GPT_IMAGE_2_DEFAULT_RESOLUTION)
    ratio = input.get("aspect_ratio", "auto")
    if resolution == "1K":
        return None
    if ratio == "auto":
        return (
            "resolution",
            f"input.resolution {resolution} needs an explicit aspect_ratio: auto or no ratio is 1K only",
        )
    if ratio in _GPT_IMAGE_2_1K_ONLY_RATIOS:
        return "resolution", f"input.aspect_ratio {ratio} is 1K only, got input.resolution {resolution}"
    if ratio == "1:1" and resolution == "4K":
        return "resolution", "input.aspect_ratio 1:1 cannot be 4K; use input.resolution 1K or 2K"
    return None


#: Wan 2.7: images per task without and with ``enable_sequential`` (each is also the default).
WAN_MAX_IMAGES: Final = 4
WAN_SEQUENTIAL_MAX_IMAGES: Final = 12


def _wan_n_fits_mode(input: Mapping[str, Any]) -> tuple[str, str] | None:
    """Wan 2.7 makes up to 4 images, or up to 12 as one sequence."""
    n = input.get("n")
    if n is None or input.get("enable_sequential") is True or n <= WAN_MAX_IMAGES:
        return None
    return (
        "n",
        f"input.n must be 1-{WAN_MAX_IMAGES} unless enable_sequential is true (then 1-{WAN_SEQUENTIAL_MAX_IMAGES})",
    )


def _wan_4k_is_text_to_image_only(input: Mapping[str, Any]) -> tuple[str, str] | None:
    """Wan 2.7 Pro renders 4K from text only; an edit (``input_urls``) stops at 2K."""
    if input.get("resolution") == "4K" and input.get("input_urls"):
        return "resolution", "input.resolution 4K is text-to-image only; with input_urls use 1K or 2K"
    return None


# --- The rows. ---


def _nano_banana(slug: str, *, edit: bool) -> ModelSpec:
    images = (_urls("image_urls", 10, required=True),) if edit else ()
    return ModelSpec(
        slug,
        (
            _prompt(5000),
            *images,
            _enum("output_format", _PNG_JPEG, default="png"),
            _enum("aspect_ratio", _NANO_BANANA_RATIOS, default="1:1"),
            _enum("image_size", _NANO_BANANA_RATIOS, default="1:1"),  # deprecated alias of aspect_ratio
        ),
        Price(4),
    )


def _imagen4(slug: str, *, default_ratio: str, string_seed: bool, credits: float, per_task: bool = False) -> ModelSpec:
    # imagen4 and -ultra type seed as a string of up to 500 characters; imagen4-fast as an integer.
    seed = _text("seed", 500, as_string=True) if string_seed else _int("seed")
    return ModelSpec(
        slug,
        (
            _prompt(5000),
            _text("negative_prompt", 5000),
            _enum("aspect_ratio", _IMAGEN_RATIOS, default=default_ratio),
            seed,
        ),
        Price(credits, per_task=per_task),
    )


def _flux_2(slug: str, *, edit: bool, auto_ratio: bool, prices: dict[JsonScalar, float]) -> ModelSpec:
    # The doc enums disagree on `auto` (match the first input image): it is accepted wherever any
    # doc lists it (both image-to-image models and flex text-to-image), refused on pro text-to-image.
    ratios = (*_FLUX_2_RATIOS, "auto") if auto_ratio else _FLUX_2_RATIOS
    images = (_urls("input_urls", 8, required=True, min_items=1),) if edit else ()
    return ModelSpec(
        slug,
        (
            *images,
            _prompt(5000, min_length=3),
            _enum("aspect_ratio", ratios, default="1:1", required=True),
            _enum("resolution", _RES_1K_2K, default="1K", required=True),
            _NSFW_CHECKER,
        ),
        Price(by="resolution", table=prices),
    )


def _seedream_v4(slug: str, *, edit: bool) -> ModelSpec:
    # S-CAT says edit inputs may be 30 MB, the docs 10 MB: file size is kie's check, not this one.
    images = (_urls("image_urls", 10, required=True),) if edit else ()
    return ModelSpec(
        slug,
        (
            _prompt(5000),
            *images,
            _enum("image_size", _SEEDREAM_V4_SIZES, default="square_hd"),
            _enum("image_resolution", _RES_1K_2K_4K, default="1K"),
            # An upper bound: the images come from one generation, so the prompt should ask for as many.
            _int("max_images", 1, 6, default=1),
            _int("seed"),
            _NSFW_CHECKER,
        ),
        None,
        images=ImageCount(field="max_images"),
        note="Seedream 4.0 is not in the 2026 pricing feed: price unknown.",
    )


def _seedream_new(
    slug: str,
    *,
    prompt: FieldSpec,
    qualities: tuple[str, ...],
    quality_required: bool,
    output_format: bool,
    max_inputs: int | None,
    price: Price,
    source: SchemaSource = "doc",
) -> ModelSpec:
    images = (_urls("image_urls", max_inputs, required=True),) if max_inputs else ()
    formats = (_enum("output_format", _PNG_JPEG),) if output_format else ()
    return ModelSpec(
        slug,
        (
            prompt,
            *images,
            _enum("aspect_ratio", _SEEDREAM_RATIOS, default="1:1", required=True),
            _enum("quality", qualities, default="basic", required=quality_required),
            *formats,
            _NSFW_CHECKER,
        ),
        price,
        source=source,
    )


def _gpt_image_1_5(slug: str, *, edit: bool, default_ratio: str) -> ModelSpec:
    images = (_urls("input_urls", 16, required=True),) if edit else ()
    return ModelSpec(
        slug,
        (
            *images,
            _prompt(),  # kie states no maximum
            _enum("aspect_ratio", ("1:1", "2:3", "3:2"), default=default_ratio, required=True),
            _enum("quality", ("medium", "high"), default="medium", required=True),
        ),
        Price(by="quality", table={"medium": 4, "high": 22}),
    )


def _gpt_image_2(slug: str, *, edit: bool) -> ModelSpec:
    # S-CAT adds `background` (text-to-image, "1K only"); accepted, its 1K rule is third-party and not enforced.
    extra = (
        (_urls("input_urls", 16, required=True),) if edit else (_enum("background", ("transparent", "opaque", "auto")),)
    )
    return ModelSpec(
        slug,
        (
            _prompt(None if edit else 20000, min_length=1),
            *extra,
            _enum("aspect_ratio", _GPT_IMAGE_2_RATIOS, default="auto"),
            # kie gives no default; 1K is the one resolution every ratio (and a missing ratio) allows.
            _enum("resolution", _RES_1K_2K_4K, default=_GPT_IMAGE_2_DEFAULT_RESOLUTION),
        ),
        Price(by="resolution", table={"1K": 6, "2K": 10, "4K": 16}),
        rules=(_gpt_image_2_resolution_fits_ratio,),
    )


#: fal's pixel sizes of its presets, in megapixels: kie bills Qwen per megapixel but names only the
#: presets. Inferred from fal, and kie's rounding is unknown, so a Qwen price is an estimate.
_FAL_SIZE_MEGAPIXELS: Final[dict[JsonScalar, float]] = {
    "square": 0.26,  # 512 x 512
    "square_hd": 1.05,  # 1024 x 1024
    "portrait_4_3": 0.79,  # 768 x 1024
    "portrait_16_9": 0.59,  # 576 x 1024
    "landscape_4_3": 0.79,  # 1024 x 768
    "landscape_16_9": 0.59,  # 1024 x 576
}


def _per_megapixel(credits: float) -> Price:
    return Price(by="image_size", table={size: credits * mp for size, mp in _FAL_SIZE_MEGAPIXELS.items()})


def _qwen_common(*, default_size: str, steps: tuple[int, int], guidance: float) -> tuple[FieldSpec, ...]:
    """The fields the three Qwen models share; ``steps`` is (maximum, default) inference steps."""
    return (
        _enum("image_size", _FAL_SIZES, default=default_size),
        _int("num_inference_steps", 2, steps[0], default=steps[1]),
        _number("guidance_scale", 0, 20, default=guidance),
        _int("seed"),
        _flag("enable_safety_checker"),
        _enum("output_format", _PNG_JPEG, default="png"),
        _text("negative_prompt", 500),
        _enum("acceleration", ("none", "regular", "high"), default="none"),
    )


def _qwen2(slug: str, *, sizes: tuple[str, ...], edit: bool) -> ModelSpec:
    images = (_url("image_url", required=True),) if edit else ()
    return ModelSpec(
        slug,
        (
            _prompt(800),
            *images,
            _enum("image_size", sizes, default="16:9"),
            _int("seed"),
            _enum("output_format", _PNG_JPEG),
        ),
        Price(5.6),
    )


#: Ideogram v3 prices by rendering speed. kie documents BALANCED as the default of v3-edit only;
#: the other Ideogram rows assume the same default for their estimates.
_IDEOGRAM_V3_PRICE: Final = Price(by="rendering_speed", table={"TURBO": 3.5, "BALANCED": 7, "QUALITY": 10})
_CHARACTER_PRICE: Final = Price(by="rendering_speed", table={"TURBO": 12, "BALANCED": 18, "QUALITY": 24})
_RENDERING_SPEED: Final = _enum("rendering_speed", _IDEOGRAM_SPEEDS, default="BALANCED")


def _wan(slug: str, *, resolutions: tuple[str, ...], credits: float, rules: tuple[Rule, ...] = ()) -> ModelSpec:
    return ModelSpec(
        slug,
        (
            _prompt(5000),
            _urls("input_urls", 9),  # optional: with input images the task is an edit
            _enum("aspect_ratio", _WAN_RATIOS),
            _flag("enable_sequential", default=False),
            # The widest range; _wan_n_fits_mode narrows it to 1-4 outside sequential mode.
            _int("n", 1, WAN_SEQUENTIAL_MAX_IMAGES, default=WAN_MAX_IMAGES),
            _enum("resolution", resolutions, default="2K"),
            _flag("thinking_mode"),
            FieldSpec("color_palette", "list", min_items=3, max_items=10, item_keys=("hex", "ratio")),
            FieldSpec("bbox_list", "list"),
            _flag("watermark"),  # a boolean, as in Wan's own API
            _int("seed", 0, 2147483647),
            _NSFW_CHECKER,
        ),
        Price(credits),
        images=ImageCount(field="n", default_when=("enable_sequential", WAN_SEQUENTIAL_MAX_IMAGES)),
        rules=(_wan_n_fits_mode, *rules),
    )


_MODELS: Final[tuple[ModelSpec, ...]] = (
    # --- Google ---
    _nano_banana("google/nano-banana", edit=False),
    _nano_banana("google/nano-banana-edit", edit=True),
    ModelSpec(
        "nano-banana-pro",
        (
            # The docs say 10000 characters, kie's model page 20000: the larger is accepted.
            _prompt(20000),
            _urls("image_input", 8),  # optional: text-to-image and image-to-image share this model
            _enum("aspect_ratio", _NANO_BANANA_PRO_RATIOS, default="1:1"),
            _enum("resolution", _RES_1K_2K_4K, default="1K"),
            _enum("output_format", _PNG_JPG, default="png"),
        ),
        Price(by="resolution", table={"1K": 18, "2K": 18, "4K": 24}),
    ),
    ModelSpec(
        "nano-banana-2",
        (
            _prompt(20000),
            _urls("image_input", 14),
            _enum("aspect_ratio", _NANO_BANANA_2_RATIOS, default="auto"),
            _enum("resolution", _RES_1K_2K_4K, default="1K"),
            _enum("output_format", ("jpg", "png"), default="jpg"),
        ),
        Price(by="resolution", table={"1K": 8, "2K": 12, "4K": 18}),
    ),
    ModelSpec(
        "nano-banana-2-lite",
        (
            # Listed without a marker or a maximum; required, as every other generation model's prompt.
            _prompt(),
            _urls("image_urls", 10),
            _enum("aspect_ratio", _NANO_BANANA_2_RATIOS, default="auto", required=True),
        ),
        Price(4),
        source="third-party",
        note="Schema from a third-party catalog (S-CAT) only.",
    ),
    _imagen4("google/imagen4", default_ratio="1:1", string_seed=True, credits=8),
    _imagen4("google/imagen4-fast", default_ratio="16:9", string_seed=False, credits=4, per_task=True),
    _imagen4("google/imagen4-ultra", default_ratio="1:1", string_seed=True, credits=12),
    # --- FLUX.2 ---
    _flux_2("flux-2/pro-text-to-image", edit=False, auto_ratio=False, prices={"1K": 5, "2K": 7}),
    _flux_2("flux-2/pro-image-to-image", edit=True, auto_ratio=True, prices={"1K": 5, "2K": 7}),
    _flux_2("flux-2/flex-text-to-image", edit=False, auto_ratio=True, prices={"1K": 14, "2K": 24}),
    _flux_2("flux-2/flex-image-to-image", edit=True, auto_ratio=True, prices={"1K": 14, "2K": 24}),
    # --- ByteDance Seedream ---
    ModelSpec(
        "bytedance/seedream",
        (
            _prompt(5000),
            _enum("image_size", _FAL_SIZES, default="square_hd"),
            _number("guidance_scale", 1, 10, default=2.5),
            _int("seed"),
        ),
        None,
        note="Seedream 3.0 is not in the 2026 pricing feed: price unknown.",
    ),
    _seedream_v4("bytedance/seedream-v4-text-to-image", edit=False),
    _seedream_v4("bytedance/seedream-v4-edit", edit=True),
    _seedream_new(
        "seedream/4.5-text-to-image",
        prompt=_prompt(3000),
        qualities=("basic", "high"),
        quality_required=True,
        output_format=False,
        max_inputs=None,
        price=Price(6.5),
    ),
    _seedream_new(
        "seedream/4.5-edit",
        prompt=_prompt(3000),
        qualities=("basic", "high"),
        quality_required=True,
        output_format=False,
        max_inputs=14,
        price=Price(6.5),
    ),
    # 5 Lite: `ultra` quality and `output_format` are in S-CAT only; accepted.
    _seedream_new(
        "seedream/5-lite-text-to-image",
        prompt=_prompt(3000, min_length=3),
        qualities=("basic", "high", "ultra"),
        quality_required=True,
        output_format=True,
        max_inputs=None,
        price=Price(5.5),
    ),
    _seedream_new(
        "seedream/5-lite-image-to-image",
        prompt=_prompt(3000, min_length=3),
        qualities=("basic", "high", "ultra"),
        quality_required=True,
        output_format=True,
        max_inputs=14,
        price=Price(5.5),
    ),
    # 5 Pro: third-party schema; its ratios are assumed to be the other Seedream models'.
    _seedream_new(
        "seedream/5-pro-text-to-image",
        prompt=_prompt(5000, min_length=3),
        qualities=("basic", "high"),
        quality_required=False,
        output_format=True,
        max_inputs=None,
        price=Price(by="quality", table={"basic": 7, "high": 14}),
        source="third-party",
    ),
    _seedream_new(
        "seedream/5-pro-image-to-image",
        prompt=_prompt(5000, min_length=3),
        qualities=("basic", "high"),
        quality_required=False,
        output_format=True,
        max_inputs=10,
        price=Price(by="quality", table={"basic": 7, "high": 14}, per_extra_input=("image_urls", 0.5)),
        source="third-party",
    ),
    # --- OpenAI GPT Image ---
    _gpt_image_1_5("gpt-image/1.5-text-to-image", edit=False, default_ratio="1:1"),
    _gpt_image_1_5("gpt-image/1.5-image-to-image", edit=True, default_ratio="3:2"),
    _gpt_image_2("gpt-image-2-text-to-image", edit=False),
    _gpt_image_2("gpt-image-2-image-to-image", edit=True),
    # --- Qwen ---
    ModelSpec(
        "qwen/text-to-image",
        (
            _prompt(5000),
            *_qwen_common(default_size="square_hd", steps=(250, 30), guidance=2.5),
            _NSFW_CHECKER,
        ),
        _per_megapixel(4),
    ),
    ModelSpec(
        "qwen/image-to-image",
        (
            _prompt(),
            _url("image_url", required=True),
            _number("strength", 0, 1, default=0.8),
            *_qwen_common(default_size="square_hd", steps=(250, 30), guidance=2.5),
            _NSFW_CHECKER,
        ),
        _per_megapixel(4),
    ),
    ModelSpec(
        "qwen/image-edit",
        (
            _prompt(2000),
            _url("image_url", required=True),
            *_qwen_common(default_size="landscape_4_3", steps=(49, 25), guidance=4),
            _flag("sync_mode"),
            _NUM_IMAGES,
        ),
        # The feed says 5 credits per megapixel, the USD page $0.03 (6 credits): the feed's is used.
        _per_megapixel(5),
        images=_COUNT_NUM_IMAGES,
    ),
    # The qwen2/text-to-image doc's model enum says qwen2/image-edit; its example (and this slug) is right.
    _qwen2("qwen2/text-to-image", sizes=("1:1", "3:4", "4:3", "9:16", "16:9"), edit=False),
    _qwen2("qwen2/image-edit", sizes=("1:1", "2:3", "3:2", "3:4", "4:3", "9:16", "16:9", "21:9"), edit=True),
    # --- Ideogram ---
    ModelSpec(
        "ideogram/v3-text-to-image",
        (
            _prompt(5000),
            _RENDERING_SPEED,
            _enum("style", _IDEOGRAM_STYLES),
            _flag("expand_prompt"),
            _enum("image_size", _FAL_SIZES, default="square_hd"),
            _int("seed"),
            _text("negative_prompt", 5000),
        ),
        _IDEOGRAM_V3_PRICE,
    ),
    ModelSpec(
        "ideogram/v3-edit",
        (
            _prompt(),
            _url("image_url", required=True),
            _url("mask_url", required=True),  # the same dimensions as image_url
            _RENDERING_SPEED,
            _flag("expand_prompt", default=True),
            _int("seed"),
        ),
        _IDEOGRAM_V3_PRICE,
    ),
    ModelSpec(
        "ideogram/v3-remix",
        (
            _prompt(),
            _url("image_url", required=True),
            _RENDERING_SPEED,
            _enum("style", _IDEOGRAM_STYLES),
            _flag("expand_prompt"),
            _enum("image_size", _FAL_SIZES, default="square_hd"),
            _NUM_IMAGES,
            _int("seed"),
            _number("strength", 0.01, 1),
            _text("negative_prompt"),
        ),
        _IDEOGRAM_V3_PRICE,
        images=_COUNT_NUM_IMAGES,
    ),
    ModelSpec(
        "ideogram/character",
        (
            _prompt(),
            _urls("reference_image_urls", required=True),  # kie uses only the first
            _RENDERING_SPEED,
            _enum("style", _CHARACTER_STYLES),
            _flag("expand_prompt"),
            _NUM_IMAGES,
            _enum("image_size", _FAL_SIZES, default="square_hd"),
            _int("seed"),
            _text("negative_prompt"),
        ),
        _CHARACTER_PRICE,
        images=_COUNT_NUM_IMAGES,
    ),
    ModelSpec(
        "ideogram/character-edit",
        (
            _prompt(),
            _url("image_url", required=True),
            _url("mask_url", required=True),
            _urls("reference_image_urls", required=True),
            _RENDERING_SPEED,
            _enum("style", _CHARACTER_STYLES),
            _flag("expand_prompt"),
            _NUM_IMAGES,
            _int("seed"),
        ),
        _CHARACTER_PRICE,
        images=_COUNT_NUM_IMAGES,
    ),
    ModelSpec(
        "ideogram/character-remix",
        (
            _prompt(),
            _url("image_url", required=True),
            _urls("reference_image_urls", required=True),
            _number("strength", 0.1, 1, default=0.8),
            _urls("image_urls"),  # style references
            _url("reference_mask_urls"),  # one URL despite the plural name, as kie types it
            _text("negative_prompt", 500),
            _RENDERING_SPEED,
            _enum("style", _CHARACTER_STYLES),  # not listed for remix, but every character sibling has it
            _flag("expand_prompt"),
            _enum("image_size", _FAL_SIZES, default="square_hd"),
            _int("seed"),
            _NUM_IMAGES,
        ),
        _CHARACTER_PRICE,
        images=_COUNT_NUM_IMAGES,
    ),
    # --- Others ---
    ModelSpec(
        "z-image",
        (
            _prompt(1000),
            _enum("aspect_ratio", ("1:1", "4:3", "3:4", "16:9", "9:16"), default="1:1", required=True),
            _NSFW_CHECKER,
        ),
        Price(0.8),
    ),
    ModelSpec(
        "grok-imagine/text-to-image",
        (
            _prompt(5000),
            _enum("aspect_ratio", ("2:3", "3:2", "1:1", "16:9", "9:16"), default="1:1"),
            _flag("enable_pro", default=False),  # false = speed, true = quality
            _NSFW_CHECKER,
        ),
        # kie prices a generation, not an image; the estimate is that price whatever the count.
        Price(by="enable_pro", table={False: 4, True: 5}, per_task=True),
        # kie's pricing pages disagree (2 or 6 images per task): the newer feed's 2. Callers must take
        # however many resultUrls arrive.
        images=ImageCount(fixed=2),
        note="Images per task unverified.",
    ),
    ModelSpec(
        "grok-imagine/image-to-image",
        (
            # The schema allows 5 images, the text says 1: up to 5 are accepted.
            _urls("image_urls", 5, required=True),
            _prompt(390000, required=False),  # kie's own (odd) maximum; cite images as @image1
            _NSFW_CHECKER,
        ),
        Price(4),
    ),
    _wan("wan/2-7-image", resolutions=_RES_1K_2K, credits=4.8),
    _wan("wan/2-7-image-pro", resolutions=_RES_1K_2K_4K, credits=12, rules=(_wan_4k_is_text_to_image_only,)),
    ModelSpec(
        "topaz/image-upscale",
        (
            _url("image_url", required=True),
            # S-CAT lists 1, 2, 4; the docs add 8, which is accepted.
            _enum("upscale_factor", ("1", "2", "4", "8"), default="2", required=True, as_string=True),
        ),
        # kie bills by output size (up to 2K, 4K, 8K), which depends on the input's size; the factor
        # stands in for it, as if the input were about 1K.
        Price(by="upscale_factor", table={"1": 10, "2": 10, "4": 20, "8": 40}),
    ),
    ModelSpec("recraft/crisp-upscale", (_url("image", required=True),), Price(0.5)),
    ModelSpec("recraft/remove-background", (_url("image", required=True),), Price(1)),
)

#: Slug -> row, the one lookup every function here uses.
_CATALOG: Final[dict[str, ModelSpec]] = {spec.slug: spec for spec in _MODELS}

_GPT_IMAGE_2_5: Final = "third-party catalog only, described as 'like gpt-image-2' without a full schema"
_THIRD_PARTY_FAMILY: Final = "a newer family in third-party notes only; its exact slugs and schemas are unverified"

#: Market slugs kie is known to have that the catalog does not describe, with why. A key ending
#: in "/" stands for every slug under that prefix.
KNOWN_UNCATALOGUED: Final[dict[str, str]] = {
    "seedream/5-pro-layer-decomposition": "it returns image layers, not generated images; third-party schema, no price",
    "ideogram/v3-reframe": "kie has no current doc page for it; only third-party code sends it",
    "gpt-image-2-5-flare-text-to-image": _GPT_IMAGE_2_5,
    "gpt-image-2-5-flare-image-to-image": _GPT_IMAGE_2_5,
    "gpt-image-2-5-sunburst-text-to-image": _GPT_IMAGE_2_5,
    "gpt-image-2-5-sunburst-image-to-image": _GPT_IMAGE_2_5,
    "4o-image-api": "the model id kie accepts is unverified (a doc example sends custom_4o_image)",
    "flux1-kontext": "how it picks Pro or Max is unverified; the provider's Flux Kontext API covers both",
    "qwen2-1/": _THIRD_PARTY_FAMILY,
    "qwen3/": _THIRD_PARTY_FAMILY,
    "grok-imagine-image-2-0/": _THIRD_PARTY_FAMILY,
}


#: Credits per Flux Kontext image (its own API, not the Market), by ``model``; kie's default is
#: Pro. From the same pricing feed as the Market rows (its ``flux1-kontext`` row), third-party.
KONTEXT_PRICES: Final[dict[str, float]] = {"flux-kontext-pro": 5.0, "flux-kontext-max": 10.0}
KONTEXT_DEFAULT_MODEL: Final = "flux-kontext-pro"


# --- Public API ---


def kontext_price(model: str | None) -> float | None:
    """Credits of one Flux Kontext image with ``model`` (``None``: kie's default, Pro)."""
    return KONTEXT_PRICES.get(model or KONTEXT_DEFAULT_MODEL)


def check_credit_ceiling(estimates: Sequence[float | None], max_credits: float, *, models: Sequence[str]) -> float:
    """
    The catalog's price of a task's items, refused when it exceeds ``max_credits``; call before any create.

    An item whose price the catalog does not know cannot be proven to fit, so it is refused
    too: a ceiling that lets unknown prices through is no ceiling. ``models`` names each item's
    model, for the message.
    """
    unknown = [model for model, estimate in zip(models, estimates, strict=True) if estimate is None]
    if unknown:
        raise KontextCostLimitError(
            f"max_credits={max_credits:g} cannot be checked: the catalog has no price for {sorted(set(unknown))} "
            f"(prices as of {PRICES_AS_OF}); nothing was sent. Drop max_credits for these models.",
            max_credits=max_credits,
        )
    total = math.fsum(estimate for estimate in estimates if estimate is not None)
    if total > max_credits:
        raise KontextCostLimitError(
            f"The {len(estimates)} image request(s) would cost about {total:g} credits at the catalog's prices "
            f"(as of {PRICES_AS_OF}), over max_credits={max_credits:g}; nothing was sent.",
            max_credits=max_credits,
            estimated_credits=total,
        )
    return total


def catalog_models() -> tuple[str, ...]:
    """Every catalogued Market slug, sorted."""
    return tuple(sorted(_CATALOG))


def get_model(slug: str) -> ModelSpec:
    """The row of ``slug``; :class:`KontextUnknownModelError` (naming close slugs) when it has none."""
    if not isinstance(slug, str) or not slug.strip():
        raise KontextValidationError(f"Market model must be a non-empty string, got {slug!r}.", field="model")
    spec = _CATALOG.get(slug)
    if spec is None:
        raise _unknown_model(slug)
    return spec


def image_url_fields(model: str) -> tuple[str, ...]:
    """The input fields of ``model`` that hold image URLs, i.e. the ones an upload step fills."""
    return tuple(spec.name for spec in get_model(model).fields if spec.carries_images)


def validate_input(model: str, input: Mapping[str, Any], *, urls_resolved: bool = True) -> dict[str, Any]:
    """
    Check a Market ``input`` against ``model``'s schema and return the input to send.

    Only what the caller gave is returned (kie applies its own defaults), with the numbers kie
    types as strings turned into strings. Raises :class:`KontextValidationError` with
    ``field="input.<name>"`` for the first problem, or :class:`KontextUnknownModelError`.

    ``urls_resolved=False`` is for input whose image fields the provider will still upload:
    those may then also hold a local path (a string or an ``os.PathLike``); the upload step runs
    :func:`check_input_urls` once it has replaced them with URLs.
    """
    spec = get_model(model)
    _check_object(spec.slug, input)
    fields = {field.name: field for field in spec.fields}
    unknown = [name for name in input if name not in fields]
    if unknown:
        name = unknown[0]
        close = difflib.get_close_matches(name, fields, n=3)
        hint = f" (did you mean {' or '.join(map(repr, close))}?)" if close else ""
        raise _invalid(
            spec.slug,
            name,
            f"unknown input field {name!r}{hint}; kie ignores fields it does not know, so it would not apply. "
            f"Its fields are {', '.join(fields)}.",
        )
    for field in spec.fields:
        if field.required and _is_empty(input.get(field.name)):
            raise _invalid(spec.slug, field.name, f"input.{field.name} is required and must not be empty.")
    normalized = {name: _check_value(spec.slug, fields[name], value, urls_resolved) for name, value in input.items()}
    for rule in spec.rules:
        broken = rule(normalized)
        if broken is not None:
            raise _invalid(spec.slug, broken[0], f"{broken[1]}.")
    return normalized


def check_input_urls(model: str, input: Mapping[str, Any]) -> None:
    """
    Check that every image field of a validated ``input`` holds absolute http(s) URLs.

    kie takes images only as public URLs. :func:`validate_input` runs this check itself unless
    told the URLs are not resolved yet; the upload step runs it after replacing local files.
    """
    spec = get_model(model)
    for field in spec.fields:
        if field.carries_images and field.name in input:
            _check_urls(spec.slug, field, input[field.name], resolved=True)


def check_uncatalogued_input(model: str, input: Mapping[str, Any]) -> dict[str, Any]:
    """
    The only checks of the opt-out (``allow_uncatalogued_model=True``): for models the catalog lacks or gets wrong.

    ``model`` must be a non-empty string and ``input`` a non-empty JSON object with string keys;
    nothing else about it is known, so nothing else is checked and no field is uploaded.
    """
    if not isinstance(model, str) or not model.strip():
        raise KontextValidationError(f"Market model must be a non-empty string, got {model!r}.", field="model")
    _check_object(model, input)
    if not input:
        raise KontextValidationError(f"{model}: input must not be empty.", field="input")
    for name, value in input.items():
        problem = _json_problem(value)
        if problem is not None:
            raise _invalid(model, name, f"input.{name} is not JSON: {problem}.")
    return dict(input)


def expected_images(model: str, input: Mapping[str, Any]) -> int:
    """How many images a task of ``model`` with ``input`` returns (validating the input first)."""
    spec = get_model(model)
    return spec.expected_images(validate_input(model, input, urls_resolved=False))


def price_per_image(model: str, input: Mapping[str, Any]) -> float | None:
    """
    Credits per output image at :data:`PRICES_AS_OF`; None when kie's price is unknown.

    None too for a model the catalog lacks (sent with the opt-out): there is nothing to go on.
    """
    if model not in _CATALOG:
        return None
    return _CATALOG[model].price_per_image(validate_input(model, input, urls_resolved=False))


def estimated_credits(model: str, input: Mapping[str, Any]) -> float | None:
    """Credits one task should cost (price per image x images); None when the price is unknown."""
    if model not in _CATALOG:
        return None
    spec = _CATALOG[model]
    normalized = validate_input(model, input, urls_resolved=False)
    per_image = spec.price_per_image(normalized)
    return None if per_image is None else round(per_image * spec.expected_images(normalized), 4)


# --- Checks ---

#: A decimal integer as kie's string-typed numbers hold it (ASCII digits only, unlike str.isdigit).
_DECIMAL: Final = re.compile(r"-?[0-9]+")


def _invalid(model: str, name: str, problem: str) -> KontextValidationError:
    return KontextValidationError(f"{model}: {problem}", field=f"input.{name}")


def _unknown_model(slug: str) -> KontextUnknownModelError:
    reason = _uncatalogued_reason(slug)
    if reason is not None:
        return KontextUnknownModelError(
            f"Market model {slug!r} is known to kie but not in this catalog ({reason}); its input cannot be "
            "checked here: use allow_uncatalogued_model=True to send it with only its shape checked.",
            model=slug,
            uncatalogued_reason=reason,
        )
    close = tuple(difflib.get_close_matches(slug.strip().lower(), _CATALOG, n=3))
    hint = f" Did you mean {' or '.join(map(repr, close))}?" if close else ""
    return KontextUnknownModelError(
        f"Unknown Market model {slug!r}.{hint} catalog_models() lists the {len(_CATALOG)} catalogued models; "
        "a model kie added since can be sent with allow_uncatalogued_model=True.",
        model=slug,
        suggestions=close,
    )


def _uncatalogued_reason(slug: str) -> str | None:
    for known, reason in KNOWN_UNCATALOGUED.items():
        if slug == known or (known.endswith("/") and slug.startswith(known)):
            return reason
    return None


def _check_object(model: str, input: Any) -> None:
    if not isinstance(input, Mapping):
        # A templated input renders to its text unless the DAG renders native objects: say so.
        hint = " (a template renders to text unless the DAG sets render_template_as_native_obj=True)"
        raise KontextValidationError(
            f"{model}: input must be a JSON object (a mapping), got {type(input).__name__}"
            f"{hint if isinstance(input, str) else ''}.",
            field="input",
        )
    for name in input:
        if not isinstance(name, str):
            raise KontextValidationError(f"{model}: input keys must be strings, got {name!r}.", field="input")


def _is_empty(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, str):
        return not value.strip()
    return isinstance(value, list | tuple) and not value


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)  # True is not the number 1 here


def _check_value(model: str, field: FieldSpec, value: Any, urls_resolved: bool) -> Any:
    """The value to send for ``field``, or the error naming what is wrong with ``value``."""
    name = field.name
    if value is None:
        raise _invalid(model, name, f"input.{name} is None; leave the field out to get kie's default.")
    wrong = f"input.{name} must be {{}}, got {type(value).__name__}."
    match field.kind:
        case "string":
            if field.as_string and _is_int(value):
                value = str(value)
            if not isinstance(value, str):
                raise _invalid(model, name, wrong.format("a string (or an integer)" if field.as_string else "a string"))
            _check_size(model, field, len(value), "characters", field.min_length, field.max_length)
        case "int":
            if field.as_string and isinstance(value, str) and _DECIMAL.fullmatch(value):
                number = int(value)
            elif _is_int(value):
                number = value
            else:
                raise _invalid(
                    model, name, wrong.format("an integer (or its decimal string)" if field.as_string else "an integer")
                )
            _check_range(model, field, number)
            value = str(number) if field.as_string else number
        case "float":
            if not (_is_int(value) or isinstance(value, float)) or not math.isfinite(value):
                raise _invalid(model, name, f"input.{name} must be a finite number, got {value!r}.")
            _check_range(model, field, value)
        case "bool":
            if not isinstance(value, bool):
                raise _invalid(model, name, f"input.{name} must be true or false, got {value!r}.")
        case "enum":
            if field.as_string and _is_int(value):
                value = str(value)
            if not isinstance(value, str) or value not in field.choices:
                raise _invalid(model, name, _enum_problem(field, value))
        case "url":
            _check_urls(model, field, value, resolved=urls_resolved)
        case "url_list" | "list":
            if not isinstance(value, list | tuple):
                raise _invalid(model, name, wrong.format("a JSON array (a list)"))
            value = list(value)
            _check_size(model, field, len(value), "items", field.min_items, field.max_items)
            if field.kind == "url_list":
                _check_urls(model, field, value, resolved=urls_resolved)
            else:
                _check_items(model, field, value)
    return value


def _check_range(model: str, field: FieldSpec, number: float) -> None:
    low, high = field.minimum, field.maximum
    if low is not None and number < low:
        raise _invalid(model, field.name, f"input.{field.name} must be at least {_shown(low)}, got {_shown(number)}.")
    if high is not None and number > high:
        raise _invalid(model, field.name, f"input.{field.name} must be at most {_shown(high)}, got {_shown(number)}.")


def _shown(number: float) -> str:
    """A bound or value as the user would write it: ``4`` not ``4.0``; ints of any size."""
    return str(number) if isinstance(number, int) else f"{number:g}"


def _check_size(model: str, field: FieldSpec, size: int, unit: str, low: int | None, high: int | None) -> None:
    if low is not None and size < low:
        raise _invalid(model, field.name, f"input.{field.name} must have at least {low} {unit}, got {size}.")
    if high is not None and size > high:
        raise _invalid(model, field.name, f"input.{field.name} must have at most {high} {unit}, got {size}.")


def _enum_problem(field: FieldSpec, value: Any) -> str:
    same_but_case = [choice for choice in field.choices if isinstance(value, str) and choice.lower() == value.lower()]
    hint = f" (did you mean {same_but_case[0]!r}?)" if same_but_case else ""
    return f"input.{field.name} must be one of {', '.join(field.choices)}; got {value!r}{hint}."


def _check_urls(model: str, field: FieldSpec, value: Any, *, resolved: bool) -> None:
    """Each image of ``value`` must be an http(s) URL, or, while ``resolved`` is false, also a local path."""
    if field.kind == "url_list":
        if not isinstance(value, list | tuple):
            raise _invalid(model, field.name, f"input.{field.name} must be a list of URLs, got {type(value).__name__}.")
        items = [(f"input.{field.name}[{index}]", item) for index, item in enumerate(value)]
    else:
        items = [(f"input.{field.name}", value)]
    for label, item in items:
        if not resolved and (isinstance(item, os.PathLike) or (isinstance(item, str) and item.strip())):
            continue  # a URL or a local file the upload step turns into one
        try:
            check_http_url(item, field=label)
        except KontextValidationError as err:
            raise _invalid(model, field.name, err.message) from None


def _check_items(model: str, field: FieldSpec, items: list[Any]) -> None:
    for index, item in enumerate(items):
        label = f"input.{field.name}[{index}]"
        if field.item_keys and (not isinstance(item, Mapping) or set(item) != set(field.item_keys)):
            raise _invalid(model, field.name, f"{label} must be an object with exactly {', '.join(field.item_keys)}.")
        problem = _json_problem(item)
        if problem is not None:
            raise _invalid(model, field.name, f"{label} is not JSON: {problem}.")


def _json_problem(value: Any) -> str | None:
    """What keeps ``value`` from being sent as JSON, or None; NaN and infinity are not JSON either."""
    if value is None or isinstance(value, str | bool | int):
        return None
    if isinstance(value, float):
        return None if math.isfinite(value) else f"{value!r} is not a JSON number"
    if isinstance(value, list | tuple):
        return next((problem for item in value if (problem := _json_problem(item)) is not None), None)
    if isinstance(value, Mapping):
        if not all(isinstance(key, str) for key in value):
            return "an object with a non-string key"
        return next((problem for item in value.values() if (problem := _json_problem(item)) is not None), None)
    return f"a {type(value).__name__} is not a JSON value"
