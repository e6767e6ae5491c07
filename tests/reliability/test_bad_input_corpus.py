"""The bad-input corpus: every invalid input raises a typed error naming its field, and nothing is sent.

Each case runs the real operator (rendered values set as Airflow would after templating) against
the emulator, then checks the emulator received no request at all: nothing sent, nothing paid.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jinja2
import pytest

from airflow_provider_kontext.emulator import EmulatorServer
from airflow_provider_kontext.exceptions import KontextValidationError
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
