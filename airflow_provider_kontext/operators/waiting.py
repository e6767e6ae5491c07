"""How every Kontext task waits: one path for the operators and the sensor.

Waiting is the same whether one image or a batch is watched and whether a generate operator or
a sensor asks: check once on the worker (a finished task needs no trip through the triggerer),
then either poll on the worker or defer to :class:`KontextTaskTrigger` with a wall-clock deadline
and a buffered deferral timeout, so the trigger's own ``timeout`` event (and with it
``execute_complete``) always wins over Airflow's silent deferral timeout.
"""

from __future__ import annotations

import time
from datetime import timedelta
from typing import TYPE_CHECKING, Final

from airflow_provider_kontext.exceptions import KontextError
from airflow_provider_kontext.protocol.polling import TaskWaiter, WaitResult

if TYPE_CHECKING:
    from collections.abc import Sequence

    from airflow.providers.common.compat.sdk import BaseOperator

    from airflow_provider_kontext.hooks.kontext import KontextHook

#: Extra time Airflow's deferral backstop gives the trigger beyond its own deadline.
DEFER_TIMEOUT_BUFFER_SECONDS: Final = 60.0


def wait_budget(timeout: float, execution_timeout: timedelta | None) -> float:
    """Seconds to wait: ``timeout``, cut to ``execution_timeout`` when that is shorter."""
    budget = float(timeout)
    if execution_timeout is not None:
        budget = min(budget, execution_timeout.total_seconds())
    return budget


def check_once(task: BaseOperator, hook: KontextHook, waiter: TaskWaiter) -> WaitResult | None:
    """One status check before deferring; a failed check only means "defer anyway"."""
    try:
        return hook.poll(waiter)
    except KontextError as err:
        task.log.warning("Status check before deferring failed (%s); deferring anyway.", err)
        return None


def defer_to_trigger(task: BaseOperator, *, kontext_conn_id: str, waiter: TaskWaiter, poll_interval: float) -> None:
    """Hand the wait to the triggerer; raises ``TaskDeferred``. Resumes in ``execute_complete``."""
    from airflow_provider_kontext.triggers.task import KontextTaskTrigger

    end_time = waiter.end_time if waiter.end_time is not None else time.time()
    task.defer(
        trigger=KontextTaskTrigger(
            kontext_conn_id=kontext_conn_id,
            kie_task_ids=waiter.kie_task_ids,
            end_time=end_time,
            poll_interval=poll_interval,
        ),
        method_name="execute_complete",
        timeout=timedelta(seconds=max(end_time - time.time(), 0) + poll_interval + DEFER_TIMEOUT_BUFFER_SECONDS),
    )


def wait_for(
    task: BaseOperator,
    hook: KontextHook,
    kie_task_ids: Sequence[str],
    *,
    kontext_conn_id: str,
    deferrable: bool,
    poll_interval: float,
    budget: float,
) -> WaitResult:
    """
    Wait for ``kie_task_ids`` on the worker, or defer (raising ``TaskDeferred``) when ``deferrable``.

    Returns only when the wait finished on the worker; a deferred wait finishes in the task's
    ``execute_complete``.
    """
    if not deferrable:
        return hook.wait_for_tasks(kie_task_ids, timeout=budget, poll_interval=poll_interval)
    waiter = TaskWaiter(kie_task_ids, end_time=time.time() + budget)
    outcome = check_once(task, hook, waiter)
    if outcome is not None:
        return outcome
    defer_to_trigger(task, kontext_conn_id=kontext_conn_id, waiter=waiter, poll_interval=poll_interval)
    raise AssertionError("defer() returned")  # pragma: no cover - defer() raises TaskDeferred
