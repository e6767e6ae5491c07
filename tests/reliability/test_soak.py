"""The soak in CI: the same code as ``reliability/soak.py``, fewer images, a fixed seed.

Plus the checks that make the soak trustworthy: its expectation rules match the README's retry
table case by case, and a soak whose results are wrong really fails.
"""

from __future__ import annotations

from typing import Any

import pytest

from airflow_provider_kontext.emulator import EmulatorServer
from reliability import soak
from reliability.soak import OUTCOME_UNKNOWN, SoakConfig, expected_create_outcome, run_soak

#: 120 images at ~10 % faults with a seed that draws refusals, resends, lost answers and markers.
CI_SOAK = SoakConfig(images=120, fault_rate=0.1, seed=20261121)


def test_soak_in_ci(emulator: EmulatorServer) -> None:
    report = run_soak(CI_SOAK, emulator)
    print(report.render())
    assert report.passed, report.render()
    assert report.images == 120
    assert report.in_input_order
    assert report.duplicate_creates == 0
    assert report.delivered + sum(report.failed_by_class.values()) == 120
    assert report.failed_by_class == report.expected_failed_by_class
    assert report.faults.get("generate") and report.faults.get("record-info"), "both sides were faulted"
    assert 0.05 < report.faulted_share < 0.15
    assert report.wall_seconds < 45


def test_soak_sync_mode_in_ci(emulator: EmulatorServer) -> None:
    report = run_soak(SoakConfig(images=60, fault_rate=0.1, seed=7, mode="sync"), emulator)
    assert report.passed, report.render()


def test_a_soak_with_shuffled_results_fails(emulator: EmulatorServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """The verdict must be able to say FAIL: results out of order are caught."""
    real = soak._run_batch

    def reversed_batch(config: SoakConfig, requests: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return list(reversed(real(config, requests)))

    monkeypatch.setattr(soak, "_run_batch", reversed_batch)
    report = run_soak(SoakConfig(images=20, fault_rate=0.0, seed=1), emulator)
    assert not report.passed
    assert not report.in_input_order


def test_a_soak_catches_a_create_sent_twice(emulator: EmulatorServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """A duplicate create (here: a second batch run over the same prompts) is counted and fails the verdict."""
    real = soak._run_batch

    def twice(config: SoakConfig, requests: list[dict[str, Any]]) -> list[dict[str, Any]]:
        real(config, requests[:3])
        return real(config, requests)

    monkeypatch.setattr(soak, "_run_batch", twice)
    report = run_soak(SoakConfig(images=10, fault_rate=0.0, seed=1), emulator)
    assert report.duplicate_creates == 3
    assert not report.passed


@pytest.mark.parametrize(
    ("faults", "expected"),
    [
        ([], (None, 1)),
        ([{"kind": "code", "code": 429}], (None, 1)),
        ([{"kind": "http", "status": 429, "retry_after": 0}, {"kind": "code", "code": 455}], (None, 1)),
        ([{"kind": "code", "code": 429}] * 8, (None, 1)),  # dropped, so resent until the deadline
        ([{"kind": "code", "code": 402}], ("KontextInsufficientCreditsError", 0)),
        ([{"kind": "code", "code": 429}, {"kind": "code", "code": 422}], ("KontextValidationError", 0)),
        ([{"kind": "code", "code": 501}], ("KontextGenerationFailedError", 0)),
        ([{"kind": "code", "code": 500}], (OUTCOME_UNKNOWN, 0)),
        ([{"kind": "http", "status": 503}], (OUTCOME_UNKNOWN, 0)),
        ([{"kind": "html", "status": 502}], (OUTCOME_UNKNOWN, 0)),
        ([{"kind": "malformed_json"}], (OUTCOME_UNKNOWN, 0)),
        ([{"kind": "drop"}], (OUTCOME_UNKNOWN, 0)),
        ([{"kind": "drop_after_accept"}], (OUTCOME_UNKNOWN, 1)),
        ([{"kind": "slow", "delay": 0.3}], (None, 1)),
    ],
)
def test_expected_outcome_follows_the_readme_retry_rules(
    faults: list[dict[str, Any]], expected: tuple[str | None, int]
) -> None:
    error, tasks, _ = expected_create_outcome(faults, max_attempts=5)
    assert (error, tasks) == expected


def test_a_fault_without_a_rule_is_an_error_not_a_pass() -> None:
    with pytest.raises(ValueError, match="no rule"):
        expected_create_outcome([{"kind": "forbidden"}], max_attempts=5)
