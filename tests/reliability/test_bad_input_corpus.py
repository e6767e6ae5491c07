"""The bad-input corpus: every invalid input raises a typed error naming its field, and nothing is sent.

Each case runs the real operator (rendered values set as Airflow would after templating) against
the emulator, then checks the emulator received no request at all: nothing sent, nothing paid.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jinja2
import pytest

from airflow_provider_kontext.emulator import EmulatorServer
from airflow_provider_kontext.exceptions import KontextUnknownModelError, KontextValidationError
from airflow_provider_kontext.operators.batch import KontextBatchGenerateOperator
from airflow_provider_kontext.operators.generate import KontextGenerateOperator
from airflow_provider_kontext.sensors.task import KontextTaskSensor
from reliability.fake_airflow import task_context

EDIT = {"input_image": "https://img.test/in.png"}

# (case id, rendered operator fields, the field the error must name)
SINGLE: list[tuple[str, dict[str, Any], str]] = [
    ("empty prompt", {"prompt": ""}, "prompt"),
    ("whitespace prompt", {"prompt": " \n\t "}, "prompt"),
    (
        "prompt renders empty",
        {"prompt": jinja2.Template("{{ params.get('subject', '') }}").render(params={})},
        "prompt",
    ),
    ("prompt not a string", {"prompt": 42}, "prompt"),
    ("prompt is a list", {"prompt": ["a"]}, "prompt"),
    ("aspect ratio not in enum", {"aspect_ratio": "16:21"}, "aspect_ratio"),
    ("aspect ratio auto", {"aspect_ratio": "auto"}, "aspect_ratio"),
    ("aspect ratio wrong type", {"aspect_ratio": 1.77}, "aspect_ratio"),
    ("output format webp", {"output_format": "webp"}, "output_format"),
    ("output format upper case", {"output_format": "PNG"}, "output_format"),
    ("model unknown", {"model": "flux-kontext-dev"}, "model"),
    ("model market name", {"model": "flux/kontext"}, "model"),
    ("tolerance above 6", {"safety_tolerance": 7}, "safety_tolerance"),
    ("tolerance negative", {"safety_tolerance": -1}, "safety_tolerance"),
    ("tolerance float", {"safety_tolerance": 1.5}, "safety_tolerance"),
    ("tolerance string", {"safety_tolerance": "2"}, "safety_tolerance"),
    ("tolerance bool", {"safety_tolerance": True}, "safety_tolerance"),
    ("tolerance 3 for an edit", {**EDIT, "safety_tolerance": 3}, "safety_tolerance"),
    ("tolerance 6 for an edit", {**EDIT, "safety_tolerance": 6}, "safety_tolerance"),
    ("input image ftp", {"input_image": "ftp://img.test/in.png"}, "input_image"),
    ("input image s3 string", {"input_image": "s3://bucket/in.png"}, "input_image"),
    ("input image data uri", {"input_image": "data:image/png;base64,AAAA"}, "input_image"),
    ("input image https without host", {"input_image": "https://"}, "input_image"),
    ("input image with spaces", {"input_image": "https://img.test/a b.png"}, "input_image"),
    ("input image empty", {"input_image": ""}, "input_image"),
    ("input image number", {"input_image": 7}, "input_image"),
    ("input image missing file", {"input_image": "/nonexistent/kontext/in.png"}, "input_image"),
    ("callback not a URL", {"callback_url": "localhost:8080/cb"}, "callback_url"),
    ("callback javascript", {"callback_url": "javascript:alert(1)"}, "callback_url"),
    ("translation not bool", {"enable_translation": "yes"}, "enable_translation"),
    ("upload_cn not bool", {"upload_cn": 1}, "upload_cn"),
    ("upsampling not bool", {"prompt_upsampling": "false"}, "prompt_upsampling"),
    ("watermark empty", {"watermark": ""}, "watermark"),
    ("output path http", {"output_path": "http://example.test/out"}, "output_path"),
    ("output path relative", {"output_path": "relative/dir"}, "output_path"),
    ("output path empty", {"output_path": ""}, "output_path"),
    (
        "file name escapes",
        {"output_path": "file:///tmp/kontext-out", "output_file_name": "../{kie_task_id}.{ext}"},
        "output_path",
    ),
]


@pytest.mark.parametrize(("case", "fields", "field"), SINGLE, ids=[case for case, _, _ in SINGLE])
def test_single_operator_bad_input(emulator: EmulatorServer, case: str, fields: dict[str, Any], field: str) -> None:
    op = KontextGenerateOperator(task_id="generate", prompt="{{ params.prompt }}", poll_interval=0.1)
    rendered = {"prompt": "a valid prompt", **fields}
    for name, value in rendered.items():
        setattr(op, name, value)  # what template rendering would leave on the operator
    with pytest.raises(KontextValidationError) as raised:
        op.execute(task_context())
    assert raised.value.field == field, case
    assert field in str(raised.value)
    assert sum(emulator.stats()["requests"].values()) == 0, f"{case}: a request was sent"


BATCH: list[tuple[str, Any, str]] = [
    ("not a list", "a prompt", "requests"),
    ("empty list", [], "requests"),
    ("item not a dict", [{"prompt": "ok"}, "nope"], "requests[1]"),
    ("item without prompt", [{"prompt": "ok"}, {"model": "flux-kontext-pro"}], "requests[1].prompt"),
    ("unknown field imageUrl", [{"prompt": "ok", "imageUrl": "https://img.test/a.png"}], "requests[0].imageUrl"),
    ("camelCase field", [{"prompt": "ok", "aspectRatio": "1:1"}], "requests[0].aspectRatio"),
    (
        "last item bad",
        [{"prompt": "a"}, {"prompt": "b"}, {"prompt": "c", "output_format": "gif"}],
        "requests[2].output_format",
    ),
]


@pytest.mark.parametrize(("case", "requests", "field"), BATCH, ids=[case for case, _, _ in BATCH])
def test_batch_bad_input(emulator: EmulatorServer, case: str, requests: Any, field: str) -> None:
    op = KontextBatchGenerateOperator(task_id="batch", requests=[{"prompt": "{{ params.p }}"}])
    op.requests = requests
    with pytest.raises(KontextValidationError) as raised:
        op.execute(task_context())
    assert raised.value.field == field, case
    assert sum(emulator.stats()["requests"].values()) == 0


@pytest.mark.parametrize("ids", ["", "   ", [], ["ok", ""], [None]], ids=repr)
def test_sensor_bad_task_ids(emulator: EmulatorServer, ids: Any) -> None:
    sensor = KontextTaskSensor(task_id="wait", kie_task_ids="{{ x }}", deferrable=True)
    sensor.kie_task_ids = ids
    with pytest.raises(KontextValidationError):
        sensor.execute(task_context())
    assert sum(emulator.stats()["requests"].values()) == 0


def test_corpus_is_big_enough() -> None:
    assert len(SINGLE) + len(BATCH) >= 30


def test_unusable_output_path_object(emulator: EmulatorServer, tmp_path: Path) -> None:
    with pytest.raises(KontextValidationError) as raised:
        KontextGenerateOperator(task_id="g", prompt="x", output_path=12345)
    assert raised.value.field == "output_path"


# --- Market models: a model of the catalog and its input, through the same two operators ---
#
# The same promise as above for kie's Market jobs API: a realistic mistake in ``model`` or
# ``input`` is refused with a KontextValidationError naming the field (``input.<name>``, or the
# operator argument), whether the DAG file states it (refused when the DAG is parsed) or a
# template renders it (refused by ``execute``), and the emulator sees no request at all.

URL = "https://img.test/in.png"
FOX = "a red fox in fresh snow, morning light"
FLUX2 = "flux-2/pro-text-to-image"
FLUX2_INPUT: dict[str, Any] = {"prompt": FOX, "aspect_ratio": "1:1", "resolution": "1K"}
FLUX2_EDIT = "flux-2/pro-image-to-image"
FLUX2_EDIT_INPUT: dict[str, Any] = {**FLUX2_INPUT, "input_urls": [URL]}
NANO_EDIT = "google/nano-banana-edit"
NANO_EDIT_INPUT: dict[str, Any] = {"prompt": "make the sky stormy", "image_urls": [URL]}
GPT2 = "gpt-image-2-text-to-image"
WAN = "wan/2-7-image"
MISSING_FILE = "/nonexistent/kontext/in.png"


def _urls(count: int) -> list[str]:
    return [f"https://img.test/in-{index}.png" for index in range(count)]


# (case id, rendered operator fields, the field the error must name)
MARKET_SINGLE: list[tuple[str, dict[str, Any], str]] = [
    # Enum values in the wrong case or spelling: kie matches them exactly.
    ("resolution 2k lower case", {"model": FLUX2, "input": {**FLUX2_INPUT, "resolution": "2k"}}, "input.resolution"),
    (
        "aspect ratio with a dash",
        {"model": FLUX2, "input": {**FLUX2_INPUT, "aspect_ratio": "16-9"}},
        "input.aspect_ratio",
    ),
    (
        "seedream quality capitalised",
        {"model": "seedream/4.5-text-to-image", "input": {"prompt": FOX, "aspect_ratio": "1:1", "quality": "High"}},
        "input.quality",
    ),
    # Numbers and booleans of the wrong JSON type.
    (
        "max_images as a string",
        {"model": "bytedance/seedream-v4-text-to-image", "input": {"prompt": FOX, "max_images": "2"}},
        "input.max_images",
    ),
    (
        "guidance_scale as a string",
        {"model": "qwen/text-to-image", "input": {"prompt": FOX, "guidance_scale": "2.5"}},
        "input.guidance_scale",
    ),
    ("wan n as a float", {"model": WAN, "input": {"prompt": FOX, "n": 2.0}}, "input.n"),
    ("nsfw_checker as 0", {"model": FLUX2, "input": {**FLUX2_INPUT, "nsfw_checker": 0}}, "input.nsfw_checker"),
    (
        "enable_pro as 1",
        {"model": "grok-imagine/text-to-image", "input": {"prompt": FOX, "enable_pro": 1}},
        "input.enable_pro",
    ),
    (
        "expand_prompt as the string true",
        {"model": "ideogram/v3-text-to-image", "input": {"prompt": FOX, "expand_prompt": "true"}},
        "input.expand_prompt",
    ),
    # Required fields left out, or rendered empty.
    ("resolution missing", {"model": FLUX2, "input": {"prompt": FOX, "aspect_ratio": "1:1"}}, "input.resolution"),
    ("edit without its images", {"model": NANO_EDIT, "input": {"prompt": "make it blue"}}, "input.image_urls"),
    (
        "ideogram edit without its mask",
        {"model": "ideogram/v3-edit", "input": {"prompt": "remove the car", "image_url": URL}},
        "input.mask_url",
    ),
    (
        "prompt renders empty",
        {
            "model": FLUX2,
            "input": {**FLUX2_INPUT, "prompt": jinja2.Template("{{ params.get('s', '') }}").render(params={})},
        },
        "input.prompt",
    ),
    ("input empty", {"model": FLUX2, "input": {}}, "input.prompt"),
    # Sizes: prompts and image lists.
    ("prompt over 5000 characters", {"model": FLUX2, "input": {**FLUX2_INPUT, "prompt": FOX * 150}}, "input.prompt"),
    (
        "qwen2 prompt over 800 characters",
        {"model": "qwen2/text-to-image", "input": {"prompt": FOX * 25}},
        "input.prompt",
    ),
    ("prompt under 3 characters", {"model": FLUX2, "input": {**FLUX2_INPUT, "prompt": "ox"}}, "input.prompt"),
    (
        "11 image urls, 10 allowed",
        {"model": NANO_EDIT, "input": {**NANO_EDIT_INPUT, "image_urls": _urls(11)}},
        "input.image_urls",
    ),
    (
        "9 input urls, 8 allowed",
        {"model": FLUX2_EDIT, "input": {**FLUX2_EDIT_INPUT, "input_urls": _urls(9)}},
        "input.input_urls",
    ),
    ("input urls empty", {"model": FLUX2_EDIT, "input": {**FLUX2_EDIT_INPUT, "input_urls": []}}, "input.input_urls"),
    # Image fields: what kie cannot fetch, and the wrong shape.
    (
        "s3 string in image_urls",
        {"model": NANO_EDIT, "input": {**NANO_EDIT_INPUT, "image_urls": ["s3://bucket/in.png"]}},
        "input.image_urls",
    ),
    (
        "gs string in image_url",
        {"model": "qwen/image-edit", "input": {"prompt": "make it blue", "image_url": "gs://bucket/in.png"}},
        "input.image_url",
    ),
    (
        "ftp url in image_input",
        {"model": "nano-banana-pro", "input": {"prompt": FOX, "image_input": ["ftp://img.test/a.png"]}},
        "input.image_input",
    ),
    (
        "second url without a host",
        {"model": NANO_EDIT, "input": {**NANO_EDIT_INPUT, "image_urls": [URL, "https://"]}},
        "input.image_urls",
    ),
    (
        "one url where a list is wanted",
        {"model": NANO_EDIT, "input": {**NANO_EDIT_INPUT, "image_urls": URL}},
        "input.image_urls",
    ),
    (
        "local file missing",
        {"model": NANO_EDIT, "input": {**NANO_EDIT_INPUT, "image_urls": [URL, MISSING_FILE]}},
        "input.image_urls",
    ),
    # Field names kie does not know: it would ignore them, and bill a different image.
    (
        "image_url for image_urls",
        {"model": NANO_EDIT, "input": {"prompt": "make it blue", "image_url": URL}},
        "input.image_url",
    ),
    (
        "camelCase aspectRatio",
        {"model": FLUX2, "input": {"prompt": FOX, "aspectRatio": "1:1", "resolution": "1K"}},
        "input.aspectRatio",
    ),
    (
        "num_images on a one-image model",
        {"model": "nano-banana-pro", "input": {"prompt": FOX, "num_images": 2}},
        "input.num_images",
    ),
    # Cross-field rules kie enforces only after queueing the task.
    (
        "gpt image 2 at 4K and 1:1",
        {"model": GPT2, "input": {"prompt": FOX, "aspect_ratio": "1:1", "resolution": "4K"}},
        "input.resolution",
    ),
    (
        "gpt image 2 auto ratio at 2K",
        {"model": GPT2, "input": {"prompt": FOX, "aspect_ratio": "auto", "resolution": "2K"}},
        "input.resolution",
    ),
    ("wan n 6 without a sequence", {"model": WAN, "input": {"prompt": FOX, "n": 6}}, "input.n"),
    ("wan n 13 in a sequence", {"model": WAN, "input": {"prompt": FOX, "enable_sequential": True, "n": 13}}, "input.n"),
    # The model.
    ("model typo", {"model": "flux-2/pro-text2image", "input": FLUX2_INPUT}, "model"),
    ("model in capitals", {"model": "Flux-2/Pro-Text-To-Image", "input": FLUX2_INPUT}, "model"),
    ("uncatalogued model without the opt-out", {"model": "ideogram/v3-reframe", "input": {"image_url": URL}}, "model"),
    ("kontext model with input", {"model": "flux-kontext-pro", "input": {"prompt": FOX}}, "model"),
    ("model missing", {"model": None, "input": FLUX2_INPUT}, "model"),
    # Flux Kontext arguments beside a Market input.
    ("aspect_ratio beside input", {"model": FLUX2, "input": FLUX2_INPUT, "aspect_ratio": "1:1"}, "aspect_ratio"),
    ("input_image beside input", {"model": FLUX2_EDIT, "input": FLUX2_EDIT_INPUT, "input_image": URL}, "input_image"),
    # Not an input at all.
    ("input a list", {"model": FLUX2, "input": [FLUX2_INPUT]}, "input"),
    ("input rendered as JSON text", {"model": FLUX2, "input": json.dumps(FLUX2_INPUT)}, "input"),
    ("input None", {"model": FLUX2, "input": None}, "input"),
    ("input None beside a prompt", {"model": FLUX2, "input": None, "prompt": FOX}, "input"),
]

#: Cases only ``execute`` can see: a local file is looked for on the worker, not where the DAG is parsed.
FOUND_AT_RUN = {"local file missing", "local file missing in the second edit"}
#: Cases refused as a model the catalog lacks: the subclass a caller catches to tell them from a bad field.
UNKNOWN_MODEL = {
    "model typo",
    "model in capitals",
    "uncatalogued model without the opt-out",
    "kontext model with input",
    "unknown model in the third item",
}


def _market_cases(cases: list[tuple[str, Any, str]]) -> list[Any]:
    """Each case twice: stated in the DAG file (refused at parse) and rendered from templates (refused by execute)."""
    return [
        pytest.param(case, fields, field, when, id=f"{when}: {case}")
        for case, fields, field in cases
        for when in ("parse", "run")
        if not (when == "parse" and case in FOUND_AT_RUN)
    ]


def _refused(case: str, when: str, build: Any, render: Any) -> KontextValidationError:
    """The error of building the operator (``parse``), or of executing it once templates rendered (``run``)."""
    act = build if when == "parse" else lambda: render().execute(task_context())
    with pytest.raises(KontextValidationError) as raised:
        act()
    assert type(raised.value) is (KontextUnknownModelError if case in UNKNOWN_MODEL else KontextValidationError)
    return raised.value


@pytest.mark.parametrize(("case", "fields", "field", "when"), _market_cases(MARKET_SINGLE))
def test_market_bad_input(emulator: EmulatorServer, case: str, fields: dict[str, Any], field: str, when: str) -> None:
    def render() -> KontextGenerateOperator:
        op = KontextGenerateOperator(
            task_id="generate", model="{{ params.model }}", input={"prompt": "{{ params.prompt }}"}, poll_interval=0.1
        )
        for name, value in fields.items():
            setattr(op, name, value)  # what template rendering would leave on the operator
        return op

    error = _refused(case, when, lambda: KontextGenerateOperator(task_id="generate", **fields), render)
    assert error.field == field, case
    assert str(error), case
    assert sum(emulator.stats()["requests"].values()) == 0, f"{case}: a request was sent"


def _flux2(**input: Any) -> dict[str, Any]:
    return {"model": FLUX2, "input": {**FLUX2_INPUT, **input}}


MARKET_BATCH: list[tuple[str, Any, str]] = [
    ("second item's resolution lower case", [_flux2(), _flux2(resolution="2k")], "requests[1].input.resolution"),
    ("market then kontext item", [_flux2(), {"prompt": FOX}], "requests[1]"),
    ("kontext then market item", [{"prompt": FOX}, _flux2()], "requests[1]"),
    ("prompt beside input", [{**_flux2(), "prompt": FOX}], "requests[0].prompt"),
    ("aspect_ratio beside input", [_flux2(), {**_flux2(), "aspect_ratio": "1:1"}], "requests[1].aspect_ratio"),
    ("input without a model", [{"input": FLUX2_INPUT}], "requests[0].model"),
    ("market model without input", [_flux2(), {"model": FLUX2, "prompt": FOX}], "requests[1].input"),
    ("input None", [{"model": FLUX2, "input": None}], "requests[0].input"),
    ("input a string", [{"model": FLUX2, "input": "prompt=a red fox"}], "requests[0].input"),
    (
        "unknown model in the third item",
        [_flux2(), _flux2(), {"model": "flux-2/pro", "input": FLUX2_INPUT}],
        "requests[2].model",
    ),
    (
        "too many images in the last item",
        [
            {"model": NANO_EDIT, "input": NANO_EDIT_INPUT},
            {"model": NANO_EDIT, "input": {**NANO_EDIT_INPUT, "image_urls": _urls(11)}},
        ],
        "requests[1].input.image_urls",
    ),
    ("wan n too big", [{"model": WAN, "input": {"prompt": FOX, "n": 8}}], "requests[0].input.n"),
    (
        "s3 path in the second edit",
        [
            {"model": NANO_EDIT, "input": NANO_EDIT_INPUT},
            {"model": NANO_EDIT, "input": {**NANO_EDIT_INPUT, "image_urls": ["s3://b/in.png"]}},
        ],
        "requests[1].input.image_urls",
    ),
    (
        "local file missing in the second edit",
        [
            {"model": NANO_EDIT, "input": NANO_EDIT_INPUT},
            {"model": NANO_EDIT, "input": {**NANO_EDIT_INPUT, "image_urls": [MISSING_FILE]}},
        ],
        "requests[1].input.image_urls",
    ),
]


@pytest.mark.parametrize(("case", "requests", "field", "when"), _market_cases(MARKET_BATCH))
def test_market_batch_bad_input(emulator: EmulatorServer, case: str, requests: Any, field: str, when: str) -> None:
    def render() -> KontextBatchGenerateOperator:
        op = KontextBatchGenerateOperator(
            task_id="batch", requests=[{"model": "{{ params.model }}", "input": {"prompt": "{{ params.p }}"}}]
        )
        op.requests = requests
        return op

    error = _refused(case, when, lambda: KontextBatchGenerateOperator(task_id="batch", requests=requests), render)
    assert error.field == field, case
    assert sum(emulator.stats()["requests"].values()) == 0, f"{case}: a request was sent"


def test_market_corpus_is_big_enough() -> None:
    assert len(MARKET_SINGLE) + len(MARKET_BATCH) >= 30
