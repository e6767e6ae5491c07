"""The version table in the README, checked on whichever Airflow runs the tests.

scripts/test runs this file on 3.0.6, 3.1.8, 3.2.2 and 3.3.2, so each row is asserted on the
versions above and below its minimum.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import airflow
import pytest
from airflow.sdk import ObjectStoragePath
from airflow.triggers.base import BaseTrigger

from airflow_provider_kontext import _compat
from airflow_provider_kontext.emulator import EmulatorServer
from airflow_provider_kontext.operators.batch import KontextBatchGenerateOperator
from reliability.fake_airflow import DictStateStore, task_context
from tests.operators.test_generate_operator import success_event

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    ("version", "release"),
    [("3.0.6", (3, 0)), ("3.1.8", (3, 1)), ("3.2.0rc1", (3, 2)), ("3.3.2", (3, 3)), ("3.10.0.dev0", (3, 10))],
)
def test_release_parsing(version: str, release: tuple[int, int]) -> None:
    assert _compat._release(version) == release


def test_flags_match_the_running_airflow() -> None:
    major, minor = (int(part) for part in airflow.__version__.split(".")[:2])
    assert (major, minor) == _compat.AIRFLOW_RELEASE
    assert (minor >= 1) == _compat.AIRFLOW_V_3_1_PLUS
    assert (minor >= 2) == _compat.AIRFLOW_V_3_2_PLUS
    assert (minor >= 3) == _compat.AIRFLOW_V_3_3_PLUS


def test_the_floor_is_the_oldest_version_ci_runs() -> None:
    """pyproject's floor, scripts/bootstrap's AIRFLOW_FLOOR and the first older line agree."""
    floor = re.search(r'"apache-airflow>=([0-9.]+),', (ROOT / "pyproject.toml").read_text())
    bootstrap = dict(re.findall(r'^(AIRFLOW_[A-Z]+)="([0-9. ]+)"$', (ROOT / "scripts" / "bootstrap").read_text(), re.M))
    older = bootstrap["AIRFLOW_OLDER"].split()
    assert floor is not None
    assert floor.group(1) == bootstrap["AIRFLOW_FLOOR"] == older[0]
    for version in [*older, bootstrap["AIRFLOW_NEWEST"]]:
        assert (ROOT / "constraints" / f"airflow-{version}.txt").is_file(), version


def test_names_come_from_where_this_airflow_has_them() -> None:
    """What Airflow's own task runner raises and catches, on this version."""
    if _compat.AIRFLOW_V_3_2_PLUS:
        import airflow.sdk
        import airflow.sdk.exceptions as where
        from airflow.sdk import conf as airflow_conf
    else:
        import airflow.exceptions as where
        from airflow.configuration import conf as airflow_conf
    assert _compat.conf is airflow_conf
    assert _compat.AirflowSensorTimeout is where.AirflowSensorTimeout
    assert _compat.TaskDeferred is where.TaskDeferred
    assert issubclass(_compat.AirflowException, Exception)
    import airflow.exceptions

    assert _compat.AirflowException is airflow.exceptions.AirflowException


def test_trigger_on_kill_exists_from_3_3_only() -> None:
    """
    Documented: below 3.3 Airflow never calls a trigger's ``on_kill``.

    So killing a deferred wait there logs nothing in the triggerer; the kie task keeps running
    either way (kie has no cancel endpoint).
    """
    assert hasattr(BaseTrigger, "on_kill") == _compat.AIRFLOW_V_3_3_PLUS


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (ObjectStoragePath("file:///tmp/x.png"), True),
        (ObjectStoragePath("memory://bucket/x.png"), True),
        (Path("/tmp/x.png"), False),
        ("/tmp/x.png", False),
        ("file:///tmp/x.png", False),
    ],
)
def test_object_storage_paths_are_told_from_local_paths(value: Any, expected: bool) -> None:
    assert _compat.is_object_storage_path(value) is expected


def _reattach_warnings(capfd: pytest.CaptureFixture[str]) -> list[str]:
    """The warning lines the task wrote (Airflow's task logging prints, it does not reach caplog)."""
    out, err = capfd.readouterr()
    return [line for line in (out + err).splitlines() if "has no task-instance state store" in line]


def test_without_a_state_store_one_warning_per_try(emulator: EmulatorServer, capfd: pytest.CaptureFixture[str]) -> None:
    """Airflow < 3.3 (no ``task_state_store`` in the context): one warning for the whole batch."""
    requests = [{"prompt": f"image {i}"} for i in range(3)]
    op = KontextBatchGenerateOperator(task_id="b", requests=requests, wait_for_completion=False)
    capfd.readouterr()
    op.execute(task_context())
    (message,) = _reattach_warnings(capfd)
    assert "warning" in message.lower()
    assert airflow.__version__ in message
    assert "new kie tasks" in message
    assert "wait_for_completion=False" in message
    assert "KontextTaskSensor" in message
    assert emulator.stats()["creates_accepted"] == 3


def test_with_a_state_store_no_warning(emulator: EmulatorServer, capfd: pytest.CaptureFixture[str]) -> None:
    op = KontextBatchGenerateOperator(task_id="b", requests=[{"prompt": "x"}], wait_for_completion=False)
    op.execute(task_context(state_store=DictStateStore()))
    assert _reattach_warnings(capfd) == []
    assert emulator.stats()["creates_accepted"] == 1


def test_a_retry_that_creates_nothing_does_not_warn(
    emulator: EmulatorServer, capfd: pytest.CaptureFixture[str]
) -> None:
    """The warning is about creates: a try that only re-attaches has nothing to warn about."""
    store = DictStateStore()
    op = KontextBatchGenerateOperator(task_id="b", requests=[{"prompt": "x"}], wait_for_completion=False)
    op.execute({**task_context(), "task_state_store": store})
    capfd.readouterr()
    op.execute({**task_context(), "task_state_store": store})
    assert _reattach_warnings(capfd) == []
    assert emulator.stats()["creates_accepted"] == 1


def _no_policy_warnings(capfd: pytest.CaptureFixture[str]) -> list[str]:
    out, err = capfd.readouterr()
    return [line for line in (out + err).splitlines() if "has no retry policies" in line]


@pytest.mark.parametrize("retries", [0, 2])
def test_below_3_3_a_try_with_retries_says_no_retry_policy_applies(
    emulator: EmulatorServer, capfd: pytest.CaptureFixture[str], retries: int
) -> None:
    """Documented: below 3.3 the provider's retry policy cannot be set; a task with retries says so, once per try."""
    op = KontextBatchGenerateOperator(
        task_id="b", requests=[{"prompt": "x"}, {"prompt": "y"}], wait_for_completion=False, retries=retries
    )
    assert (getattr(op, "retry_policy", None) is not None) is _compat.AIRFLOW_V_3_3_PLUS
    capfd.readouterr()
    op.execute(task_context())
    warnings = _no_policy_warnings(capfd)
    if _compat.AIRFLOW_V_3_3_PLUS or retries == 0:
        assert warnings == []
        return
    (message,) = warnings
    assert airflow.__version__ in message
    assert f"{retries} retries" in message
    assert "content policy" in message


REFUSED_EVENT = {
    "status": "failed",
    "records": [{"kie_task_id": "t1", "status": "GENERATE_FAILED", "error_code": 400}],
    "message": "refused",
}


def _replay_warnings(capfd: pytest.CaptureFixture[str]) -> list[str]:
    out, err = capfd.readouterr()
    return [line for line in (out + err).splitlines() if "resumes with this same trigger event" in line]


@pytest.mark.parametrize("retries", [0, 2])
@pytest.mark.parametrize("kind", ["operator", "sensor"])
def test_on_3_0_a_failed_resume_says_its_retries_replay_it(
    capfd: pytest.CaptureFixture[str], retries: int, kind: str
) -> None:
    """Documented: Airflow 3.0 resumes a retried deferred task with the same event; the failed try says so."""
    from airflow_provider_kontext.exceptions import KontextContentPolicyError
    from airflow_provider_kontext.operators.generate import KontextGenerateOperator
    from airflow_provider_kontext.sensors.task import KontextTaskSensor

    task: Any = (
        KontextGenerateOperator(task_id="g", prompt="x", deferrable=True, retries=retries)
        if kind == "operator"
        else KontextTaskSensor(task_id="s", kie_task_ids=["t1"], deferrable=True, retries=retries)
    )
    capfd.readouterr()
    with pytest.raises(KontextContentPolicyError):
        task.execute_complete(task_context(), REFUSED_EVENT)
    warnings = _replay_warnings(capfd)
    if _compat.AIRFLOW_V_3_1_PLUS or retries == 0:
        assert warnings == []
        return
    (message,) = warnings
    assert airflow.__version__ in message
    assert f"{retries} retries" in message
    assert "deferrable=False" in message


def test_a_resume_that_succeeds_does_not_warn_about_replays(capfd: pytest.CaptureFixture[str]) -> None:
    from airflow_provider_kontext.sensors.task import KontextTaskSensor

    sensor = KontextTaskSensor(task_id="s", kie_task_ids=["t1"], deferrable=True, retries=2)
    capfd.readouterr()
    sensor.execute_complete(task_context(), success_event("t1"))
    assert _replay_warnings(capfd) == []


def test_a_feature_this_airflow_lacks_raises_the_typed_error_naming_it() -> None:
    from airflow_provider_kontext.exceptions import KontextAirflowVersionError, KontextError

    class Future(_compat.NeedsNewerAirflow):
        feature = "time travel"
        minimum_airflow = "9.9"

    class UsedInADag(Future):
        def __init__(self, **kwargs: Any) -> None:
            raise AssertionError("never reached: the version error comes first")

    for build in (lambda: UsedInADag(task_id="t"), lambda: UsedInADag.partial(task_id="t")):
        with pytest.raises(KontextAirflowVersionError) as info:
            build()
        error = info.value
        assert isinstance(error, KontextError)
        assert (error.what, error.feature, error.minimum_airflow) == ("UsedInADag", "time travel", "9.9")
        assert error.airflow_version == airflow.__version__
        assert str(error) == (
            f"UsedInADag needs Airflow 9.9 or newer (time travel); this is Airflow {airflow.__version__}. "
            "See the provider README's 'Airflow versions' table."
        )


def test_the_names_that_cost_an_import_are_this_airflows_or_stand_ins() -> None:
    """HITLOperator from 3.1, RetryPolicy and RetryDecision from 3.3; below, classes that cannot be built."""
    expected = {
        "HITLOperator": (_compat.AIRFLOW_V_3_1_PLUS, "3.1"),
        "RetryPolicy": (_compat.AIRFLOW_V_3_3_PLUS, "3.3"),
        "RetryDecision": (_compat.AIRFLOW_V_3_3_PLUS, "3.3"),
    }
    for name, (available, minimum) in expected.items():
        value = getattr(_compat, name)
        assert issubclass(value, _compat.NeedsNewerAirflow) is not available, name
        if not available:
            assert value.minimum_airflow == minimum
    with pytest.raises(AttributeError):
        _compat.NoSuchName  # noqa: B018


def test_the_review_timeout_goes_where_this_standard_provider_takes_it() -> None:
    from datetime import timedelta

    assert _compat.hitl_response_timeout(None) == {}
    if not _compat.AIRFLOW_V_3_1_PLUS:
        return  # no HITLOperator to pass it to (constructing the review raises first)
    import inspect

    takes_it = "response_timeout" in inspect.signature(_compat.HITLOperator.__init__).parameters
    key = "response_timeout" if takes_it else "execution_timeout"
    assert _compat.hitl_response_timeout(timedelta(hours=1)) == {key: timedelta(hours=1)}
