"""What the provider's operators, sensor and decorators set on themselves when the DAG author did not.

:class:`~airflow_provider_kontext.retry_policy.KontextRetryPolicy` as the ``retry_policy``
(Airflow 3.3+): an author's own policy, from the task or from ``default_args``, always wins; on
Airflow versions without retry policies nothing is set (and a try with retries says so in its log,
:func:`~airflow_provider_kontext._compat.warn_no_retry_policy`). And whether a successful deferred wait may
end in the triggerer (:func:`end_mode`, Airflow 3.2+). Light on purpose: DAG files construct tasks.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any, Final

from airflow_provider_kontext import _compat
from airflow_provider_kontext.results import END_RETURN_ALL, END_RETURN_FIRST, END_RETURN_NOTHING

if TYPE_CHECKING:
    from airflow.sdk import BaseOperator
    from airflow.sdk.definitions.retry_policy import RetryPolicy

#: Extra time Airflow's deferral backstop gives the trigger beyond its own deadline.
DEFER_TIMEOUT_BUFFER_SECONDS: Final = 60.0


def airflow_ends_tasks_from_triggers() -> bool:
    """Whether this Airflow ends a task from a trigger's ``TaskSuccessEvent`` and stores its XComs (3.2+)."""
    return _compat.AIRFLOW_ENDS_TASKS_FROM_TRIGGERS


@functools.cache
def default_retry_policy() -> RetryPolicy | None:
    """The provider's retry policy, built once per process; ``None`` where Airflow has no retry policies (< 3.3)."""
    if not _compat.AIRFLOW_V_3_3_PLUS:
        return None
    from airflow_provider_kontext.retry_policy import KontextRetryPolicy

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


def end_mode(task: BaseOperator, provider_class: type, *, output_path: Any, returns_list: bool) -> str | None:
    """
    How a successful deferred wait of ``task`` may end in the triggerer; ``None``: resume on a worker.

    Never for a subclass of ``provider_class`` (the provider's operator or sensor) that overrides
    ``execute_complete`` or ``finish``: it expects its resume to run. Otherwise only when the
    worker has nothing left to do after the wait: no ``output_path`` to copy images
    to, no outlets to emit an Asset event for, no ``multiple_outputs`` to split the result, and an
    Airflow that honours ``TaskSuccessEvent(xcoms=...)``. And only for a task with no downstream
    task: Airflow 3.3.2 stores a trigger's XComs JSON-encoded (``XComModel.set`` serializes them,
    the Execution API hands the stored text to workers as is), so a downstream task pulling them
    would get a JSON string instead of the dict. The REST API and the UI decode them correctly.
    """
    if any(getattr(type(task), name) is not getattr(provider_class, name) for name in ("execute_complete", "finish")):
        return None
    if output_path is not None or getattr(task, "outlets", None) or getattr(task, "multiple_outputs", False):
        return None
    if getattr(task, "downstream_task_ids", None):
        return None
    if not airflow_ends_tasks_from_triggers():
        return None
    if not getattr(task, "do_xcom_push", True):
        return END_RETURN_NOTHING
    return END_RETURN_ALL if returns_list else END_RETURN_FIRST
