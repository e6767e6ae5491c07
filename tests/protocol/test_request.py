"""Every validation rule of the generate request, table-driven: bad input names its field."""

from __future__ import annotations

from typing import Any

import pytest

from airflow_provider_kontext._protocol.request import GenerateRequest, check_http_url
from airflow_provider_kontext.exceptions import KontextValidationError

VALID: dict[str, Any] = {"prompt": "a red bicycle"}


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"prompt": ""}, "prompt"),
        ({"prompt": "   \n\t"}, "prompt"),
        ({"prompt": None}, "prompt"),
        ({"prompt": 42}, "prompt"),
        ({"prompt": ["a"]}, "prompt"),
        ({**VALID, "aspect_ratio": "16:21"}, "aspect_ratio"),
        ({**VALID, "aspect_ratio": "auto"}, "aspect_ratio"),
        ({**VALID, "aspect_ratio": "16x9"}, "aspect_ratio"),
        ({**VALID, "output_format": "webp"}, "output_format"),
        ({**VALID, "output_format": "JPEG"}, "output_format"),
        ({**VALID, "model": "flux-kontext-ultra"}, "model"),
        ({**VALID, "model": "flux/kontext"}, "model"),
        ({**VALID, "safety_tolerance": 7}, "safety_tolerance"),
        ({**VALID, "safety_tolerance": -1}, "safety_tolerance"),
        ({**VALID, "safety_tolerance": 2.5}, "safety_tolerance"),
        ({**VALID, "safety_tolerance": "2"}, "safety_tolerance"),
        ({**VALID, "safety_tolerance": True}, "safety_tolerance"),
        ({**VALID, "input_image": "https://x.test/a.png", "safety_tolerance": 3}, "safety_tolerance"),
        ({**VALID, "input_image": "https://x.test/a.png", "safety_tolerance": 6}, "safety_tolerance"),
        ({**VALID, "input_image": "ftp://x.test/a.png"}, "input_image"),
        ({**VALID, "input_image": "/local/path.png"}, "input_image"),
        ({**VALID, "input_image": "data:image/png;base64,AAAA"}, "input_image"),
        ({**VALID, "input_image": "https://"}, "input_image"),
        ({**VALID, "input_image": "https://x.test/a b.png"}, "input_image"),
        ({**VALID, "input_image": ""}, "input_image"),
        ({**VALID, "input_image": 12}, "input_image"),
        ({**VALID, "callback_url": "localhost:8080/cb"}, "callback_url"),
        ({**VALID, "callback_url": "javascript:alert(1)"}, "callback_url"),
        ({**VALID, "enable_translation": "yes"}, "enable_translation"),
        ({**VALID, "upload_cn": 1}, "upload_cn"),
        ({**VALID, "prompt_upsampling": "false"}, "prompt_upsampling"),
        ({**VALID, "watermark": ""}, "watermark"),
        ({**VALID, "watermark": 5}, "watermark"),
    ],
)
def test_invalid_fields_raise_naming_the_field(fields: dict[str, Any], field: str) -> None:
    with pytest.raises(KontextValidationError) as err:
        GenerateRequest.from_fields(**fields)
    assert err.value.field == field
    assert field in str(err.value)


@pytest.mark.parametrize("name", ["imageUrl", "image_url", "inputImage", "seed", "num_images", "aspectRatio"])
def test_unknown_fields_are_refused_not_ignored(name: str) -> None:
    with pytest.raises(KontextValidationError) as err:
        GenerateRequest.from_fields("edit this", **{name: "x"})
    assert err.value.field == name


def test_payload_uses_kie_names_and_leaves_unset_fields_out() -> None:
    request = GenerateRequest.from_fields(
        "make it blue",
        input_image="https://img.test/in.png",
        aspect_ratio="1:1",
        output_format="png",
        model="flux-kontext-max",
        prompt_upsampling=False,
        enable_translation=False,
        upload_cn=False,
        callback_url="https://hooks.test/kie",
        safety_tolerance=2,
        watermark="brand",
    )
    assert request.is_edit
    assert request.to_payload() == {
        "prompt": "make it blue",
        "enableTranslation": False,
        "uploadCn": False,
        "inputImage": "https://img.test/in.png",
        "aspectRatio": "1:1",
        "outputFormat": "png",
        "promptUpsampling": False,
        "model": "flux-kontext-max",
        "callBackUrl": "https://hooks.test/kie",
        "safetyTolerance": 2,
        "watermark": "brand",
    }
    assert GenerateRequest.from_fields("a cat").to_payload() == {"prompt": "a cat"}
    assert not GenerateRequest.from_fields("a cat").is_edit


@pytest.mark.parametrize("tolerance", [0, 3, 6])
def test_generate_accepts_tolerance_up_to_six(tolerance: int) -> None:
    assert GenerateRequest.from_fields("x", safety_tolerance=tolerance).safety_tolerance == tolerance


@pytest.mark.parametrize("tolerance", [0, 1, 2])
def test_edit_accepts_tolerance_up_to_two(tolerance: int) -> None:
    GenerateRequest.from_fields("x", input_image="http://127.0.0.1:9/a.png", safety_tolerance=tolerance)


@pytest.mark.parametrize("ratio", ["21:9", "16:9", "4:3", "1:1", "3:4", "9:16"])
def test_every_documented_aspect_ratio_is_accepted(ratio: str) -> None:
    GenerateRequest.from_fields("x", aspect_ratio=ratio)


def test_check_http_url_returns_the_url() -> None:
    assert check_http_url("https://a.test/x?y=1", field="url") == "https://a.test/x?y=1"
