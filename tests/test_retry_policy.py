"""Airflow retries of a whole task: which errors fail at once, which wait out kie, which are Airflow's.

The rules are :func:`task_retry_advice` (beside the per-request retry rules); ``KontextRetryPolicy``
translates them for Airflow 3.3's ``retry_policy=``. The provider's tasks use it unless the DAG
author set a policy of their own. The end-to-end proof, a refused prompt with ``retries=3``
costing one create and one try under ``dag.test()``, is in ``tests/dags/test_example_dags.py``.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from airflow.sdk import DAG, ExceptionRetryPolicy, RetryAction, RetryDecision, RetryRule

from airflow_provider_kontext import exceptions as exc
from airflow_provider_kontext._protocol.defaults import KIE_WINDOW_SECONDS
from airflow_provider_kontext._protocol.retry import MAINTENANCE_RETRY_DELAY_SECONDS, TaskRetry, task_retry_advice
from airflow_provider_kontext._tasks.task_defaults import default_retry_policy
from airflow_provider_kontext.operators.batch import KontextBatchGenerateOperator
from airflow_provider_kontext.operators.generate import KontextGenerateOperator
from airflow_provider_kontext.retry_policy import KontextRetryPolicy
from airflow_provider_kontext.sensors.task import KontextTaskSensor

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
    decision = KontextRetryPolicy().evaluate(error, try_number=1, max_tries=4)
    assert decision.action is RetryAction.FAIL
    assert type(error).__name__ in (decision.reason or "")


@pytest.mark.parametrize("error", AIRFLOW_DEFAULT, ids=lambda e: type(e).__name__)
def test_everything_else_is_airflows_normal_behaviour(error: BaseException) -> None:
    assert KontextRetryPolicy().evaluate(error, try_number=1, max_tries=4) == RetryDecision.default()


def test_a_rate_limit_is_retried_after_kies_retry_after() -> None:
    decision = KontextRetryPolicy().evaluate(exc.KontextRateLimitError("429", retry_after=7.5), 1, 4)
    assert decision.action is RetryAction.RETRY
    assert decision.retry_delay == timedelta(seconds=7.5)


def test_a_rate_limit_without_retry_after_waits_one_rate_window() -> None:
    decision = KontextRetryPolicy().evaluate(exc.KontextRateLimitError("429"), 1, 4)
    assert decision.action is RetryAction.RETRY
    assert decision.retry_delay == timedelta(seconds=KIE_WINDOW_SECONDS)


def test_maintenance_is_waited_out() -> None:
    decision = KontextRetryPolicy().evaluate(exc.KontextServiceUnavailableError("455"), 1, 4)
    assert decision.action is RetryAction.RETRY
    assert decision.retry_delay == timedelta(seconds=MAINTENANCE_RETRY_DELAY_SECONDS)


def test_subclasses_follow_their_parent() -> None:
    # A batch re-raises the first failure's class with a summary message; the advice must hold.
    class Wrapped(exc.KontextContentPolicyError):
        pass

    assert task_retry_advice(Wrapped("3 of 4 failed")).action is TaskRetry.FAIL


def test_the_policy_round_trips_through_its_serialized_form() -> None:
    policy = KontextRetryPolicy()
    assert isinstance(KontextRetryPolicy.deserialize(policy.serialize()), KontextRetryPolicy)


def _tasks(**task_kwargs: object) -> list[object]:
    return [
        KontextGenerateOperator(task_id="one", prompt="a fox", **task_kwargs),
        KontextBatchGenerateOperator(task_id="many", requests=[{"prompt": "a fox"}], **task_kwargs),
        KontextTaskSensor(task_id="wait", kie_task_ids="abc", **task_kwargs),
    ]


def test_the_provider_tasks_use_the_policy_when_the_author_set_none() -> None:
    for task in _tasks():
        assert task.retry_policy is default_retry_policy()  # type: ignore[attr-defined]
        assert isinstance(task.retry_policy, KontextRetryPolicy)  # type: ignore[attr-defined]


def test_an_authors_own_policy_wins_on_the_task() -> None:
    mine = ExceptionRetryPolicy(rules=[RetryRule(exception=ValueError, action=RetryAction.FAIL)])
    for task in _tasks(retry_policy=mine):
        assert task.retry_policy is mine  # type: ignore[attr-defined]


def test_an_authors_own_policy_wins_from_default_args() -> None:
    mine = ExceptionRetryPolicy(rules=[])
    with DAG(dag_id="kontext_policy_default_args", schedule=None, default_args={"retry_policy": mine}):
        tasks = _tasks()
    for task in tasks:
        assert task.retry_policy is mine  # type: ignore[attr-defined]


def test_a_mapped_operator_gets_the_policy_when_unmapped() -> None:
    with DAG(dag_id="kontext_policy_mapped", schedule=None):
        mapped = KontextGenerateOperator.partial(task_id="gen").expand(prompt=["a", "b"])
    unmapped = mapped.unmap({"prompt": "a"})  # what the worker runs, for map index 0
    assert isinstance(unmapped.retry_policy, KontextRetryPolicy)
