"""Airflow retries of a whole task: which errors fail at once, which wait out kie, which are Airflow's.

The rules are :func:`task_retry_advice` (beside the per-request retry rules), the same on every
Airflow; ``KontextRetryPolicy`` translates them for Airflow 3.3's ``retry_policy=``. The
provider's tasks use it unless the DAG author set a policy of their own. The end-to-end proof,
a refused prompt with ``retries=3`` costing one create and one try under ``dag.test()``, is in
``tests/dags/test_example_dags.py``.

Below Airflow 3.3 (no retry policies) each test asserts what the README's version table says
instead: constructing ``KontextRetryPolicy`` raises ``KontextAirflowVersionError``, the tasks carry
no policy, and Airflow itself refuses ``retry_policy=``.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from airflow.sdk import DAG

from airflow_provider_kontext import exceptions as exc
from airflow_provider_kontext._compat import AIRFLOW_V_3_3_PLUS
from airflow_provider_kontext._protocol.defaults import KIE_WINDOW_SECONDS
from airflow_provider_kontext._protocol.retry import MAINTENANCE_RETRY_DELAY_SECONDS, TaskRetry, task_retry_advice
from airflow_provider_kontext._tasks.task_defaults import default_retry_policy
from airflow_provider_kontext.operators.batch import KontextBatchGenerateOperator
from airflow_provider_kontext.operators.generate import KontextGenerateOperator
from airflow_provider_kontext.retry_policy import KontextRetryPolicy
from airflow_provider_kontext.sensors.task import KontextTaskSensor


def policy() -> KontextRetryPolicy | None:
    """The policy on Airflow 3.3+; below, after asserting that constructing it raises the typed error."""
    if AIRFLOW_V_3_3_PLUS:
        return KontextRetryPolicy()
    with pytest.raises(exc.KontextAirflowVersionError, match=r"KontextRetryPolicy needs Airflow 3\.3 or newer") as err:
        KontextRetryPolicy()
    assert err.value.minimum_airflow == "3.3"
    return None


def test_retry_policies_come_with_airflow_3_3() -> None:
    assert (policy() is not None) is AIRFLOW_V_3_3_PLUS
    assert (default_retry_policy() is not None) is AIRFLOW_V_3_3_PLUS


FAIL_AT_ONCE = [
    exc.KontextContentPolicyError("refused", status="GENERATE_FAILED", error_code=400),
    exc.KontextValidationError("bad aspect_ratio", field="aspect_ratio"),
    exc.KontextAuthError("401"),
    exc.KontextInsufficientCreditsError("402"),
    exc.KontextFeatureDisabledError("505"),
    exc.KontextSubmissionOutcomeUnknownError("read timeout on generate"),
]

AIRFLOW_DEFAULT = [
    exc.KontextTimeoutError("still rendering"),
    exc.KontextGenerationFailedError("501", status="GENERATE_FAILED", error_code=501),
    exc.KontextTaskCreateFailedError("2", status="CREATE_TASK_FAILED"),
    exc.KontextMissingResultError("no url"),
    exc.KontextServerError("502"),
    exc.KontextTransportError("reset", request_sent=True),
    exc.KontextConfigurationError("no key"),
    ValueError("a bug"),
]


@pytest.mark.parametrize("error", FAIL_AT_ONCE, ids=lambda e: type(e).__name__)
def test_a_retry_that_cannot_help_or_could_pay_twice_fails_at_once(error: BaseException) -> None:
    advice = task_retry_advice(error)
    assert advice.action is TaskRetry.FAIL
    assert type(error).__name__ in (advice.reason or "")
    if (rules := policy()) is not None:
        from airflow.sdk import RetryAction

        decision = rules.evaluate(error, try_number=1, max_tries=4)
        assert decision.action is RetryAction.FAIL
        assert type(error).__name__ in (decision.reason or "")


@pytest.mark.parametrize("error", AIRFLOW_DEFAULT, ids=lambda e: type(e).__name__)
def test_everything_else_is_airflows_normal_behaviour(error: BaseException) -> None:
    assert task_retry_advice(error).action is TaskRetry.DEFAULT
    if (rules := policy()) is not None:
        from airflow.sdk import RetryDecision

        assert rules.evaluate(error, try_number=1, max_tries=4) == RetryDecision.default()


def assert_retried_after(error: BaseException, seconds: float) -> None:
    advice = task_retry_advice(error)
    assert advice.action is TaskRetry.RETRY
    assert advice.delay == seconds
    if (rules := policy()) is not None:
        from airflow.sdk import RetryAction

        decision = rules.evaluate(error, 1, 4)
        assert decision.action is RetryAction.RETRY
        assert decision.retry_delay == timedelta(seconds=seconds)


def test_a_rate_limit_is_retried_after_kies_retry_after() -> None:
    assert_retried_after(exc.KontextRateLimitError("429", retry_after=7.5), 7.5)


def test_a_rate_limit_without_retry_after_waits_one_rate_window() -> None:
    assert_retried_after(exc.KontextRateLimitError("429"), KIE_WINDOW_SECONDS)


def test_maintenance_is_waited_out() -> None:
    assert_retried_after(exc.KontextServiceUnavailableError("455"), MAINTENANCE_RETRY_DELAY_SECONDS)


def test_subclasses_follow_their_parent() -> None:
    # A batch re-raises the first failure's class with a summary message; the advice must hold.
    class Wrapped(exc.KontextContentPolicyError):
        pass

    assert task_retry_advice(Wrapped("3 of 4 failed")).action is TaskRetry.FAIL


def test_the_policy_round_trips_through_its_serialized_form() -> None:
    if (rules := policy()) is not None:
        assert isinstance(KontextRetryPolicy.deserialize(rules.serialize()), KontextRetryPolicy)


def _tasks(**task_kwargs: object) -> list[Any]:
    return [
        KontextGenerateOperator(task_id="one", prompt="a fox", **task_kwargs),
        KontextBatchGenerateOperator(task_id="many", requests=[{"prompt": "a fox"}], **task_kwargs),
        KontextTaskSensor(task_id="wait", kie_task_ids="abc", **task_kwargs),
    ]


def test_the_provider_tasks_use_the_policy_when_the_author_set_none() -> None:
    for task in _tasks():
        assert getattr(task, "retry_policy", None) is default_retry_policy()
        if AIRFLOW_V_3_3_PLUS:
            assert isinstance(task.retry_policy, KontextRetryPolicy)


def own_policy(**kwargs: Any) -> Any:
    from airflow.sdk import ExceptionRetryPolicy

    return ExceptionRetryPolicy(**kwargs)


def test_an_authors_own_policy_wins_on_the_task() -> None:
    if not AIRFLOW_V_3_3_PLUS:
        # Documented: below 3.3 there is no retry_policy= at all; Airflow refuses the argument.
        with pytest.raises(TypeError, match="retry_policy"):
            KontextGenerateOperator(task_id="one", prompt="a fox", retry_policy=object())
        return
    from airflow.sdk import RetryAction, RetryRule

    mine = own_policy(rules=[RetryRule(exception=ValueError, action=RetryAction.FAIL)])
    for task in _tasks(retry_policy=mine):
        assert task.retry_policy is mine


def test_an_authors_own_policy_wins_from_default_args() -> None:
    # Below 3.3 no default_args can carry a policy: the tasks get none, from there or from the provider.
    mine = own_policy(rules=[]) if AIRFLOW_V_3_3_PLUS else None
    with DAG(dag_id="kontext_policy_default_args", schedule=None, default_args={"retry_policy": mine, "retries": 2}):
        tasks = _tasks()
    for task in tasks:
        assert getattr(task, "retry_policy", None) is mine
        assert task.retries == 2


def test_a_mapped_operator_gets_the_policy_when_unmapped() -> None:
    with DAG(dag_id="kontext_policy_mapped", schedule=None):
        mapped = KontextGenerateOperator.partial(task_id="gen").expand(prompt=["a", "b"])
    unmapped = mapped.unmap({"prompt": "a"})  # what the worker runs, for map index 0
    assert getattr(unmapped, "retry_policy", None) is default_retry_policy()
    if AIRFLOW_V_3_3_PLUS:
        assert isinstance(unmapped.retry_policy, KontextRetryPolicy)
