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
from typing import TYPE_CHECKING, Any

from airflow_provider_kontext._protocol.defaults import DEFAULT_CONN_ID, DEFAULT_MAX_IMAGE_BYTES
from airflow_provider_kontext._protocol.polling import TaskWaiter, WaitResult, WaitStatus
from airflow_provider_kontext._protocol.record import TaskRecord, TaskStatus
from airflow_provider_kontext._protocol.schedule import PollSchedule
from airflow_provider_kontext._tasks.prepare import check_output_path as check_output_path
from airflow_provider_kontext._tasks.task_defaults import DEFER_TIMEOUT_BUFFER_SECONDS as DEFER_TIMEOUT_BUFFER_SECONDS
from airflow_provider_kontext.exceptions import KontextError
from airflow_provider_kontext.results import NOT_CREATED_STATUS, publish

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from airflow.providers.common.compat.sdk import BaseOperator, Context

    from airflow_provider_kontext.hooks.kontext import KontextHook


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


def defer_to_trigger(
    task: BaseOperator,
    *,
    kontext_conn_id: str,
    waiter: TaskWaiter,
    poll_interval: float,
    first_poll_at: float | None = None,
    resume_kwargs: dict[str, Any] | None = None,
    end_from_trigger: str | None = None,
) -> None:
    """
    Hand the wait to the triggerer; raises ``TaskDeferred``. Resumes in ``execute_complete``.

    ``end_from_trigger`` (see :class:`KontextTaskTrigger`) lets a successful wait end the task in
    the triggerer instead; the resume kwargs' ``create_stats`` then travel with the trigger too.

    ``first_poll_at`` (epoch seconds) is when the trigger makes its first check; ``None``: at once.

    ``resume_kwargs`` reach ``execute_complete`` as keyword arguments: what the worker learnt
    before deferring (for example which creates failed) must survive into the resumed process.
    """
    from airflow_provider_kontext.triggers.task import KontextTaskTrigger

    end_time = waiter.end_time if waiter.end_time is not None else time.time()
    task.defer(
        trigger=KontextTaskTrigger(
            kontext_conn_id=kontext_conn_id,
            kie_task_ids=waiter.kie_task_ids,
            end_time=end_time,
            poll_interval=poll_interval,
            first_poll_at=first_poll_at,
            end_from_trigger=end_from_trigger,
            create_stats=(resume_kwargs or {}).get("create_stats") if end_from_trigger else None,
        ),
        method_name="execute_complete",
        kwargs=resume_kwargs,
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
    just_created: bool = False,
    resume_kwargs: dict[str, Any] | None = None,
    end_from_trigger: str | None = None,
) -> WaitResult:
    """
    Wait for ``kie_task_ids`` on the worker, or defer (raising ``TaskDeferred``) when ``deferrable``.

    Returns only when the wait finished on the worker; a deferred wait finishes in the task's
    ``execute_complete``. ``just_created`` says every task was created a moment ago: none can
    be done yet, so both paths follow :class:`.PollSchedule`'s quiet start, and a deferrable
    task defers at once, holding its worker slot no longer than the creates took. Otherwise
    (re-attached tasks, a sensor's ids) some may have finished long ago: the first check is
    immediate, on the worker, so a finished wait never pays a deferral.
    """
    schedule = PollSchedule(interval=poll_interval, first_delay=None if just_created else 0.0)
    if not deferrable:
        return hook.wait_for_tasks(kie_task_ids, timeout=budget, schedule=schedule)
    waiter = TaskWaiter(kie_task_ids, end_time=time.time() + budget)
    if just_created:
        first_check = schedule.first_poll_delay
    else:
        outcome = check_once(task, hook, waiter)
        if outcome is not None:
            return outcome
        first_check = schedule.interval
    defer_to_trigger(
        task,
        kontext_conn_id=kontext_conn_id,
        waiter=waiter,
        poll_interval=poll_interval,
        first_poll_at=time.time() + first_check,
        resume_kwargs=resume_kwargs,
        end_from_trigger=end_from_trigger,
    )
    raise AssertionError("defer() returned")  # pragma: no cover - defer() raises TaskDeferred


def finish_wait(
    task: BaseOperator,
    context: Context,
    result: WaitResult,
    *,
    allow_failed_tasks: bool = False,
    output_path: Any = None,
    output_file_name: str | None = None,
    max_image_bytes: int = DEFAULT_MAX_IMAGE_BYTES,
    not_created: Mapping[str, Any] | None = None,
    create_stats: Sequence[Mapping[str, Any] | None] | None = None,
) -> list[dict[str, Any]]:
    """
    End a wait on the worker: raise the typed error, or store the images and publish the results.

    Images are copied to ``output_path`` here, on the worker, never in the triggerer (a trigger
    must not block its event loop with downloads). Each stored URI joins its result dict as
    ``stored_path``, and the task's declared outlets get an Asset event listing the files.
    ``not_created`` (input index as a string -> :func:`not_created_record`) puts the items
    whose create failed back in their places, so results stay in request order.
    ``create_stats`` (one per item, ``None`` where the item re-attached) joins each result as
    ``create_stats``: what getting it created cost (attempts, 429s, seconds waited).
    """
    task.log.info("%s", result.message)
    if not_created:
        task.log.info("%d item(s) were not created: their creates failed.", len(not_created))
    if not (allow_failed_tasks and result.status is WaitStatus.FAILED):
        result.raise_for_status()
    records = result.result_dicts(not_created=not_created, create_stats=create_stats)
    if output_path is not None:
        from airflow_provider_kontext.hooks.kontext import KontextHook

        stored = store_images(
            KontextHook(kontext_conn_id=getattr(task, "kontext_conn_id", DEFAULT_CONN_ID)),
            context,
            records,
            output_path=output_path,
            file_name=output_file_name,
            max_bytes=max_image_bytes,
        )
        task.log.info("Stored %d image(s): %s", len(stored), stored)
        for outlet in getattr(task, "outlets", None) or []:
            context["outlet_events"][outlet].extra["kontext_images"] = stored  # type: ignore[assignment,unused-ignore]
    publish(context, records)
    return records


def not_created_record(item: Mapping[str, Any], error: KontextError) -> dict[str, Any]:
    """
    The result dict of an item whose create failed: same keys as a task's, no kie task id.

    ``error_class`` names the typed error (``KontextSubmissionOutcomeUnknownError`` when kie may
    have created and billed it anyway), so a caller can tell "refused" from "ask kie's logs".
    """
    record: dict[str, Any] = dict.fromkeys(TaskRecord.__dataclass_fields__)
    for name in ("prompt", "model", "aspect_ratio", "output_format"):
        value = item.get(name)
        record[name] = value if isinstance(value, str) else None
    record.update(
        status=NOT_CREATED_STATUS,
        error_code=error.code,
        error_message=str(error),
        error_class=type(error).__name__,
    )
    return record


def store_images(
    hook: KontextHook,
    context: Context,
    records: list[dict[str, Any]],
    *,
    output_path: Any,
    file_name: str | None,
    max_bytes: int,
) -> list[str]:
    """Copy every succeeded image to ``output_path`` under a deterministic name; return the URIs."""
    from airflow_provider_kontext._tasks.storage import (
        guess_image_extension,
        image_file_name,
        persist_image,
        resolve_output_path,
    )

    base = resolve_output_path(output_path)
    ti = context["ti"]
    stored: list[str] = []
    for index, record in enumerate(records):
        url = record.get("result_image_url")
        if record.get("status") != TaskStatus.SUCCESS.value or not url:
            continue
        name = image_file_name(
            file_name,
            dag_id=ti.dag_id,
            run_id=ti.run_id,
            task_id=ti.task_id,
            map_index=ti.map_index if ti.map_index is not None else -1,
            kie_task_id=record["kie_task_id"],
            ext=guess_image_extension(url, default=record.get("output_format") or "jpeg"),
            index=index if len(records) > 1 else None,
        )
        record["stored_path"] = persist_image(hook, url, base / name, max_bytes=max_bytes).path
        stored.append(record["stored_path"])
    return stored
