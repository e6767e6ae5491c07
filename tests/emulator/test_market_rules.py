"""Pure unit tests of the Market rules: the emulator's model table, prices, lifecycle, billing and payloads."""

from __future__ import annotations

import json
from typing import Any

import pytest

from airflow_provider_kontext.emulator.config import EmulatorConfig
from airflow_provider_kontext.emulator.market import MODELS, UNKNOWN_MODEL_MSG, MarketOrder, validate_market
from airflow_provider_kontext.emulator.payloads import market_callback_payload, market_record_data
from airflow_provider_kontext.emulator.state import EmulatorState, outcome_for_prompt
from airflow_provider_kontext.emulator.validation import Rejection


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


def order(model: str, **values: Any) -> MarketOrder:
    result = validate_market({"model": model, "input": values})
    assert isinstance(result, MarketOrder), result
    return result


@pytest.mark.parametrize(
    ("model", "values", "price"),
    [
        ("nano-banana-pro", {"prompt": "x"}, 18),
        ("nano-banana-pro", {"prompt": "x", "resolution": "2K"}, 18),
        ("nano-banana-pro", {"prompt": "x", "resolution": "4K"}, 24),
        ("nano-banana-2", {"prompt": "x", "resolution": "2K"}, 12),
        ("flux-2/pro-text-to-image", {"prompt": "abc", "aspect_ratio": "1:1", "resolution": "2K"}, 7),
        (
            "flux-2/flex-image-to-image",
            {"prompt": "abc", "aspect_ratio": "auto", "resolution": "1K", "input_urls": ["http://a/b"]},
            14,
        ),
        ("gpt-image/1.5-text-to-image", {"prompt": "x", "aspect_ratio": "1:1", "quality": "high"}, 22),
        ("gpt-image-2-text-to-image", {"prompt": "x", "aspect_ratio": "16:9", "resolution": "4K"}, 16),
        ("ideogram/v3-text-to-image", {"prompt": "x"}, 7),
        ("ideogram/v3-text-to-image", {"prompt": "x", "rendering_speed": "TURBO"}, 3.5),
        (
            "ideogram/v3-remix",
            {"prompt": "x", "image_url": "http://a/b", "rendering_speed": "QUALITY", "num_images": "2"},
            20,
        ),
        ("grok-imagine/text-to-image", {"prompt": "x", "enable_pro": True}, 5),
        ("google/imagen4-fast", {"prompt": "x"}, 4),
        (
            "seedream/4.5-edit",
            {"prompt": "x", "aspect_ratio": "1:1", "quality": "high", "image_urls": ["http://a/b"]},
            6.5,
        ),
        ("topaz/image-upscale", {"image_url": "http://a/b", "upscale_factor": "8"}, 40),
        ("recraft/remove-background", {"image": "http://a/b"}, 1),
    ],
)
def test_prices_follow_the_pricing_rules(model: str, values: dict[str, Any], price: float) -> None:
    assert order(model, **values).price == pytest.approx(price)


def test_order_shape_ratio_format_and_caption() -> None:
    body = {
        "model": "qwen/image-edit",
        "input": {"prompt": "p", "image_url": "http://a/b.png"},
        "callBackUrl": "http://cb",
    }
    qwen = validate_market(body)
    assert isinstance(qwen, MarketOrder)
    assert (qwen.images, qwen.aspect_ratio, qwen.output_format, qwen.callback_url) == (1, "1:1", "png", "http://cb")
    assert qwen.body == body
    assert order("z-image", prompt="p", aspect_ratio="9:16").aspect_ratio == "9:16"
    assert order("ideogram/v3-text-to-image", prompt="p", image_size="portrait_16_9").aspect_ratio == "9:16"
    assert order("nano-banana-pro", prompt="p", aspect_ratio="auto").aspect_ratio == "1:1"
    assert order("nano-banana-2", prompt="p").output_format == "jpeg"
    assert order("nano-banana-2", prompt="p", output_format="png").output_format == "png"
    upscale = order("recraft/crisp-upscale", image="http://a/in.png")
    assert (upscale.prompt, upscale.caption) == ("", "recraft/crisp-upscale http://a/in.png")


def test_wan_sequential_mode_widens_n() -> None:
    assert order("wan/2-7-image", prompt="p", enable_sequential=True).images == 12
    assert order("wan/2-7-image", prompt="p", enable_sequential=True, n=12).images == 12
    refused = validate_market({"model": "wan/2-7-image", "input": {"prompt": "p", "enable_sequential": True, "n": 13}})
    assert refused == Rejection(422, "n is not within the range of allowed options")
    assert validate_market({"model": "wan/2-7-image", "input": {"prompt": "p", "n": 0}}, refusal_code=500) == Rejection(
        500, "n is not within the range of allowed options"
    )


@pytest.mark.parametrize(
    ("ratio", "resolution", "fails"),
    [
        (None, None, False),
        ("auto", "1K", False),
        ("auto", "2K", True),
        (None, "4K", True),
        ("5:4", "1K", False),
        ("5:4", "2K", True),
        ("9:21", "4K", True),
        ("1:1", "2K", False),
        ("1:1", "4K", True),
        ("16:9", "4K", False),
    ],
)
def test_gpt_image_2_ratio_rules_fail_the_task_not_the_create(
    ratio: str | None, resolution: str | None, fails: bool
) -> None:
    values = {"prompt": "p", "aspect_ratio": ratio, "resolution": resolution}
    result = order("gpt-image-2-text-to-image", **{k: v for k, v in values.items() if v is not None})
    assert (result.late_failure is not None) == fails


def test_unknown_and_malformed_bodies() -> None:
    assert validate_market({"model": "midjourney", "input": {}}) == Rejection(422, UNKNOWN_MODEL_MSG)
    assert validate_market({"input": {}}, refusal_code=500) == Rejection(422, "model is required")
    bad_callback = validate_market(
        {"model": "z-image", "input": {"prompt": "p", "aspect_ratio": "1:1"}, "callBackUrl": "x"}
    )
    assert isinstance(bad_callback, Rejection)
    assert "callBackUrl" in bad_callback.msg
    unknown_field = order("z-image", prompt="p", aspect_ratio="1:1", imageUrl="ignored, as kie does")
    assert unknown_field.images == 1


def test_every_table_row_is_consistent() -> None:
    """Price tables key on the enum they read, count fields exist: a broken row fails here, not mid-test."""
    for model in MODELS.values():
        assert model.slug.strip() == model.slug
        price = model.price
        if price.by is not None:
            spec = model.fields[price.by]
            assert price.default in price.table, model.slug
            if spec.kind == "enum":
                assert set(price.table) == set(spec.choices), model.slug
        if model.count.by is not None:
            assert model.fields[model.count.by].kind == "count", model.slug
        assert model.default_format in ("jpeg", "png")


@pytest.mark.parametrize(
    ("prompt", "fail_code", "succeeded"),
    [
        ("plain", "", True),
        ("[emulator:content_policy]", "400", False),
        ("[emulator:content_policy_500]", "500", False),
        ("[emulator:generate_failed]", "501", False),
        ("[emulator:internal_error]", "500", False),
        ("[emulator:no_url]", "", True),
    ],
)
def test_markers_have_a_market_view(prompt: str, fail_code: str, succeeded: bool) -> None:
    outcome, _ = outcome_for_prompt(prompt, 1.0)
    assert (outcome.fail_code, outcome.succeeded) == (fail_code, succeeded)
    assert bool(outcome.fail_msg) != succeeded


def test_content_policy_500_keeps_its_kontext_meaning() -> None:
    outcome, _ = outcome_for_prompt("[emulator:content_policy_500]", 1.0)
    assert (outcome.success_flag, outcome.error_code, outcome.callback_code) == (3, 500, 500)
    assert "content policies" in outcome.error_message


def test_held_credits_come_back_only_when_the_task_has_failed() -> None:
    clock = FakeClock()
    state = EmulatorState(EmulatorConfig(api_key="k", generation_seconds=10, credits=20), clock=clock)
    flex = {"aspect_ratio": "1:1", "resolution": "1K"}  # 14 credits
    failing = order("flux-2/flex-text-to-image", prompt="a b [emulator:generate_failed]", **flex)
    fine = order("flux-2/flex-text-to-image", prompt="abc", **flex)
    assert state.create_market_task(failing, base_url="http://x") is not None
    assert state.credits == 6
    assert state.create_market_task(fine, base_url="http://x") is None, "held credits are not spendable"
    clock.now += 10
    assert state.credits == 20
    assert state.create_market_task(fine, base_url="http://x") is not None
    stats = state.stats()
    assert (stats["credits"], stats["credits_spent"], stats["credits_refunded"]) == (6, 14, 14)
    assert stats["creates_rejected_credits"] == 1


def test_record_and_callback_payloads() -> None:
    clock = FakeClock()
    state = EmulatorState(EmulatorConfig(api_key="k", generation_seconds=4), clock=clock)
    task = state.create_market_task(order("grok-imagine/text-to-image", prompt="two"), base_url="http://x")
    assert task is not None
    running = market_record_data(task, clock.now + 1, "http://x")
    assert (running["state"], running["resultJson"], running["costTime"]) == ("queuing", "", 0)
    assert running["completeTime"] is None
    done = market_record_data(task, clock.now + 4, "http://x")
    assert json.loads(done["param"]) == {"model": "grok-imagine/text-to-image", "input": {"prompt": "two"}}
    assert json.loads(done["resultJson"]) == {
        "resultUrls": [f"http://x/files/results/{task.task_id}_0.jpg", f"http://x/files/results/{task.task_id}_1.jpg"]
    }
    assert (done["createTime"], done["completeTime"], done["costTime"]) == (1_700_000_000_000, 1_700_000_004_000, 4000)
    callback = market_callback_payload(task, clock.now + 4, "http://x", 996.0)
    assert (callback["code"], callback["msg"]) == (200, "Playground task completed successfully.")
    assert callback["data"] == {**done, "consumeCredits": 4, "remainedCredits": 996}
    assert state.resolve_file(f"results/{task.task_id}_1.jpg") is None, "no file before success"
    clock.now += 4
    target = state.resolve_file(f"results/{task.task_id}_1.jpg")
    assert target is not None
    assert (target.index, target.task) == (1, task)
    assert task.caption(1) == "two (2/2)"


def test_market_config_knobs_are_checked() -> None:
    config = EmulatorConfig(api_key="k")
    assert config.with_overrides({"market_validation_code": 500, "mirror_http_status": True}).mirror_http_status is True
    with pytest.raises(ValueError, match="422 or 500"):
        config.with_overrides({"market_validation_code": 400})
    with pytest.raises(ValueError, match="boolean"):
        config.with_overrides({"mirror_http_status": "yes"})


def test_cli_parses_the_market_knobs() -> None:
    from airflow_provider_kontext.emulator.cli import build_parser

    defaults = build_parser().parse_args([])
    assert (defaults.market_validation_code, defaults.mirror_http_status) == (422, False)
    args = build_parser().parse_args(["--market-validation-code", "500", "--mirror-http-status"])
    assert (args.market_validation_code, args.mirror_http_status) == (500, True)
