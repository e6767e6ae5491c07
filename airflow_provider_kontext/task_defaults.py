"""What the provider's operators, sensor and decorators set on themselves when the DAG author did not.

Today one thing: :class:`~airflow_provider_kontext.retry_policy.KontextRetryPolicy` as the
``retry_policy`` (Airflow 3.3+). An author's own policy, from the task or from ``default_args``,
always wins; on Airflow versions without retry policies nothing is set.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from airflow.sdk import BaseOperator
    from airflow.sdk.definitions.retry_policy import RetryPolicy

#: Airflow's module of retry policies; absent before 3.3.
_AIRFLOW_RETRY_POLICY_MODULE = "airflow.sdk.definitions.retry_policy"
#: First Airflow version whose triggerer is known to store a ``TaskSuccessEvent``'s XComs and end the
#: task (read in 3.2.2's and 3.3's ``models/trigger.py``; shown end to end on 3.3.2). Below it a
#: deferred task always resumes on a worker and the sensor never starts in the triggerer.
END_FROM_TRIGGER_MIN_AIRFLOW: Final = (3, 2)


@functools.cache
def airflow_ends_tasks_from_triggers() -> bool:
    """Whether this Airflow ends a task from a trigger's ``TaskSuccessEvent`` and stores its XComs."""
    from airflow import __version__ as airflow_version
    from packaging.version import Version

    return Version(airflow_version).release[:2] >= END_FROM_TRIGGER_MIN_AIRFLOW


@functools.cache
def default_retry_policy() -> RetryPolicy | None:
    """The provider's retry policy, built once per process; ``None`` where Airflow has no retry policies."""
    try:
        from airflow_provider_kontext.retry_policy import KontextRetryPolicy
    except ModuleNotFoundError as err:
        if err.name != _AIRFLOW_RETRY_POLICY_MODULE:
            raise  # a real import error, not an older Airflow
        return None
    return KontextRetryPolicy()


def apply_default_retry_policy(task: BaseOperator) -> None:
    """
    Give ``task`` the provider's retry policy unless it already has one.

    Call after ``BaseOperator.__init__``, which has applied the task's own ``retry_policy`` and
    the DAG's ``default_args``: ``None`` then means the author set none.
    """
    if getattr(task, "retry_policy", None) is not None:
        return
    policy = default_retry_policy()
    if policy is not None:
        task.retry_policy = policy
