"""``KontextTaskTrigger``: wait for kie tasks in the triggerer, without holding a worker slot.

Thin on purpose (the anthropic/common-ai batch-trigger shape): the task was created on the
worker; this only reads its status. It serializes plain identifiers and a wall-clock deadline,
never the API key or headers, and it has no side effects, so running it twice (a triggerer
restart, an HA takeover) is harmless: it resumes against the same deadline and never creates
a task. The decision logic is :class:`~airflow_provider_kontext._protocol.polling.TaskWaiter`,
shared with the blocking path of the operator and the sensor.

The triggerer imports this module *on its event loop* the first time it meets the classpath, so
the module imports nothing heavy: the aiohttp client (aiohttp takes a noticeable fraction of a
second to import) is loaded by the first :meth:`KontextTaskTrigger.run` in a worker thread, and
every other trigger in the process keeps running meanwhile.
"""

from __future__ import annotations

import asyncio
import importlib
import time
from typing import TYPE_CHECKING, Any, Final

from airflow.triggers.base import BaseTrigger, TaskSuccessEvent, TriggerEvent

from airflow_provider_kontext._protocol.defaults import DEFAULT_NOT_FOUND_GRACE_SECONDS, DEFAULT_POLL_INTERVAL_SECONDS
from airflow_provider_kontext._protocol.polling import (
    PollSchedule,
    TaskWaiter,
    WaitResult,
    WaitStatus,
)
from airflow_provider_kontext._protocol.record import ApiFamily
from airflow_provider_kontext._protocol.request import check_poll_interval, check_task_ids
from airflow_provider_kontext.exceptions import KontextError
from airflow_provider_kontext.results import (
    END_MODES,
    END_RETURN_ALL,
    END_RETURN_FIRST,
    result_xcoms,
)

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Mapping, Sequence


#: Imported off the loop by the first run(): aiohttp, and the connection lookup's compat layer.
_HEAVY_MODULES: Final = ("airflow_provider_kontext.hooks.async_client", "airflow.providers.common.compat.connection")
_heavy_modules_loaded = False


async def _load_heavy_modules() -> None:
    """
    Import the client stack in a thread, once per process, so no trigger's loop stalls on it.

    Triggers that start together each wait for the thread; the import lock makes the later ones
    wait for the first import to finish rather than see a half-initialised module.
    """
    global _heavy_modules_loaded
    if _heavy_modules_loaded:
        return
    for name in _HEAVY_MODULES:
        await asyncio.to_thread(importlib.import_module, name)
    _heavy_modules_loaded = True


class KontextTaskTrigger(BaseTrigger):
    """
    Poll kie until every task is terminal or the deadline passes; yield exactly one event.

    The event is :meth:`WaitResult.to_event`: ``status`` (``success``/``failed``/``timeout``/
    ``error``), ``kie_task_ids``, one record per task in input order, and a message.

    :param kontext_conn_id: The Airflow connection, looked up asynchronously in the triggerer.
    :param kie_task_ids: The kie tasks to wait for.
    :param end_time: Wall-clock deadline (``time.time()`` epoch seconds). Wall clock, not
        monotonic, because the trigger may resume in another process after a restart and must
        keep the same deadline rather than open a fresh window.
    :param poll_interval: Seconds between status checks.
    :param not_found_grace: Seconds ``recordInfo is null`` counts as "not persisted yet".
    :param first_poll_at: Wall-clock time (epoch seconds) of the first status check; ``None``
        checks at once. The operator sets it for tasks it has just created, which cannot be
        done yet (:class:`~airflow_provider_kontext._protocol.polling.PollSchedule`). Wall clock,
        like ``end_time``: a trigger resumed after a restart past this time checks at once.
    :param end_from_trigger: ``None`` (default): every outcome resumes the task on a worker.
        Otherwise a *successful* wait ends the task here with a ``TaskSuccessEvent`` carrying the
        XComs the worker's resume would push (``result_image_url``, ``result_image_urls`` and,
        unless ``"nothing"``, ``return_value``: the ``"first"`` result dict or ``"all"`` of them);
        failures, timeouts and errors still resume on the worker, for the typed error and the
        retry policy. The worker sets it only when it has nothing left to do after the wait.
    :param creates: The create report (one entry per item, each with its ``create_stats``), which
        shapes the result dicts when the task ends here.
    :param timeout: Seconds to wait from the trigger's first run, used when ``end_time`` is
        ``None`` (a task started in the triggerer, whose kwargs are fixed when the DAG is parsed).
    :param api: The tasks' API family, ``"kontext"`` (default, and what triggers serialized by
        older versions mean) or ``"market"``: which status endpoint the polls read.
    """

    def __init__(
        self,
        kontext_conn_id: str,
        kie_task_ids: Sequence[str],
        end_time: float | None = None,
        poll_interval: float = DEFAULT_POLL_INTERVAL_SECONDS,
        not_found_grace: float = DEFAULT_NOT_FOUND_GRACE_SECONDS,
        first_poll_at: float | None = None,
        end_from_trigger: str | None = None,
        creates: Sequence[Mapping[str, Any]] | None = None,
        timeout: float | None = None,
        api: str = ApiFamily.KONTEXT.value,
    ) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.api = ApiFamily(api)
        self.kontext_conn_id = kontext_conn_id
        self.kie_task_ids = list(kie_task_ids)
        if end_time is None and timeout is None:
            raise ValueError("KontextTaskTrigger needs end_time or timeout.")
        if end_from_trigger is not None and end_from_trigger not in END_MODES:
            raise ValueError(f"end_from_trigger must be one of {sorted(END_MODES)} or None, not {end_from_trigger!r}.")
        self.end_time = None if end_time is None else float(end_time)
        self.timeout = None if timeout is None else float(timeout)
        self.poll_interval = float(poll_interval)
        self.not_found_grace = float(not_found_grace)
        self.first_poll_at = None if first_poll_at is None else float(first_poll_at)
        self.end_from_trigger = end_from_trigger
        self.creates = None if creates is None else [dict(entry) for entry in creates]
        # Checks ids and interval now, in the worker, rather than later in the triggerer.
        check_poll_interval(self.poll_interval)
        check_task_ids(self.kie_task_ids)

    def _deadline(self) -> float:
        if self.end_time is None:  # started in the triggerer: the window opens at the first run
            assert self.timeout is not None  # checked in __init__
            self.end_time = time.time() + self.timeout
        return self.end_time

    def serialize(self) -> tuple[str, dict[str, Any]]:
        """Plain identifiers only: no key, no headers, nothing that needs a secret to rebuild."""
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "kontext_conn_id": self.kontext_conn_id,
                "kie_task_ids": list(self.kie_task_ids),
                "end_time": self.end_time,
                "poll_interval": self.poll_interval,
                "not_found_grace": self.not_found_grace,
                "first_poll_at": self.first_poll_at,
                "end_from_trigger": self.end_from_trigger,
                "creates": self.creates,
                "timeout": self.timeout,
                "api": self.api.value,
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        waiter = TaskWaiter(
            self.kie_task_ids, end_time=self._deadline(), not_found_grace=self.not_found_grace, api=self.api
        )
        if waiter.timed_out(time.time()):
            # Resumed after the deadline (e.g. a long triggerer outage): no new window, no poll.
            yield TriggerEvent(waiter.timeout_result().to_event())
            return
        try:
            result = await self._wait(waiter)
        except KontextError as err:  # the connection could not be read, for instance
            result = WaitResult(WaitStatus.ERROR, waiter.records, str(err), type(err).__name__)
        if result.status is WaitStatus.SUCCESS and self.end_from_trigger is not None:
            self.log.info("%s Ending the task in the triggerer: the worker has nothing left to do.", result.message)
            yield TaskSuccessEvent(xcoms=self.success_xcoms(result))
            return
        yield TriggerEvent(result.to_event())

    def success_xcoms(self, result: WaitResult) -> dict[str, Any]:
        """The XComs the worker's resume would push for this successful ``result``; no I/O."""
        records = result.result_dicts(self.creates)
        xcoms = result_xcoms(records)
        if self.end_from_trigger == END_RETURN_FIRST:
            xcoms["return_value"] = records[0]
        elif self.end_from_trigger == END_RETURN_ALL:
            xcoms["return_value"] = records
        return xcoms

    async def _wait(self, waiter: TaskWaiter) -> WaitResult:
        await _load_heavy_modules()
        # Already in sys.modules now: this line costs a dict lookup, not an import.
        from airflow_provider_kontext.hooks.async_client import shared_client, shared_settings

        settings = await shared_settings(self.kontext_conn_id)
        schedule = PollSchedule(interval=self.poll_interval)
        last_progress = waiter.progress()
        if self.first_poll_at is not None:
            await asyncio.sleep(max(0.0, min(self.first_poll_at, waiter.end_time or 0.0) - time.time()))
        async with shared_client(settings) as client:
            while True:
                if waiter.timed_out(time.time()):
                    return waiter.timeout_result()
                outcome = await client.poll(waiter)
                if outcome is not None:
                    return outcome
                progress = waiter.progress()
                if progress != last_progress:  # log changes only: a triggerer may hold thousands
                    self.log.info("%s", progress)
                    last_progress = progress
                await asyncio.sleep(schedule.delay(1, now=time.time(), end_time=waiter.end_time))

    async def on_kill(self) -> None:
        """
        kie has no cancel endpoint, so a killed wait cannot stop the generation it watched.

        Runs on Airflow 3.3+ when a user kills the deferred task; it only says what was left
        running, since those tasks are still billed and their images can still be collected.
        """
        self.log.warning(
            "Deferred wait killed; kie has no cancel API, so task(s) %s keep running on kie.",
            self.kie_task_ids,
        )
