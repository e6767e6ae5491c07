"""The task record: kie's loose typing absorbed, each terminal state mapped to its typed error."""

from __future__ import annotations

import json
from typing import Any

import pytest

from airflow_provider_kontext import exceptions as exc
from airflow_provider_kontext._protocol.record import TaskRecord, TaskStatus, normalize_time, parse_record


def record_data(**overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "taskId": "task12345",
        "paramJson": json.dumps({"prompt": "a fox", "aspectRatio": "1:1", "model": "flux-kontext-max"}),
        "completeTime": "2024-03-20T10:30:00Z",
        "response": {"originImageUrl": "https://o.test/o.png", "resultImageUrl": "https://r.test/r.png"},
        "successFlag": 1,
        "errorCode": None,
        "errorMessage": "",
        "createTime": "2024-03-20T10:25:00Z",
    }
    data.update(overrides)
    return data


def test_success_record() -> None:
    record = parse_record(record_data(), task_id="task12345")
    assert record.status is TaskStatus.SUCCESS
    assert record.succeeded
    assert record.failure() is None
    assert record.result_image_url == "https://r.test/r.png"
    assert record.origin_image_url == "https://o.test/o.png"
    assert (record.prompt, record.model, record.aspect_ratio) == ("a fox", "flux-kontext-max", "1:1")
    assert record.create_time == "2024-03-20T10:25:00+00:00"
    assert record.complete_time == "2024-03-20T10:30:00+00:00"
    assert record.error_message is None


@pytest.mark.parametrize(
    ("flag", "status"),
    [
        (0, TaskStatus.GENERATING),
        ("0", TaskStatus.GENERATING),
        (1, TaskStatus.SUCCESS),
        (2, TaskStatus.CREATE_TASK_FAILED),
        (3, TaskStatus.GENERATE_FAILED),
    ],
)
def test_success_flag_mapping(flag: Any, status: TaskStatus) -> None:
    assert parse_record(record_data(successFlag=flag, response=None), task_id="t").status is status


@pytest.mark.parametrize("flag", [None, 4, -1, "x", True, 1.5])
def test_unknown_success_flag_is_a_response_error(flag: Any) -> None:
    with pytest.raises(exc.KontextResponseError):
        parse_record(record_data(successFlag=flag), task_id="t")


def test_running_record_has_no_urls() -> None:
    record = parse_record(record_data(successFlag=0, response=None, completeTime=None), task_id="t")
    assert not record.is_terminal
    assert record.result_image_url is None
    assert record.failure() is None


@pytest.mark.parametrize(
    ("overrides", "error"),
    [
        (
            {"successFlag": 3, "errorCode": 400, "errorMessage": "Your prompt was flagged"},
            exc.KontextContentPolicyError,
        ),
        ({"successFlag": 3, "errorCode": "400", "errorMessage": "x"}, exc.KontextContentPolicyError),
        ({"successFlag": 3, "errorCode": 500, "errorMessage": "PROHIBITED content"}, exc.KontextContentPolicyError),
        (
            {"successFlag": 3, "errorCode": 501, "errorMessage": "Image generation task failed"},
            exc.KontextGenerationFailedError,
        ),
        ({"successFlag": 3, "errorCode": 422, "errorMessage": "failed"}, exc.KontextGenerationFailedError),
        ({"successFlag": 3, "errorCode": None, "errorMessage": ""}, exc.KontextGenerationFailedError),
        ({"successFlag": 2, "errorCode": 500, "errorMessage": "internal"}, exc.KontextTaskCreateFailedError),
        ({"successFlag": 1, "response": {"originImageUrl": "https://o.test/o"}}, exc.KontextMissingResultError),
        ({"successFlag": 1, "response": {"resultImageUrl": ""}}, exc.KontextMissingResultError),
        ({"successFlag": 1, "response": None}, exc.KontextMissingResultError),
    ],
)
def test_failed_records_map_to_typed_errors(overrides: dict[str, Any], error: type[Exception]) -> None:
    record = parse_record(record_data(**{"response": None, **overrides}), task_id="task12345")
    assert record.is_terminal
    assert not record.succeeded
    failure = record.failure()
    assert type(failure) is error
    assert "task12345" in str(failure)
    assert failure is not None and failure.kie_task_id == "task12345"


def test_error_code_types_are_kept() -> None:
    assert parse_record(record_data(successFlag=3, errorCode="E_BAD"), task_id="t").error_code == "E_BAD"
    assert parse_record(record_data(successFlag=3, errorCode="501"), task_id="t").error_code == 501


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (1710930300000, "2024-03-20T10:25:00+00:00"),
        ("1710930300000", "2024-03-20T10:25:00+00:00"),
        (1710930300, "2024-03-20T10:25:00+00:00"),
        ("2024-03-20T10:25:00Z", "2024-03-20T10:25:00+00:00"),
        ("2024-03-20 10:25:00", "2024-03-20T10:25:00+00:00"),
        ("yesterday", "yesterday"),
        (None, None),
        ("", None),
    ],
)
def test_times_accept_iso_and_epoch_ms(value: Any, expected: str | None) -> None:
    assert normalize_time(value) == expected


def test_response_as_json_string_and_param_json_as_dict() -> None:
    record = parse_record(
        record_data(response=json.dumps({"resultImageUrl": "https://r.test/x"}), paramJson={"prompt": "p"}),
        task_id="t",
    )
    assert record.result_image_url == "https://r.test/x"
    assert record.prompt == "p"


@pytest.mark.parametrize("data", [None, [], "x"])
def test_non_object_data_is_a_response_error(data: Any) -> None:
    with pytest.raises(exc.KontextResponseError):
        parse_record(data, task_id="t")


def test_dict_round_trip_is_plain_json() -> None:
    record = parse_record(record_data(), task_id="task12345")
    data = record.to_dict()
    assert json.loads(json.dumps(data)) == data
    assert data["status"] == "SUCCESS"
    assert TaskRecord.from_dict({**data, "added_in_a_later_version": 1}) == record
