"""The Market model catalog: every row's schema is enforced, with tests generated from the rows.

The generated tests build values from each field spec, so a row added to the catalog is covered
without editing this file; the hand-written ones pin what the Market reference states (the slugs,
the cross-field rules, the string-typed numbers, the image counts and the prices).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_kontext._protocol.catalog import (
    KNOWN_UNCATALOGUED,
    PRICES_AS_OF,
    FieldSpec,
    catalog_models,
    check_input_urls,
    check_uncatalogued_input,
    estimated_credits,
    expected_images,
    get_model,
    image_url_fields,
    price_per_image,
    validate_input,
)
from airflow_provider_kontext.exceptions import KontextUnknownModelError, KontextValidationError

URL = "https://img.test/in.png"
#: Every model of the reference's §4 that has a schema, written out so a dropped row fails.
REFERENCE_MODELS = (
    "google/nano-banana",
    "google/nano-banana-edit",
    "nano-banana-pro",
    "nano-banana-2",
    "nano-banana-2-lite",
    "google/imagen4",
    "google/imagen4-fast",
    "google/imagen4-ultra",
    "flux-2/pro-text-to-image",
    "flux-2/pro-image-to-image",
    "flux-2/flex-text-to-image",
    "flux-2/flex-image-to-image",
    "bytedance/seedream",
    "bytedance/seedream-v4-text-to-image",
    "bytedance/seedream-v4-edit",
    "seedream/4.5-text-to-image",
    "seedream/4.5-edit",
    "seedream/5-lite-text-to-image",
    "seedream/5-lite-image-to-image",
    "seedream/5-pro-text-to-image",
    "seedream/5-pro-image-to-image",
    "gpt-image/1.5-text-to-image",
    "gpt-image/1.5-image-to-image",
    "gpt-image-2-text-to-image",
    "gpt-image-2-image-to-image",
    "qwen/text-to-image",
    "qwen/image-to-image",
    "qwen/image-edit",
    "qwen2/text-to-image",
    "qwen2/image-edit",
    "ideogram/v3-text-to-image",
    "ideogram/v3-edit",
    "ideogram/v3-remix",
    "ideogram/character",
    "ideogram/character-edit",
    "ideogram/character-remix",
    "z-image",
    "grok-imagine/text-to-image",
    "grok-imagine/image-to-image",
    "wan/2-7-image",
    "wan/2-7-image-pro",
    "topaz/image-upscale",
    "recraft/crisp-upscale",
    "recraft/remove-background",
)

MODELS = catalog_models()
FIELDS = [(model, spec) for model in MODELS for spec in get_model(model).fields]


def _ids(case: Any) -> str:
    return case.name if isinstance(case, FieldSpec) else str(case)


def _fields(predicate: Any) -> list[Any]:
    return [pytest.param(model, spec, id=f"{model}:{spec.name}") for model, spec in FIELDS if predicate(spec)]


def _item(spec: FieldSpec) -> Any:
    """One valid list item of ``spec``."""
    if spec.kind == "url_list":
        return URL
    if spec.item_keys:
        return {key: "#FF8800" if key == "hex" else "33.33%" for key in spec.item_keys}
    return [0, 0, 10, 10]


def valid_value(spec: FieldSpec) -> Any:
    """A value the spec accepts, built from its bounds only."""
    if spec.kind == "string":
        text = "a red bicycle leaning on a stone wall"
        text = text.ljust(spec.min_length or 0, "!")
        return text[: spec.max_length] if spec.max_length is not None else text
    if spec.kind == "int":
        return int(spec.minimum) if spec.minimum is not None else 1
    if spec.kind == "float":
        assert spec.minimum is not None and spec.maximum is not None
        return (spec.minimum + spec.maximum) / 2
    if spec.kind == "bool":
        return True
    if spec.kind == "enum":
        return spec.default if spec.default is not None else spec.choices[0]
    if spec.kind == "url":
        return URL
    return [_item(spec)] * (spec.min_items or 1)


def sent_value(spec: FieldSpec, value: Any) -> Any:
    """What validation should send for ``value``: kie's string-typed numbers become strings."""
    return str(value) if spec.as_string and isinstance(value, int) else value


def minimal(model: str) -> dict[str, Any]:
    return {spec.name: valid_value(spec) for spec in get_model(model).fields if spec.required}


def refused(model: str, input: Any, **kwargs: Any) -> KontextValidationError:
    with pytest.raises(KontextValidationError) as err:
        validate_input(model, input, **kwargs)
    return err.value


# --- The catalog's coverage and its own consistency ---


def test_the_catalog_holds_exactly_the_reference_models_with_a_schema() -> None:
    assert sorted(REFERENCE_MODELS) == list(MODELS)


def test_no_uncatalogued_slug_is_also_catalogued() -> None:
    for slug in MODELS:
        assert not any(
            slug == known or (known.endswith("/") and slug.startswith(known)) for known in KNOWN_UNCATALOGUED
        )


@pytest.mark.parametrize("model", MODELS)
def test_field_names_are_unique_per_model(model: str) -> None:
    names = [spec.name for spec in get_model(model).fields]
    assert len(names) == len(set(names))


@pytest.mark.parametrize(("model", "spec"), _fields(lambda spec: spec.default is not None))
def test_every_documented_default_is_a_value_the_field_accepts(model: str, spec: FieldSpec) -> None:
    validate_input(model, {**minimal(model), spec.name: spec.default})


@pytest.mark.parametrize("model", MODELS)
def test_every_price_table_covers_each_value_of_its_field(model: str) -> None:
    spec = get_model(model)
    if spec.price is None or spec.price.by is None:
        return
    assert spec.price.table is not None
    assert spec.price.credits is None
    field = spec.field_spec(spec.price.by)
    values = set(field.choices) if field.kind == "enum" else {False, True}
    assert set(spec.price.table) == values


@pytest.mark.parametrize("model", MODELS)
def test_an_image_count_field_is_an_int_field_with_a_default(model: str) -> None:
    count = get_model(model).images
    if count.field is not None:
        field = get_model(model).field_spec(count.field)
        assert field.kind == "int"
        assert isinstance(field.default, int)


def test_third_party_rows_are_not_marked_confirmed() -> None:
    third_party = {slug for slug in MODELS if not get_model(slug).confirmed}
    assert third_party == {"nano-banana-2-lite", "seedream/5-pro-text-to-image", "seedream/5-pro-image-to-image"}


# --- Generated from the field specs ---


@pytest.mark.parametrize("model", MODELS)
def test_a_minimal_input_passes_and_no_default_is_added(model: str) -> None:
    input = minimal(model)
    assert validate_input(model, input) == input


@pytest.mark.parametrize(("model", "spec"), _fields(lambda spec: True))
def test_each_field_accepts_a_valid_value(model: str, spec: FieldSpec) -> None:
    value = valid_value(spec)
    assert validate_input(model, {**minimal(model), spec.name: value})[spec.name] == sent_value(spec, value)


@pytest.mark.parametrize(("model", "spec"), _fields(lambda spec: spec.required))
def test_a_missing_required_field_is_named(model: str, spec: FieldSpec) -> None:
    input = minimal(model)
    del input[spec.name]
    err = refused(model, input)
    assert err.field == f"input.{spec.name}"
    assert model in str(err)
    assert "required" in str(err)


@pytest.mark.parametrize(("model", "spec"), _fields(lambda spec: spec.required and spec.kind in ("string", "url_list")))
def test_a_blank_required_field_counts_as_missing(model: str, spec: FieldSpec) -> None:
    err = refused(model, {**minimal(model), spec.name: "  " if spec.kind == "string" else []})
    assert err.field == f"input.{spec.name}"


@pytest.mark.parametrize(("model", "spec"), _fields(lambda spec: not spec.required))
def test_none_is_refused_rather_than_sent_as_null(model: str, spec: FieldSpec) -> None:
    err = refused(model, {**minimal(model), spec.name: None})
    assert err.field == f"input.{spec.name}"
    assert "leave the field out" in str(err)


@pytest.mark.parametrize(("model", "spec"), _fields(lambda spec: spec.kind == "enum"))
def test_an_enum_refuses_other_values_listing_its_choices(model: str, spec: FieldSpec) -> None:
    err = refused(model, {**minimal(model), spec.name: "not-a-choice"})
    assert err.field == f"input.{spec.name}"
    assert all(choice in str(err) for choice in spec.choices)


def _bounds() -> list[Any]:
    cases = []
    for model, spec in FIELDS:
        step = 1 if spec.kind == "int" else 0.001
        if spec.minimum is not None:
            cases.append(pytest.param(model, spec, spec.minimum - step, "at least", id=f"{model}:{spec.name}:low"))
        if spec.maximum is not None:
            cases.append(pytest.param(model, spec, spec.maximum + step, "at most", id=f"{model}:{spec.name}:high"))
    return cases


@pytest.mark.parametrize(("model", "spec", "value", "words"), _bounds())
def test_numbers_outside_their_range_are_refused(model: str, spec: FieldSpec, value: float, words: str) -> None:
    value = int(value) if spec.kind == "int" else value
    err = refused(model, {**minimal(model), spec.name: value})
    assert err.field == f"input.{spec.name}"
    assert words in str(err)


@pytest.mark.parametrize(("model", "spec"), _fields(lambda spec: spec.minimum is not None and spec.maximum is not None))
def test_numbers_on_their_bounds_are_accepted(model: str, spec: FieldSpec) -> None:
    assert spec.minimum is not None and spec.maximum is not None
    # Wan's n range is its sequential mode's; the mode rule has its own tests below.
    mode = {"enable_sequential": True} if spec.name == "n" else {}
    for bound in (spec.minimum, spec.maximum):
        value = int(bound) if spec.kind == "int" else bound
        input = {**minimal(model), **mode, spec.name: value}
        assert validate_input(model, input)[spec.name] == sent_value(spec, value)


def _lengths() -> list[Any]:
    cases = []
    for model, spec in FIELDS:
        if spec.max_length is not None:
            cases.append(pytest.param(model, spec, "x" * (spec.max_length + 1), id=f"{model}:{spec.name}:long"))
        if spec.min_length is not None and spec.min_length > 1:
            cases.append(pytest.param(model, spec, "x" * (spec.min_length - 1), id=f"{model}:{spec.name}:short"))
    return cases


@pytest.mark.parametrize(("model", "spec", "value"), _lengths())
def test_strings_outside_their_length_are_refused(model: str, spec: FieldSpec, value: str) -> None:
    err = refused(model, {**minimal(model), spec.name: value})
    assert err.field == f"input.{spec.name}"
    assert "characters" in str(err)


@pytest.mark.parametrize(("model", "spec"), _fields(lambda spec: spec.max_length is not None))
def test_a_string_of_its_maximum_length_is_accepted(model: str, spec: FieldSpec) -> None:
    assert spec.max_length is not None
    validate_input(model, {**minimal(model), spec.name: "x" * spec.max_length})


def _item_counts() -> list[Any]:
    cases = []
    for model, spec in FIELDS:
        if spec.max_items is not None:
            cases.append(pytest.param(model, spec, spec.max_items + 1, id=f"{model}:{spec.name}:many"))
        if spec.min_items is not None and spec.min_items > 1:
            cases.append(pytest.param(model, spec, spec.min_items - 1, id=f"{model}:{spec.name}:few"))
    return cases


@pytest.mark.parametrize(("model", "spec", "count"), _item_counts())
def test_lists_outside_their_item_count_are_refused(model: str, spec: FieldSpec, count: int) -> None:
    err = refused(model, {**minimal(model), spec.name: [_item(spec)] * count})
    assert err.field == f"input.{spec.name}"
    assert "items" in str(err)


@pytest.mark.parametrize(("model", "spec"), _fields(lambda spec: spec.max_items is not None))
def test_a_list_of_its_maximum_size_is_accepted(model: str, spec: FieldSpec) -> None:
    assert spec.max_items is not None
    items = [_item(spec)] * spec.max_items
    assert validate_input(model, {**minimal(model), spec.name: tuple(items)})[spec.name] == items


def _wrong_types(spec: FieldSpec) -> list[Any]:
    """Values of the wrong JSON type for ``spec``: bool is not an int, an int is not a string."""
    by_kind: dict[str, list[Any]] = {
        "string": [1.5, ["a"], {"text": "a"}] if spec.as_string else [1, ["a"], {"text": "a"}],
        "int": [True, 1.5, "x"] if spec.as_string else [True, 1.5, "3"],
        "float": [True, "0.5", math.nan, math.inf],
        "bool": [1, "true", "false"],
        "enum": [True, [valid_value(spec)], 1.0],
        "url": [5, [URL], {"url": URL}],
        "url_list": [URL, {"url": URL}, [5]],
        "list": ["x", {"a": 1}],
    }
    return by_kind[spec.kind]


@pytest.mark.parametrize(
    ("model", "spec", "value"),
    [
        pytest.param(model, spec, value, id=f"{model}:{spec.name}:{value!r}")
        for model, spec in FIELDS
        for value in _wrong_types(spec)
    ],
)
def test_values_of_the_wrong_type_are_refused(model: str, spec: FieldSpec, value: Any) -> None:
    err = refused(model, {**minimal(model), spec.name: value})
    assert err.field == f"input.{spec.name}"
    assert model in str(err)


@pytest.mark.parametrize("model", MODELS)
def test_an_unknown_field_is_refused_naming_the_close_match(model: str) -> None:
    real = get_model(model).fields[0].name
    typo = real[:-1] + real[-1].upper()
    err = refused(model, {**minimal(model), typo: valid_value(get_model(model).fields[0])})
    assert err.field == f"input.{typo}"
    assert f"did you mean {real!r}" in str(err)


# --- Unknown and uncatalogued models ---


@pytest.mark.parametrize(
    ("slug", "best"),
    [
        ("flux-2/pro-text2image", "flux-2/pro-text-to-image"),
        ("Nano-Banana-Pro", "nano-banana-pro"),
        ("google/nano-banana-pro", "nano-banana-pro"),
        ("seedream/4.5-text2image", "seedream/4.5-text-to-image"),
        ("wan/2.7-image", "wan/2-7-image"),
        ("recraft/remove-bg", "recraft/remove-background"),
    ],
)
def test_an_unknown_model_suggests_the_close_slugs(slug: str, best: str) -> None:
    with pytest.raises(KontextUnknownModelError) as err:
        validate_input(slug, {"prompt": "a cat"})
    assert err.value.field == "model"
    assert err.value.model == slug
    assert best in err.value.suggestions
    assert best in str(err.value)
    assert err.value.uncatalogued_reason is None


def test_the_closest_slug_comes_first() -> None:
    with pytest.raises(KontextUnknownModelError) as err:
        get_model("flux-2/pro-text2image")
    assert err.value.suggestions[0] == "flux-2/pro-text-to-image"


def test_an_unknown_model_without_close_slugs_still_points_at_the_opt_out() -> None:
    with pytest.raises(KontextUnknownModelError) as err:
        get_model("zzzzzzzzzzzz")
    assert err.value.suggestions == ()
    assert "allow_uncatalogued_model=True" in str(err.value)


@pytest.mark.parametrize("known", sorted(KNOWN_UNCATALOGUED))
def test_a_known_uncatalogued_model_says_so_and_names_the_opt_out(known: str) -> None:
    slug = f"{known}text-to-image" if known.endswith("/") else known
    with pytest.raises(KontextUnknownModelError) as err:
        validate_input(slug, {"prompt": "a cat"})
    assert "known to kie but not in this catalog" in str(err.value)
    assert "allow_uncatalogued_model=True" in str(err.value)
    assert err.value.uncatalogued_reason == KNOWN_UNCATALOGUED[known]


@pytest.mark.parametrize("slug", [None, "", "   ", 3])
def test_a_model_that_is_not_a_non_empty_string_is_refused(slug: Any) -> None:
    with pytest.raises(KontextValidationError) as err:
        get_model(slug)
    assert err.value.field == "model"
    assert not isinstance(err.value, KontextUnknownModelError)


def test_the_uncatalogued_check_takes_any_json_object_for_any_model() -> None:
    input = {"prompt": "a cat", "size": "1:1", "files_url": [URL], "nested": {"a": [1, 2.5, None, True]}}
    sent = check_uncatalogued_input("4o-image-api", input)
    assert sent == input
    assert sent is not input


@pytest.mark.parametrize(
    ("model", "input", "field"),
    [
        ("", {"prompt": "a"}, "model"),
        (None, {"prompt": "a"}, "model"),
        ("4o-image-api", {}, "input"),
        ("4o-image-api", [("prompt", "a")], "input"),
        ("4o-image-api", '{"prompt": "a"}', "input"),
        ("4o-image-api", {1: "a"}, "input"),
        ("4o-image-api", {"prompt": object()}, "input.prompt"),
        ("4o-image-api", {"strength": math.nan}, "input.strength"),
        ("4o-image-api", {"nested": {"a": {2: "b"}}}, "input.nested"),
    ],
)
def test_the_uncatalogued_check_refuses_what_is_not_a_json_object(model: Any, input: Any, field: str) -> None:
    with pytest.raises(KontextValidationError) as err:
        check_uncatalogued_input(model, input)
    assert err.value.field == field


# --- Cross-field rules ---

GPT_IMAGE_2 = ("gpt-image-2-text-to-image", "gpt-image-2-image-to-image")


def _gpt_image_2(model: str, ratio: str | None, resolution: str | None) -> dict[str, Any]:
    input = minimal(model)
    if ratio is not None:
        input["aspect_ratio"] = ratio
    if resolution is not None:
        input["resolution"] = resolution
    return input


@pytest.mark.parametrize("model", GPT_IMAGE_2)
@pytest.mark.parametrize(
    ("ratio", "resolution"),
    [
        (None, None),
        (None, "1K"),
        ("auto", "1K"),
        ("1:1", "2K"),
        ("16:9", "4K"),
        ("3:2", "4K"),
        ("21:9", "4K"),
        ("5:4", "1K"),
        ("9:21", "1K"),
        ("1:1", None),
    ],
)
def test_gpt_image_2_accepts_resolutions_its_ratio_allows(
    model: str, ratio: str | None, resolution: str | None
) -> None:
    validate_input(model, _gpt_image_2(model, ratio, resolution))


@pytest.mark.parametrize("model", GPT_IMAGE_2)
@pytest.mark.parametrize(
    ("ratio", "resolution", "words"),
    [
        ("1:1", "4K", "1:1 cannot be 4K"),
        ("5:4", "2K", "1K only"),
        ("4:5", "4K", "1K only"),
        ("3:1", "2K", "1K only"),
        ("1:3", "4K", "1K only"),
        ("9:21", "2K", "1K only"),
        ("auto", "2K", "explicit aspect_ratio"),
        (None, "4K", "explicit aspect_ratio"),
    ],
)
def test_gpt_image_2_refuses_resolutions_its_ratio_cannot_have(
    model: str, ratio: str | None, resolution: str, words: str
) -> None:
    err = refused(model, _gpt_image_2(model, ratio, resolution))
    assert err.field == "input.resolution"
    assert words in str(err)
    assert model in str(err)


WAN = ("wan/2-7-image", "wan/2-7-image-pro")


@pytest.mark.parametrize("model", WAN)
@pytest.mark.parametrize(
    "extra",
    [
        {"n": 1},
        {"n": 4},
        {"n": 4, "enable_sequential": False},
        {"n": 5, "enable_sequential": True},
        {"n": 12, "enable_sequential": True},
        {"enable_sequential": True},
    ],
)
def test_wan_accepts_n_within_its_mode(model: str, extra: dict[str, Any]) -> None:
    assert validate_input(model, {"prompt": "a cat", **extra}) == {"prompt": "a cat", **extra}


@pytest.mark.parametrize("model", WAN)
@pytest.mark.parametrize(
    ("extra", "words"),
    [
        ({"n": 5}, "unless enable_sequential"),
        ({"n": 12, "enable_sequential": False}, "unless enable_sequential"),
        ({"n": 13, "enable_sequential": True}, "at most 12"),
        ({"n": 0, "enable_sequential": True}, "at least 1"),
    ],
)
def test_wan_refuses_n_outside_its_mode(model: str, extra: dict[str, Any], words: str) -> None:
    err = refused(model, {"prompt": "a cat", **extra})
    assert err.field == "input.n"
    assert words in str(err)


def test_wan_pro_renders_4k_from_text_only() -> None:
    assert validate_input("wan/2-7-image-pro", {"prompt": "a cat", "resolution": "4K"})["resolution"] == "4K"
    err = refused("wan/2-7-image-pro", {"prompt": "a cat", "resolution": "4K", "input_urls": [URL]})
    assert err.field == "input.resolution"
    assert refused("wan/2-7-image", {"prompt": "a cat", "resolution": "4K"}).field == "input.resolution"


# --- Numbers kie types as strings ---


@pytest.mark.parametrize(
    ("model", "name", "given", "sent"),
    [
        ("qwen/image-edit", "num_images", 2, "2"),
        ("qwen/image-edit", "num_images", "3", "3"),
        ("ideogram/v3-remix", "num_images", 4, "4"),
        ("ideogram/character", "num_images", "1", "1"),
        ("topaz/image-upscale", "upscale_factor", 4, "4"),
        ("topaz/image-upscale", "upscale_factor", "8", "8"),
        ("google/imagen4", "seed", 42, "42"),
        ("google/imagen4-ultra", "seed", "lucky-7", "lucky-7"),
        ("google/imagen4-fast", "seed", 42, 42),
        ("bytedance/seedream-v4-text-to-image", "max_images", 3, 3),
        ("wan/2-7-image", "n", 2, 2),
    ],
)
def test_numbers_kie_types_as_strings_are_sent_as_strings(model: str, name: str, given: Any, sent: Any) -> None:
    input = {**minimal(model), name: given}
    normalized = validate_input(model, input)
    assert normalized[name] == sent
    assert type(normalized[name]) is type(sent)
    assert input[name] == given  # the caller's input is not changed


@pytest.mark.parametrize(
    ("model", "name", "value"),
    [
        ("qwen/image-edit", "num_images", "5"),
        ("qwen/image-edit", "num_images", "two"),
        ("qwen/image-edit", "num_images", " 2"),
        ("qwen/image-edit", "num_images", "2.0"),
        ("qwen/image-edit", "num_images", 2.0),
        ("topaz/image-upscale", "upscale_factor", 3),
        ("topaz/image-upscale", "upscale_factor", True),
        ("google/imagen4-fast", "seed", "42"),
        ("bytedance/seedream-v4-text-to-image", "max_images", "2"),
        ("wan/2-7-image", "n", "2"),
    ],
)
def test_string_typed_numbers_are_not_a_licence_for_any_value(model: str, name: str, value: Any) -> None:
    assert refused(model, {**minimal(model), name: value}).field == f"input.{name}"


# --- Image URLs and the upload step ---


def test_image_url_fields_are_the_fields_holding_images() -> None:
    assert image_url_fields("nano-banana-pro") == ("image_input",)
    assert image_url_fields("flux-2/pro-image-to-image") == ("input_urls",)
    assert image_url_fields("recraft/remove-background") == ("image",)
    assert image_url_fields("ideogram/character-remix") == (
        "image_url",
        "reference_image_urls",
        "image_urls",
        "reference_mask_urls",
    )
    assert image_url_fields("flux-2/pro-text-to-image") == ()


def test_local_files_pass_only_while_urls_are_unresolved(tmp_path: Path) -> None:
    local = tmp_path / "in.png"
    input = {"prompt": "make it blue", "image_urls": [URL, str(local), local]}
    assert refused("google/nano-banana-edit", input).field == "input.image_urls"

    pending = validate_input("google/nano-banana-edit", input, urls_resolved=False)
    assert pending["image_urls"] == [URL, str(local), local]
    with pytest.raises(KontextValidationError, match=r"image_urls\[1\]") as err:
        check_input_urls("google/nano-banana-edit", pending)
    assert err.value.field == "input.image_urls"

    uploaded = {**pending, "image_urls": [URL, "https://tempfile.test/a.png", "https://tempfile.test/b.png"]}
    check_input_urls("google/nano-banana-edit", uploaded)
    assert validate_input("google/nano-banana-edit", uploaded) == uploaded


@pytest.mark.parametrize("value", ["", "   ", 5, b"https://img.test/in.png"])
def test_an_unresolved_url_field_still_needs_a_path_or_url(value: Any) -> None:
    err = refused("topaz/image-upscale", {"image_url": value, "upscale_factor": "2"}, urls_resolved=False)
    assert err.field == "input.image_url"


def test_a_single_url_field_takes_a_path_object_while_unresolved(tmp_path: Path) -> None:
    input = {"image": tmp_path / "photo.jpg"}
    assert validate_input("recraft/crisp-upscale", input, urls_resolved=False) == input
    with pytest.raises(KontextValidationError) as err:
        check_input_urls("recraft/crisp-upscale", input)
    assert err.value.field == "input.image"


# --- Image counts ---


@pytest.mark.parametrize(
    ("model", "extra", "count"),
    [
        ("nano-banana-pro", {}, 1),
        ("bytedance/seedream-v4-text-to-image", {}, 1),
        ("bytedance/seedream-v4-edit", {"max_images": 6}, 6),
        ("qwen/image-edit", {}, 1),
        ("qwen/image-edit", {"num_images": "3"}, 3),
        ("ideogram/character", {"num_images": 2}, 2),
        ("ideogram/v3-remix", {"num_images": 4}, 4),
        ("wan/2-7-image", {}, 4),
        ("wan/2-7-image", {"n": 2}, 2),
        ("wan/2-7-image-pro", {"enable_sequential": True}, 12),
        ("wan/2-7-image-pro", {"enable_sequential": True, "n": 7}, 7),
        ("wan/2-7-image", {"enable_sequential": False}, 4),
        ("grok-imagine/text-to-image", {}, 2),
        ("grok-imagine/image-to-image", {}, 1),
    ],
)
def test_expected_images_follow_the_count_field_or_its_default(model: str, extra: dict[str, Any], count: int) -> None:
    assert expected_images(model, {**minimal(model), **extra}) == count


def test_expected_images_validates_first_and_knows_no_uncatalogued_model() -> None:
    with pytest.raises(KontextValidationError):
        expected_images("qwen/image-edit", {"prompt": "x", "image_url": URL, "num_images": 9})
    with pytest.raises(KontextUnknownModelError):
        expected_images("flux1-kontext", {"prompt": "x"})


# --- Prices (credits per image, from the reference's §5) ---


def test_prices_are_dated() -> None:
    assert PRICES_AS_OF == "2026-09-24"


@pytest.mark.parametrize(
    ("model", "extra", "per_image", "total"),
    [
        ("nano-banana-pro", {"resolution": "4K"}, 24, 24),
        ("nano-banana-pro", {"resolution": "2K"}, 18, 18),
        ("nano-banana-pro", {}, 18, 18),
        ("nano-banana-2", {"resolution": "2K"}, 12, 12),
        ("google/nano-banana-edit", {}, 4, 4),
        ("nano-banana-2-lite", {}, 4, 4),
        ("google/imagen4", {}, 8, 8),
        ("google/imagen4-fast", {}, 4, 4),
        ("google/imagen4-ultra", {}, 12, 12),
        ("flux-2/pro-text-to-image", {"resolution": "2K"}, 7, 7),
        ("flux-2/pro-image-to-image", {"resolution": "1K"}, 5, 5),
        ("flux-2/flex-image-to-image", {"resolution": "2K"}, 24, 24),
        ("seedream/4.5-edit", {}, 6.5, 6.5),
        ("seedream/5-lite-text-to-image", {}, 5.5, 5.5),
        ("seedream/5-pro-text-to-image", {"quality": "high"}, 14, 14),
        ("seedream/5-pro-image-to-image", {"image_urls": [URL] * 3}, 8, 8),
        ("gpt-image/1.5-text-to-image", {"quality": "high"}, 22, 22),
        ("gpt-image-2-text-to-image", {}, 6, 6),
        ("gpt-image-2-image-to-image", {"aspect_ratio": "16:9", "resolution": "4K"}, 16, 16),
        ("qwen/text-to-image", {}, 4.2, 4.2),
        ("qwen/image-edit", {"image_size": "square_hd", "num_images": 2}, 5.25, 10.5),
        ("qwen2/image-edit", {}, 5.6, 5.6),
        ("ideogram/v3-text-to-image", {"rendering_speed": "TURBO"}, 3.5, 3.5),
        ("ideogram/v3-remix", {"rendering_speed": "QUALITY", "num_images": 3}, 10, 30),
        ("ideogram/character", {}, 18, 18),
        ("ideogram/character-edit", {"rendering_speed": "QUALITY", "num_images": "2"}, 24, 48),
        ("z-image", {}, 0.8, 0.8),
        ("grok-imagine/text-to-image", {}, 2, 4),
        ("grok-imagine/text-to-image", {"enable_pro": True}, 2.5, 5),
        ("grok-imagine/image-to-image", {}, 4, 4),
        ("wan/2-7-image", {}, 4.8, 19.2),
        ("wan/2-7-image-pro", {"n": 2}, 12, 24),
        ("topaz/image-upscale", {"upscale_factor": "2"}, 10, 10),
        ("topaz/image-upscale", {"upscale_factor": 4}, 20, 20),
        ("topaz/image-upscale", {"upscale_factor": "8"}, 40, 40),
        ("recraft/crisp-upscale", {}, 0.5, 0.5),
        ("recraft/remove-background", {}, 1, 1),
    ],
)
def test_prices_follow_the_pricing_feed(model: str, extra: dict[str, Any], per_image: float, total: float) -> None:
    input = {**minimal(model), **extra}
    assert price_per_image(model, input) == pytest.approx(per_image)
    assert estimated_credits(model, input) == pytest.approx(total)


@pytest.mark.parametrize(
    "model",
    ["bytedance/seedream", "bytedance/seedream-v4-text-to-image", "bytedance/seedream-v4-edit", "flux1-kontext"],
)
def test_an_unknown_price_is_none_not_a_guess(model: str) -> None:
    input = minimal(model) if model in MODELS else {"prompt": "a cat"}
    assert price_per_image(model, input) is None
    assert estimated_credits(model, input) is None


def test_pricing_an_invalid_input_is_refused() -> None:
    with pytest.raises(KontextValidationError):
        price_per_image("nano-banana-pro", {"prompt": "a cat", "resolution": "8K"})
    with pytest.raises(KontextValidationError):
        estimated_credits("nano-banana-pro", {"prompt": "a cat", "resolution": "8K"})


# --- Held-out corpus: realistic bad Market inputs, each naming its field ---

HUGE = "a cat " * 5000

BAD_INPUTS = [
    ("nano-banana-pro", {"promt": "a cat"}, "input.promt"),
    ("nano-banana-pro", {"prompt": "a cat", "resolution": "2k"}, "input.resolution"),
    ("nano-banana-pro", {"prompt": "a cat", "aspectRatio": "1:1"}, "input.aspectRatio"),
    ("nano-banana-pro", {"prompt": None}, "input.prompt"),
    ("nano-banana-pro", {"prompt": "a cat", "aspect_ratio": None}, "input.aspect_ratio"),
    ("nano-banana-pro", {"prompt": " \n\t "}, "input.prompt"),
    ("nano-banana-pro", ["prompt", "a cat"], "input"),
    ("nano-banana-pro", '{"prompt": "a cat"}', "input"),
    ("nano-banana-pro", None, "input"),
    ("nano-banana-pro", {("prompt",): "a cat"}, "input"),
    ("nano-banana-2", {"prompt": HUGE}, "input.prompt"),
    ("nano-banana-2", {"prompt": {"text": "a cat"}}, "input.prompt"),
    ("nano-banana-2", {"prompt": "a cat", "image_input": [{"url": URL}]}, "input.image_input"),
    ("google/nano-banana-edit", {"prompt": "a cat", "image_urls": URL}, "input.image_urls"),
    ("google/nano-banana-edit", {"prompt": "a cat", "image_urls": ["/home/me/cat.png"]}, "input.image_urls"),
    ("google/nano-banana-edit", {"prompt": "a cat", "image_urls": [URL] * 11}, "input.image_urls"),
    ("flux-2/pro-text-to-image", {"prompt": "a cat", "aspect_ratio": "1:1", "resolution": "4K"}, "input.resolution"),
    ("flux-2/pro-text-to-image", {"prompt": "a cat", "aspect_ratio": "auto", "resolution": "1K"}, "input.aspect_ratio"),
    ("flux-2/flex-text-to-image", {"prompt": "hi", "aspect_ratio": "1:1", "resolution": "1K"}, "input.prompt"),
    (
        "flux-2/pro-image-to-image",
        {"prompt": "a cat", "input_urls": [], "aspect_ratio": "1:1", "resolution": "1K"},
        "input.input_urls",
    ),
    ("bytedance/seedream-v4-text-to-image", {"prompt": "a cat", "max_images": "2"}, "input.max_images"),
    ("seedream/4.5-text-to-image", {"prompt": "a cat", "aspect_ratio": "1:1", "quality": "ultra"}, "input.quality"),
    ("gpt-image-2-text-to-image", {"prompt": "a cat", "aspect_ratio": "1:1", "resolution": "4K"}, "input.resolution"),
    ("gpt-image-2-text-to-image", {"prompt": "a cat", "resolution": "2K"}, "input.resolution"),
    ("qwen/image-edit", {"prompt": "a cat", "image_url": URL, "num_images": 5}, "input.num_images"),
    ("qwen/text-to-image", {"prompt": "a cat", "guidance_scale": math.nan}, "input.guidance_scale"),
    ("qwen/text-to-image", {"prompt": "a cat", "num_inference_steps": 30.0}, "input.num_inference_steps"),
    ("ideogram/v3-text-to-image", {"prompt": "a cat", "rendering_speed": "quality"}, "input.rendering_speed"),
    ("ideogram/v3-edit", {"prompt": "a cat", "image_url": URL}, "input.mask_url"),
    ("z-image", {"prompt": "a cat", "aspect_ratio": "1:1", "nsfw_checker": "false"}, "input.nsfw_checker"),
    ("google/imagen4-fast", {"prompt": "a cat", "seed": "42"}, "input.seed"),
    ("wan/2-7-image", {"prompt": "a cat", "n": 8}, "input.n"),
    (
        "wan/2-7-image",
        {"prompt": "a cat", "color_palette": [{"hex": "#FF0000", "ratio": "50.00%"}] * 2},
        "input.color_palette",
    ),
    ("wan/2-7-image", {"prompt": "a cat", "color_palette": [{"hex": "#FF0000"}] * 3}, "input.color_palette"),
    ("wan/2-7-image", {"prompt": "a cat", "bbox_list": [[0, 0, math.inf, 1]]}, "input.bbox_list"),
    ("wan/2-7-image-pro", {"prompt": "a cat", "resolution": "4K", "input_urls": [URL]}, "input.resolution"),
    ("topaz/image-upscale", {"image": URL, "upscale_factor": "2"}, "input.image"),
    ("topaz/image-upscale", {"image_url": URL, "upscale_factor": "3"}, "input.upscale_factor"),
    ("recraft/remove-background", {"image": "data:image/png;base64,iVBORw0KGgo="}, "input.image"),
    ("grok-imagine/image-to-image", {"image_urls": [URL] * 6}, "input.image_urls"),
]


@pytest.mark.parametrize(
    ("model", "input", "field"), BAD_INPUTS, ids=[f"{m}:{f}:{i}" for i, (m, _, f) in enumerate(BAD_INPUTS)]
)
def test_realistic_bad_inputs_are_refused_naming_their_field(model: str, input: Any, field: str) -> None:
    err = refused(model, input)
    assert type(err) is KontextValidationError
    assert err.field == field
    assert model in str(err)


@pytest.mark.parametrize("slug", ["nano_banana_pro", "Nano-Banana-Pro", "flux-2/pro", "kontext-pro", "gpt-image-2"])
def test_realistic_bad_model_slugs_are_refused_as_unknown_models(slug: str) -> None:
    with pytest.raises(KontextUnknownModelError) as err:
        validate_input(slug, {"prompt": "a cat"})
    assert err.value.field == "model"
    assert slug in str(err.value)
