"""Seeded random faults: about the asked share, reproducible per seed, every one logged with its request."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
import requests

from airflow_provider_kontext.emulator import EmulatorConfig
from airflow_provider_kontext.emulator.chaos import RandomFaults
from airflow_provider_kontext.emulator.state import EmulatorState

from .helpers import API_KEY, AUTH, GENERATE, RECORD_INFO

if TYPE_CHECKING:
    from airflow_provider_kontext.emulator import EmulatorServer


def kinds_drawn(seed: int, n: int = 2000, rate: float = 0.1) -> list[str | None]:
    state = EmulatorState(EmulatorConfig(api_key=API_KEY))
    state.inject_random_faults(rate, seed)
    return [getattr(state.take_fault("generate"), "kind", None) for _ in range(n)]


def test_the_share_of_faulted_requests_is_about_the_rate() -> None:
    drawn = kinds_drawn(seed=7, n=5000, rate=0.1)
    share = sum(kind is not None for kind in drawn) / len(drawn)
    assert 0.08 < share < 0.12
    assert len({kind for kind in drawn if kind is not None}) >= 6, "many different kinds are drawn"


def test_the_same_seed_gives_the_same_faults_and_another_seed_does_not() -> None:
    assert kinds_drawn(seed=3) == kinds_drawn(seed=3)
    assert kinds_drawn(seed=3) != kinds_drawn(seed=4)


def test_endpoints_draw_independently_so_polls_cannot_shift_the_creates() -> None:
    """Creates are sequential, polls concurrent: interleaving polls must not change which create fails."""
    state = EmulatorState(EmulatorConfig(api_key=API_KEY))
    state.inject_random_faults(0.2, 11)
    interleaved = []
    for _ in range(500):
        interleaved.append(getattr(state.take_fault("generate"), "kind", None))
        for _ in range(3):
            state.take_fault("record-info")
    assert interleaved == kinds_drawn(seed=11, n=500, rate=0.2)


def test_queued_faults_come_first_and_every_fault_is_logged() -> None:
    state = EmulatorState(EmulatorConfig(api_key=API_KEY))
    state.inject_random_faults(1.0, 1, endpoints=["credit"], kinds={"credit": [{"kind": "code", "code": 500}]})
    state.inject_fault("credit", "code", code=455)
    assert [state.take_fault("credit").kind for _ in range(2)] == ["code", "code"]  # type: ignore[union-attr]
    log = state.applied_faults()
    assert [(entry.params["code"], entry.random) for entry in log] == [(455, False), (500, True)]
    assert state.take_fault("generate") is None, "endpoints outside the plan are never faulted at random"
    assert state.stats()["random_faults"]["drawn"] == 1
    state.clear_faults()
    assert state.take_fault("credit") is None
    assert state.stats()["random_faults"] is None


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"rate": 1.5, "seed": 1}, "rate"),
        ({"rate": 0.1, "seed": "x"}, "seed"),
        ({"rate": 0.1, "seed": 1, "endpoints": ["upload-url"]}, "no random fault kinds"),
        ({"rate": 0.1, "seed": 1, "kinds": {"credit": [{"kind": "drop_after_accept"}]}}, "generate"),
        ({"rate": 0.1, "seed": 1, "kinds": {"credit": [{"kind": "code", "code": 299}]}}, "code"),
        ({"rate": 0.1, "seed": 1, "kinds": {"credit": []}}, "no fault kinds"),
    ],
)
def test_bad_plans_fail_when_injected(kwargs: dict[str, object], match: str) -> None:
    state = EmulatorState(EmulatorConfig(api_key=API_KEY))
    with pytest.raises(ValueError, match=match):
        state.inject_random_faults(**kwargs)  # type: ignore[arg-type]


def test_random_faults_over_http_name_the_prompt_and_the_task(emu: EmulatorServer) -> None:
    """The log says which create a fault hit, and which task a lost-but-accepted create made."""
    emu.inject_random_faults(1.0, 5, endpoints=["generate"], kinds={"generate": [{"kind": "drop_after_accept"}]})
    with pytest.raises(requests.ConnectionError):
        requests.post(emu.url(GENERATE), json={"prompt": "lost answer"}, headers=AUTH, timeout=5)
    (entry,) = emu.applied_faults()
    assert (entry.endpoint, entry.kind, entry.prompt) == ("generate", "drop_after_accept", "lost answer")
    assert entry.task_id is not None
    summary = emu.state.task_summary(entry.task_id)
    assert summary is not None and summary["params"]["prompt"] == "lost answer"


def test_random_faults_over_http_on_polls_name_the_task(emu: EmulatorServer) -> None:
    emu.inject_random_faults(1.0, 5, endpoints=["record-info"], kinds={"record-info": [{"kind": "code", "code": 455}]})
    answer = requests.get(emu.url(RECORD_INFO), params={"taskId": "abc123"}, headers=AUTH, timeout=5)
    assert answer.json()["code"] == 455
    assert [(entry.task_id, entry.random) for entry in emu.applied_faults()] == [("abc123", True)]


def test_control_api_starts_random_faults_and_lists_applied_ones(emu: EmulatorServer) -> None:
    bad = requests.post(emu.url("/_emulator/faults/random"), json={"rate": 2, "seed": 1}, timeout=5)
    assert bad.status_code == 400
    answer = requests.post(
        emu.url("/_emulator/faults/random"),
        json={"rate": 1, "seed": 2, "endpoints": ["generate"], "kinds": {"generate": [{"kind": "code", "code": 402}]}},
        timeout=5,
    )
    assert answer.json()["random_faults"]["endpoints"] == ["generate"]
    refused = requests.post(emu.url(GENERATE), json={"prompt": "no credits"}, headers=AUTH, timeout=5)
    assert refused.json()["code"] == 402
    applied = requests.get(emu.url("/_emulator/faults/applied"), timeout=5).json()
    assert applied == [
        {
            "seq": 0,
            "endpoint": "generate",
            "kind": "code",
            "params": {"code": 402},
            "random": True,
            "prompt": "no credits",
            "taskId": None,
        }
    ]
    assert emu.stats()["tasks"] == 0


def test_random_plan_defaults_cover_every_create_fault_class() -> None:
    plan = RandomFaults.build(0.1, 0)
    generate_kinds = {spec["kind"] for spec in plan.catalogue["generate"]}
    assert {"code", "http", "malformed_json", "html", "empty_body", "drop", "drop_after_accept", "slow"} <= (
        generate_kinds
    )
    assert all(spec.get("code") != 401 for spec in plan.catalogue["generate"]), "401 would stop a whole batch"
