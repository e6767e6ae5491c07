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
from airflow_provider_kontext._protocol.polling import PollSchedule, TaskWaiter, WaitResult, WaitStatus
from airflow_provider_kontext._protocol.record import ApiFamily, TaskStatus
from airflow_provider_kontext._tasks.task_defaults import DEFER_TIMEOUT_BUFFER_SECONDS
from airflow_provider_kontext.exceptions import KontextError
from airflow_provider_kontext.results import SUCCESS_EVENT_PAYLOAD, image_urls, publish

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence

    from airflow.providers.common.compat.sdk import BaseOperator, Context

    from airflow_provider_kontext.hooks.kontext import KontextHook


def wait_budget(timeout: float, execution_timeout: timedelta | None) -> float:
    """Seconds to wait: ``timeout``, cut to ``execution_timeout`` when that is shorter."""
    budget = float(timeout)
    if execution_timeout is not None:
        budget = min(budget, execution_timeout.total_seconds())
    return budget


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
    creates: Sequence[Mapping[str, Any]] | None = None,
    api: ApiFamily = ApiFamily.KONTEXT,
) -> WaitResult:
    """
    Wait for ``kie_task_ids`` (one API family, ``api``) on the worker, or defer to :class:`KontextTaskTrigger`.

    Returns only when the wait finished on the worker; a deferred wait raises ``TaskDeferred``
    and finishes in the task's ``execute_complete``, which gets ``resume_kwargs`` as keyword
    arguments: what the worker learnt before deferring must survive into the resumed process.
    ``end_from_trigger`` (see the trigger) lets a successful wait end the task in the triggerer
    instead; ``creates`` (the create report) then travels with the trigger.

    ``just_created`` says every task was created a moment ago: none can be done yet, so both
    paths follow :class:`.PollSchedule`'s quiet start, and a deferrable task defers at once,
    holding its worker slot no longer than the creates took. Otherwise (re-attached tasks, a
    sensor's ids) some may have finished long ago: the first check is immediate, on the worker,
    so a finished wait never pays a deferral (a failed check only means "defer anyway").
    """
    schedule = PollSchedule(interval=poll_interval, first_delay=None if just_created else 0.0)
    if not deferrable:
        return hook.wait_for_tasks(kie_task_ids, timeout=budget, schedule=schedule, api=api)
    end_time = time.time() + budget
    first_check = schedule.first_poll_delay
    if not just_created:
        try:
            outcome = hook.poll(TaskWaiter(kie_task_ids, end_time=end_time, api=api))
        except KontextError as err:
            task.log.warning("Status check before deferring failed (%s); deferring anyway.", err)
            outcome = None
        if outcome is not None:
            return outcome
        first_check = schedule.interval
    from airflow_provider_kontext.triggers.task import KontextTaskTrigger

    task.defer(
        trigger=KontextTaskTrigger(
            kontext_conn_id=kontext_conn_id,
            kie_task_ids=kie_task_ids,
            end_time=end_time,
            poll_interval=poll_interval,
            first_poll_at=time.time() + first_check,
            end_from_trigger=end_from_trigger,
            creates=creates if end_from_trigger else None,
            api=api.value,
        ),
        method_name="execute_complete",
        kwargs=resume_kwargs,
        timeout=timedelta(seconds=max(end_time - time.time(), 0) + poll_interval + DEFER_TIMEOUT_BUFFER_SECONDS),
    )
    raise AssertionError("defer() returned")  # pragma: no cover - defer() raises TaskDeferred


def resumed_result(
    event: Any,
    *,
    hook: KontextHook,
    ended_ids: Callable[[], Sequence[str]] | None,
    timeout: float,
    poll_interval: float,
    api: ApiFamily = ApiFamily.KONTEXT,
) -> WaitResult:
    """
    The result a resumed task finishes with: its trigger's event, validated.

    A trigger that ended the task itself (``TaskSuccessEvent``) leaves nothing to resume, yet
    ``dag.test()`` resumes the task anyway, with that event's bare payload. The kie tasks are
    done then: with ``ended_ids`` (the tasks that may end in the triggerer give it) they are
    read once more; without it the payload is refused like any malformed event.
    """
    if ended_ids is not None and isinstance(event, str) and event == SUCCESS_EVENT_PAYLOAD:
        schedule = PollSchedule(interval=poll_interval, first_delay=0.0)
        return hook.wait_for_tasks(list(ended_ids()), timeout=timeout, schedule=schedule, api=api)
    return WaitResult.from_event(event)


def finish_wait(
    task: BaseOperator,
    context: Context,
    result: WaitResult,
    *,
    allow_failed_tasks: bool = False,
    output_path: Any = None,
    output_file_name: str | None = None,
    max_image_bytes: int = DEFAULT_MAX_IMAGE_BYTES,
    creates: Sequence[Mapping[str, Any]] | None = None,
) -> list[dict[str, Any]]:
    """
    End a wait on the worker: raise the typed error, or store the images and publish the results.

    Images are copied to ``output_path`` here, on the worker, never in the triggerer (a trigger
    must not block its event loop with downloads). Each stored URI joins its result dict as
    ``stored_path``, and the task's declared outlets get an Asset event listing the files.
    ``creates`` is the create report (:meth:`.ledger.Created.report`, one entry per item): the
    items whose create failed go back in their places, so results stay in request order, and
    every result gets ``create_stats``: what getting it created cost (attempts, 429s, waits).
    """
    task.log.info("%s", result.message)
    not_created = sum(1 for entry in creates or () if "not_created" in entry)
    if not_created:
        task.log.info("%d item(s) were not created: their creates failed.", not_created)
    if not (allow_failed_tasks and result.status is WaitStatus.FAILED):
        result.raise_for_status()
    records = result.result_dicts(creates)
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
    spent = [record["credits"] for record in records if isinstance(record.get("credits"), (int, float))]
    if spent:
        estimated = sum(1 for record in records if record.get("credits_estimated"))
        task.log.info(
            "Credits: %g for %d task(s)%s.",
            sum(spent),
            len(spent),
            f" ({estimated} estimated from the catalog's prices: kie reported none)" if estimated else "",
        )
    publish(context, records)
    return records


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
        urls = image_urls(record)
        if record.get("status") != TaskStatus.SUCCESS.value or not urls:
            continue
        paths = []
        for position, url in enumerate(urls):
            name = image_file_name(
                file_name,
                dag_id=ti.dag_id,
                run_id=ti.run_id,
                task_id=ti.task_id,
                map_index=ti.map_index if ti.map_index is not None else -1,
                kie_task_id=record["kie_task_id"],
                ext=guess_image_extension(url, default=record.get("output_format") or "jpeg"),
                index=index if len(records) > 1 else None,
                image=position if len(urls) > 1 else None,
            )
            paths.append(persist_image(hook, url, base / name, max_bytes=max_bytes).path)
        record["stored_path"] = paths[0]
        if len(paths) > 1:
            record["stored_paths"] = paths
        stored.extend(paths)
    return stored
