"""``KontextRetryPolicy``: Airflow retries (3.3+) that do not pay again for a guaranteed failure.

``retries=3`` on a prompt kie refuses for content policy would otherwise run four tries and
create, and pay for, four tasks. The policy lets Airflow ask, per exception, whether a new try
can help; the answer comes from :func:`~airflow_provider_kontext._protocol.retry.task_retry_advice`,
which sits beside the per-request retry rules, so what is retried where is decided in one place.

The provider's operators, sensor and decorators use it when the DAG author set no
``retry_policy`` of their own (:mod:`~airflow_provider_kontext._tasks.task_defaults`). Retry policies
are new in Airflow 3.3: on older versions this module still imports, constructing the policy raises
:class:`~airflow_provider_kontext.exceptions.KontextAirflowVersionError`, and the tasks carry none
(each try with retries says so in its log).
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Any

from airflow_provider_kontext._compat import RetryDecision, RetryPolicy

if TYPE_CHECKING:
    from airflow.sdk.definitions.context import Context

__all__ = ["KontextRetryPolicy"]


class KontextRetryPolicy(RetryPolicy):
    """
    Fail at once where a retry cannot help or could pay twice; wait out kie's rate limit and maintenance.

    * no retry: content policy, validation, auth, insufficient credits, feature disabled, and a
      create whose outcome is unknown (``KontextSubmissionOutcomeUnknownError``);
    * retry after kie's ``Retry-After`` on its rate limit, and after a maintenance delay on
      maintenance (still within the task's ``retries``);
    * everything else: Airflow's normal retry behaviour (``retries``, ``retry_delay``, ...).

    Stateless, so one instance can serve every task. To keep the provider's rules and add your
    own, evaluate your rules first and fall back to this policy's :meth:`evaluate`.
    """

    def evaluate(
        self,
        exception: BaseException,
        try_number: int,
        max_tries: int,
        context: Context | None = None,
    ) -> RetryDecision:
        # Imported at failure time, on the worker: DAG parsing only needs the class.
        from airflow_provider_kontext._protocol.retry import TaskRetry, task_retry_advice

        advice = task_retry_advice(exception)
        if advice.action is TaskRetry.FAIL:
            return RetryDecision.fail(advice.reason)
        if advice.action is TaskRetry.RETRY:
            delay = timedelta(seconds=advice.delay) if advice.delay is not None else None
            return RetryDecision.retry(delay, advice.reason)
        return RetryDecision.default()

    def serialize(self) -> dict[str, Any]:
        """No parameters: the rules live in code, so the name is all there is to store."""
        return {"__type": type(self).__name__}

    @classmethod
    def deserialize(cls, data: dict[str, Any]) -> KontextRetryPolicy:
        return cls()

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"
