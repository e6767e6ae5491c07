"""The Market jobs API in the protocol core: its requests, codes, records, and the rules it shares with Flux Kontext."""

from __future__ import annotations

import json
from typing import Any

import pytest

from airflow_provider_kontext import exceptions as exc
from airflow_provider_kontext._protocol.envelope import (
    Endpoint,
    TransportFailure,
    market_create_request,
    market_record_request,
    parse_generate_response,
    parse_market_create_response,
    parse_market_record_response,
    parse_record_info_response,
    transport_error,
)
from airflow_provider_kontext._protocol.polling import TaskWaiter, WaitResult, WaitStatus
from airflow_provider_kontext._protocol.record import (
    ApiFamily,
    TaskRecord,
    TaskStatus,
    looks_like_moderation,
    parse_market_record,
    parse_record,
)
from airflow_provider_kontext._protocol.retry import TaskRetry, is_retryable, task_retry_advice

TASK = "e989621f54392584b05867f87b160672"
PROMPT = "a red kite over the dunes"


def body(code: int, msg: str = "", data: object = None, *, msg_key: str = "msg") -> bytes:
    return json.dumps({"code": code, msg_key: msg, "data": data}).encode()


def market_data(**overrides: Any) -> dict[str, Any]:
    """A recordInfo ``data`` as kie documents it: ``param`` and ``resultJson`` as JSON strings, times in ms."""
    data: dict[str, Any] = {
        "taskId": TASK,
        "model": "nano-banana-pro",
        "state": "success",
        "param": json.dumps(
            {
                "model": "nano-banana-pro",
                "callBackUrl": "https://hooks.test/kie",
                "input": {"prompt": PROMPT, "aspect_ratio": "16:9", "output_format": "png"},
            }
        ),
        "resultJson": json.dumps({"resultUrls": ["https://tempfile.test/a.png"]}),
        "failCode": "",
        "failMsg": "",
        "costTime": 8,
        "completeTime": 1755599644000,
        "createTime": 1755599634000,
        "updateTime": 1755599644000,
        "creditsConsumed": 18,
    }
    data.update(overrides)
    return data


# ----------------------------------------------------------------------------- requests


def test_create_request_body_is_model_and_input_only_without_a_callback() -> None:
    request = market_create_request("nano-banana-pro", {"prompt": PROMPT})
    assert (request.endpoint, request.method, request.path) == (
        Endpoint.MARKET_CREATE,
        "POST",
        "/api/v1/jobs/createTask",
    )
    assert request.json_body == {"model": "nano-banana-pro", "input": {"prompt": PROMPT}}
    assert dict(request.params) == {}


def test_create_request_sends_callback_url_under_kies_name_only_when_given() -> None:
    request = market_create_request("nano-banana-pro", {"prompt": PROMPT}, "https://hooks.test/kie")
    assert request.json_body == {
        "model": "nano-banana-pro",
        "input": {"prompt": PROMPT},
        "callBackUrl": "https://hooks.test/kie",
    }


def test_create_request_sends_the_catalogs_normalized_input() -> None:
    # qwen/image-edit types num_images as a string: an int is accepted and sent as kie wants it.
    request = market_create_request(
        "qwen/image-edit", {"prompt": PROMPT, "image_url": "https://in.test/x.png", "num_images": 2}
    )
    assert request.json_body is not None
    assert request.json_body["input"]["num_images"] == "2"


@pytest.mark.parametrize(
    ("model", "input", "callback_url", "field"),
    [
        ("nano-banana-pro", {"prompt": PROMPT, "image_urls": ["https://in.test/x.png"]}, None, "input.image_urls"),
        ("nano-banana-pro", {}, None, "input.prompt"),
        ("nano-banana-pro", {"prompt": PROMPT}, "ftp://hooks.test/kie", "callback_url"),
        ("", {"prompt": PROMPT}, None, "model"),
    ],
    ids=["unknown-input-field", "missing-prompt", "bad-callback", "empty-model"],
)
def test_create_request_refuses_what_kie_would_ignore_or_refuse_before_anything_is_sent(
    model: str, input: dict[str, Any], callback_url: str | None, field: str
) -> None:
    with pytest.raises(exc.KontextValidationError) as raised:
        market_create_request(model, input, callback_url)
    assert raised.value.field == field


def test_create_request_opt_out_sends_a_model_the_catalog_lacks() -> None:
    with pytest.raises(exc.KontextUnknownModelError):
        market_create_request("qwen3/text-to-image", {"prompt": PROMPT})
    request = market_create_request("qwen3/text-to-image", {"prompt": PROMPT, "resolution": "2K"}, validate=False)
    assert request.json_body == {"model": "qwen3/text-to-image", "input": {"prompt": PROMPT, "resolution": "2K"}}


def test_record_request_asks_for_one_task_by_id() -> None:
    request = market_record_request(f" {TASK} ")
    assert (request.endpoint, request.method, request.path) == (
        Endpoint.MARKET_RECORD_INFO,
        "GET",
        "/api/v1/jobs/recordInfo",
    )
    assert dict(request.params) == {"taskId": TASK}
    assert request.json_body is None
    with pytest.raises(exc.KontextValidationError):
        market_record_request("  ")


# ----------------------------------------------------------------------------- codes and money

# (code, error on a create, error on a status read, retried on a create, retried on a read)
CODE_TABLE = [
    (401, exc.KontextAuthError, exc.KontextAuthError, False, False),
    (402, exc.KontextInsufficientCreditsError, exc.KontextInsufficientCreditsError, False, False),
    (404, exc.KontextNotFoundError, exc.KontextNotFoundError, False, False),
    (422, exc.KontextValidationError, exc.KontextValidationError, False, False),
    (429, exc.KontextRateLimitError, exc.KontextRateLimitError, True, True),
    (433, exc.KontextKeyLimitError, exc.KontextKeyLimitError, False, False),
    (455, exc.KontextServiceUnavailableError, exc.KontextServiceUnavailableError, True, True),
    (500, exc.KontextSubmissionOutcomeUnknownError, exc.KontextServerError, False, True),
    (501, exc.KontextGenerationFailedError, exc.KontextGenerationFailedError, False, False),
    (505, exc.KontextFeatureDisabledError, exc.KontextFeatureDisabledError, False, False),
]


@pytest.mark.parametrize(("code", "on_create", "on_read", "retry_create", "retry_read"), CODE_TABLE)
@pytest.mark.parametrize("http_status", [200, 400, 500])
def test_every_market_code_is_a_typed_error_with_the_money_rules_of_a_create_or_a_read(
    code: int,
    on_create: type[exc.KontextError],
    on_read: type[exc.KontextError],
    retry_create: bool,
    retry_read: bool,
    http_status: int,
) -> None:
    with pytest.raises(exc.KontextError) as created:
        parse_market_create_response(http_status, body(code, "kie says no"))
    assert type(created.value) is on_create
    assert created.value.endpoint == "market-create"
    assert is_retryable(Endpoint.MARKET_CREATE, created.value) is retry_create

    with pytest.raises(exc.KontextError) as read:
        parse_market_record_response(http_status, body(code, "kie says no"), task_id=TASK)
    assert type(read.value) is on_read
    assert read.value.kie_task_id == TASK
    assert is_retryable(Endpoint.MARKET_RECORD_INFO, read.value) is retry_read


def test_the_two_creates_share_one_rule() -> None:
    assert Endpoint.MARKET_CREATE.creates_billable_work
    assert Endpoint.GENERATE.creates_billable_work
    assert not Endpoint.MARKET_RECORD_INFO.creates_billable_work
    for code in (401, 402, 422, 429, 433, 455, 500, 501, 505):
        errors = []
        for parse in (parse_generate_response, parse_market_create_response):
            with pytest.raises(exc.KontextError) as raised:
                parse(200, body(code, "no"))
            errors.append(raised.value)
        kontext, market = errors
        assert type(kontext) is type(market), code
        assert is_retryable(Endpoint.GENERATE, kontext) is is_retryable(Endpoint.MARKET_CREATE, market), code


def test_a_create_whose_answer_was_lost_is_not_resent() -> None:
    error = transport_error(Endpoint.MARKET_CREATE, TransportFailure.READ_TIMEOUT, "read timed out")
    assert isinstance(error, exc.KontextSubmissionOutcomeUnknownError)
    assert error.endpoint == "market-create"
    assert "market-create request may or may not have created a task" in str(error)
    assert not is_retryable(Endpoint.MARKET_CREATE, error)
    never_sent = transport_error(Endpoint.MARKET_CREATE, TransportFailure.CONNECT, "refused")
    assert is_retryable(Endpoint.MARKET_CREATE, never_sent)


def test_create_success_returns_the_task_id_and_a_success_without_one_is_ambiguous() -> None:
    assert parse_market_create_response(200, body(200, "success", {"taskId": f" {TASK} "})) == TASK
    with pytest.raises(exc.KontextSubmissionOutcomeUnknownError) as raised:
        parse_market_create_response(200, body(200, "success", {}))
    assert raised.value.endpoint == "market-create"


def test_the_key_limit_fails_an_airflow_retry_at_once() -> None:
    advice = task_retry_advice(exc.KontextKeyLimitError("433"))
    assert advice.action is TaskRetry.FAIL
    assert "limit" in (advice.reason or "")


def test_message_is_read_when_kie_sends_it_instead_of_msg() -> None:
    with pytest.raises(exc.KontextInsufficientCreditsError) as raised:
        parse_market_create_response(200, body(402, "Credits insufficient", msg_key="message"))
    assert raised.value.kie_message == "Credits insufficient"
    assert "Credits insufficient" in str(raised.value)


def test_an_unknown_or_unpublished_model_is_a_validation_error_naming_the_model_field() -> None:
    with pytest.raises(exc.KontextValidationError) as raised:
        parse_market_create_response(200, body(422, "The page does not exist or is not published"))
    assert raised.value.field == "model"
    assert raised.value.code == 422
    assert not is_retryable(Endpoint.MARKET_CREATE, raised.value)


@pytest.mark.parametrize(
    ("msg", "field"),
    [
        ("prompt is required", "input.prompt"),
        ("aspect_ratio is not within the range of allowed options", "input.aspect_ratio"),
        ("input.resolution is not within the range of allowed options", "input.resolution"),
        ("model is required", "model"),
        ("The value 'huge' is not within the range of allowed options", None),
    ],
)
def test_a_500_worded_as_validation_on_a_create_is_a_refusal_not_an_ambiguous_create(
    msg: str, field: str | None
) -> None:
    with pytest.raises(exc.KontextValidationError) as raised:
        parse_market_create_response(200, body(500, msg))
    assert not isinstance(raised.value, exc.KontextSubmissionOutcomeUnknownError)
    assert raised.value.field == field
    assert raised.value.code == 500
    assert not is_retryable(Endpoint.MARKET_CREATE, raised.value)


def test_the_validation_wording_rule_is_the_kontext_creates_too_with_its_field_names() -> None:
    with pytest.raises(exc.KontextValidationError) as raised:
        parse_generate_response(200, body(500, "aspectRatio is not within the range of allowed options"))
    assert raised.value.field == "aspect_ratio"


def test_a_plain_500_on_a_create_stays_ambiguous_and_a_worded_500_on_a_read_stays_retryable() -> None:
    with pytest.raises(exc.KontextSubmissionOutcomeUnknownError):
        parse_market_create_response(200, body(500, "Internal server error"))
    with pytest.raises(exc.KontextServerError) as raised:
        parse_market_record_response(200, body(500, "taskId is required"), task_id=TASK)
    assert is_retryable(Endpoint.MARKET_RECORD_INFO, raised.value)


def test_a_market_400_is_content_policy_only_when_its_text_says_so() -> None:
    with pytest.raises(exc.KontextValidationError):
        parse_market_create_response(200, body(400, "Invalid request parameters"))
    with pytest.raises(exc.KontextContentPolicyError):
        parse_market_create_response(200, body(400, "Your prompt violates our content policy"))
    # Flux Kontext documents 400 as a moderation refusal, whatever the text.
    with pytest.raises(exc.KontextContentPolicyError):
        parse_generate_response(200, body(400, "Invalid request parameters"))


# ----------------------------------------------------------------------------- status answers


def test_record_info_is_null_on_the_market_is_a_pending_market_task() -> None:
    record = parse_market_record_response(200, body(422, "recordInfo is null"), task_id=TASK)
    assert record.status is TaskStatus.PENDING
    assert record.api is ApiFamily.MARKET
    assert record.kie_task_id == TASK
    with pytest.raises(exc.KontextValidationError):
        parse_market_record_response(200, body(422, "validation error, see failMsg"), task_id=TASK)


def test_status_answer_gives_the_record() -> None:
    record = parse_market_record_response(200, body(200, "success", market_data()), task_id=TASK)
    assert record.succeeded
    assert record.result_image_urls == ("https://tempfile.test/a.png",)


@pytest.mark.parametrize(
    ("state", "status"),
    [
        ("waiting", TaskStatus.GENERATING),
        ("queuing", TaskStatus.GENERATING),
        ("generating", TaskStatus.GENERATING),
        ("success", TaskStatus.SUCCESS),
        ("fail", TaskStatus.GENERATE_FAILED),
        (" SUCCESS ", TaskStatus.SUCCESS),
    ],
)
def test_market_states_map_to_the_shared_statuses(state: str, status: TaskStatus) -> None:
    record = parse_market_record(market_data(state=state, resultJson=None), task_id=TASK)
    assert record.status is status
    assert record.is_terminal is (state.strip().lower() in ("success", "fail"))


@pytest.mark.parametrize("state", [None, "", "done", 1, ["success"]])
def test_an_unknown_state_is_a_response_error_not_a_guess(state: Any) -> None:
    with pytest.raises(exc.KontextResponseError):
        parse_market_record(market_data(state=state), task_id=TASK)


@pytest.mark.parametrize("data", [None, [], "success"])
def test_a_record_that_is_not_an_object_is_a_response_error(data: Any) -> None:
    with pytest.raises(exc.KontextResponseError):
        parse_market_record(data, task_id=TASK)


def test_a_success_record_keeps_prompt_model_times_and_credits() -> None:
    record = parse_market_record(market_data(), task_id=TASK)
    assert record.api is ApiFamily.MARKET
    assert (record.prompt, record.model, record.aspect_ratio, record.output_format) == (
        PROMPT,
        "nano-banana-pro",
        "16:9",
        "png",
    )
    assert record.create_time == "2025-08-19T10:33:54+00:00"
    assert record.complete_time == "2025-08-19T10:34:04+00:00"
    assert record.credits == 18.0
    assert (record.error_code, record.error_message) == (None, None)
    assert record.failure() is None


def test_param_and_result_json_are_read_as_objects_too() -> None:
    record = parse_market_record(
        market_data(
            param={"model": "google/nano-banana", "input": {"prompt": PROMPT}},
            resultJson={"resultUrls": ["https://tempfile.test/b.png"]},
            model=None,
        ),
        task_id=TASK,
    )
    assert record.prompt == PROMPT
    assert record.model == "google/nano-banana", "the model falls back to param.model"
    assert record.result_image_url == "https://tempfile.test/b.png"


@pytest.mark.parametrize(
    ("param", "result_json"),
    [
        ("{not json", "garbage"),
        ("[1, 2]", "[]"),
        (42, 42),
        (json.dumps({"input": "a string"}), json.dumps({"resultUrls": "not a list of urls"})),
        (json.dumps({"input": None}), json.dumps({"resultObject": {"text": "hi"}})),
    ],
)
def test_garbage_param_and_result_json_are_skipped_not_fatal(param: Any, result_json: Any) -> None:
    record = parse_market_record(market_data(state="generating", param=param, resultJson=result_json), task_id=TASK)
    assert record.status is TaskStatus.GENERATING
    assert record.prompt is None
    assert record.model == "nano-banana-pro"
    assert record.credits == 18.0


def test_a_result_url_that_is_a_bare_string_is_kept_and_junk_entries_are_dropped() -> None:
    record = parse_market_record(
        market_data(resultJson=json.dumps({"resultUrls": [None, "", 5, " https://tempfile.test/c.png "]})),
        task_id=TASK,
    )
    assert record.result_image_urls == ("https://tempfile.test/c.png",)
    single = parse_market_record(market_data(resultJson={"resultUrls": "https://tempfile.test/d.png"}), task_id=TASK)
    assert single.result_image_urls == ("https://tempfile.test/d.png",)


def test_several_result_urls_are_all_kept_in_order_and_the_first_is_the_result_image_url() -> None:
    urls = [f"https://tempfile.test/{n}.png" for n in range(4)]
    record = parse_market_record(
        market_data(model="bytedance/seedream-v4-text-to-image", resultJson=json.dumps({"resultUrls": urls})),
        task_id=TASK,
    )
    assert record.result_image_urls == tuple(urls)
    assert record.result_image_url == urls[0]
    assert record.succeeded


@pytest.mark.parametrize(
    ("fields", "credits"),
    [
        ({"creditsConsumed": 18}, 18.0),
        ({"creditsConsumed": None, "consumeCredits": 100}, 100.0),
        ({"consumeCredits": "6.5"}, 6.5),
        ({"consumeCredits": 0}, 0.0),
        ({"creditsConsumed": True}, None),
        ({"creditsConsumed": "many"}, None),
        ({"creditsConsumed": float("nan")}, None),
        ({}, None),
    ],
)
def test_credits_come_from_either_name_and_are_none_when_kie_reports_none(
    fields: dict[str, Any], credits: float | None
) -> None:
    data = market_data()
    del data["creditsConsumed"]
    assert parse_market_record({**data, **fields}, task_id=TASK).credits == credits


@pytest.mark.parametrize(
    ("fail_code", "fail_msg", "error"),
    [
        ("500", "Internal server error", exc.KontextGenerationFailedError),
        ("501", "Generation Failed", exc.KontextGenerationFailedError),
        ("400", "Generation Failed", exc.KontextGenerationFailedError),
        ("400", "The prompt violates our content policy", exc.KontextContentPolicyError),
        ("500", "NSFW content detected in the output", exc.KontextContentPolicyError),
        ("", "Flagged by the safety system", exc.KontextContentPolicyError),
        ("422", "input.nsfw_checker must be true or false", exc.KontextGenerationFailedError),
        (None, None, exc.KontextGenerationFailedError),
        ("", "", exc.KontextGenerationFailedError),
    ],
)
def test_a_failed_market_task_is_content_policy_by_its_text_not_its_code(
    fail_code: str | None, fail_msg: str | None, error: type[exc.KontextTaskFailedError]
) -> None:
    record = parse_market_record(
        market_data(state="fail", resultJson=None, failCode=fail_code, failMsg=fail_msg, creditsConsumed=0),
        task_id=TASK,
    )
    assert record.status is TaskStatus.GENERATE_FAILED
    assert record.failed
    failure = record.failure()
    assert type(failure) is error
    assert failure is not None and failure.kie_task_id == TASK
    if fail_code:
        assert f"failCode {fail_code}" in str(failure)


def test_fail_code_and_message_keep_kies_values_and_empty_ones_read_as_none() -> None:
    record = parse_market_record(market_data(state="fail", failCode="501", failMsg=" Generation Failed "), task_id=TASK)
    assert (record.error_code, record.error_message) == (501, "Generation Failed")
    record = parse_market_record(market_data(state="fail", failCode="E_UPSTREAM", failMsg=None), task_id=TASK)
    assert (record.error_code, record.error_message) == ("E_UPSTREAM", None)


def test_kontext_keeps_its_documented_errorcode_400_and_its_tolerance_message_is_not_moderation() -> None:
    kontext = {"taskId": TASK, "successFlag": 3, "response": None}
    assert isinstance(
        parse_record({**kontext, "errorCode": 400, "errorMessage": "x"}, task_id=TASK).failure(),
        exc.KontextContentPolicyError,
    )
    tolerance = parse_record(
        {**kontext, "errorCode": 500, "errorMessage": "safety tolerance must be between 0 and 2"}, task_id=TASK
    )
    assert type(tolerance.failure()) is exc.KontextGenerationFailedError


@pytest.mark.parametrize(
    ("text", "moderation"),
    [
        ("PROHIBITED content", True),
        ("violates content policy", True),
        ("nsfw", True),
        ("blocked by the safety filter", True),
        ("safetyTolerance out of range", False),
        ("nsfw_checker must be a boolean", False),
        ("Internal server error", False),
        ("", False),
        (None, False),
    ],
)
def test_moderation_is_recognised_by_kies_wording(text: str | None, moderation: bool) -> None:
    assert looks_like_moderation(text) is moderation


@pytest.mark.parametrize(
    "result_json", [None, "", json.dumps({"resultUrls": []}), json.dumps({"resultObject": {"text": "a caption"}})]
)
def test_a_success_without_any_url_is_a_missing_result(result_json: Any) -> None:
    record = parse_market_record(market_data(resultJson=result_json), task_id=TASK)
    assert record.is_terminal
    assert not record.succeeded
    failure = record.failure()
    assert type(failure) is exc.KontextMissingResultError
    assert "resultUrls" in str(failure)


# ----------------------------------------------------------------------------- the shared record


def test_a_market_record_round_trips_as_plain_json() -> None:
    urls = json.dumps({"resultUrls": ["https://tempfile.test/1.png", "https://tempfile.test/2.png"]})
    record = parse_market_record(market_data(resultJson=urls), task_id=TASK)
    data = record.to_dict()
    assert json.loads(json.dumps(data)) == data
    assert data["api"] == "market"
    assert data["credits"] == 18.0
    assert data["result_image_urls"] == ["https://tempfile.test/1.png", "https://tempfile.test/2.png"]
    assert data["result_image_url"] == "https://tempfile.test/1.png"
    assert TaskRecord.from_dict(json.loads(json.dumps(data))) == record


def test_an_old_event_without_the_new_keys_still_loads_as_a_kontext_record() -> None:
    kontext = parse_record(
        {"taskId": TASK, "successFlag": 1, "response": {"resultImageUrl": "https://r.test/r.png"}}, task_id=TASK
    )
    old = {key: value for key, value in kontext.to_dict().items() if key not in ("result_image_urls", "credits", "api")}
    loaded = TaskRecord.from_dict(old)
    assert loaded == kontext
    assert loaded.api is ApiFamily.KONTEXT
    assert loaded.result_image_urls == ("https://r.test/r.png",)
    assert loaded.credits is None
    assert loaded.succeeded


def test_a_record_built_with_either_url_field_has_both() -> None:
    by_list = TaskRecord(TASK, TaskStatus.SUCCESS, result_image_urls=("https://a", "https://b"))
    assert by_list.result_image_url == "https://a"
    by_first = TaskRecord(TASK, TaskStatus.SUCCESS, result_image_url="https://a")
    assert by_first.result_image_urls == ("https://a",)
    with pytest.raises(ValueError):
        TaskRecord(TASK, TaskStatus.SUCCESS, result_image_url="https://b", result_image_urls=("https://a",))
    with pytest.raises(TypeError):
        TaskRecord.from_dict({"kie_task_id": TASK, "status": "SUCCESS", "result_image_urls": "https://a"})


def test_the_shared_waiter_finishes_a_market_wait_and_its_event_round_trips() -> None:
    waiter = TaskWaiter([TASK], end_time=None)
    running = parse_market_record(market_data(state="queuing", resultJson=None), task_id=TASK)
    waiter.on_record(running, now=1.0)
    assert waiter.outcome(now=1.0) is None
    waiter.on_record(parse_market_record(market_data(), task_id=TASK), now=2.0)
    result = waiter.outcome(now=2.0)
    assert result is not None and result.status is WaitStatus.SUCCESS
    again = WaitResult.from_event(json.loads(json.dumps(result.to_event())))
    assert again.records[0].api is ApiFamily.MARKET
    assert again.records[0].credits == 18.0


def test_the_kontext_status_answer_is_unchanged_by_the_market() -> None:
    record = parse_record_info_response(200, body(422, "recordInfo is null"), task_id=TASK)
    assert (record.status, record.api) == (TaskStatus.PENDING, ApiFamily.KONTEXT)
