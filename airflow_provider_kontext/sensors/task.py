"""``KontextTaskSensor``: wait for kie tasks created elsewhere and push their image URLs to XCom."""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseSensorOperator, PokeReturnValue

from airflow_provider_kontext import _compat
from airflow_provider_kontext._compat import conf
from airflow_provider_kontext._protocol.defaults import (
    DEFAULT_CONN_ID,
    DEFAULT_MAX_IMAGE_BYTES,
    DEFAULT_POLL_INTERVAL_SECONDS,
    DEFAULT_TIMEOUT_SECONDS,
)
from airflow_provider_kontext._protocol.record import ApiFamily
from airflow_provider_kontext._protocol.request import check_task_id
from airflow_provider_kontext._tasks.prepare import check_output_path, is_unrendered
from airflow_provider_kontext._tasks.task_defaults import apply_default_retry_policy
from airflow_provider_kontext.links import KontextImageLink

if TYPE_CHECKING:
    from collections.abc import Sequence

    from airflow.providers.common.compat.sdk import Context
    from airflow.triggers.base import StartTriggerArgs

    from airflow_provider_kontext._protocol.polling import TaskWaiter, WaitResult
    from airflow_provider_kontext.hooks.kontext import KontextHook

# The waiting machinery (polling, envelope parsing, retry policy) is imported where a poke or
# a resume runs it, not at module import: DAG files using the sensor are parsed over and over.


class KontextTaskSensor(BaseSensorOperator):
    """
    Wait until one or several kie tasks finish, without holding a worker slot when deferrable.

    Returns the result dict for one id, or the list of result dicts in input order for several,
    and pushes ``result_image_url`` (the first) and ``result_image_urls`` (all). A failed task
    raises its typed error (content policy, generation failed, ...); ``timeout`` raises
    ``AirflowSensorTimeout`` (or skips with ``soft_fail``), in every mode.

    Poke, reschedule and deferrable modes share one decision object with the trigger, so they
    cannot disagree about what "done" means.

    :param kie_task_ids: A kie task id or a list of them; typically the operator's
        ``kie_task_id`` XCom. Templated.
    :param kontext_conn_id: The ``kontext`` Airflow connection.
    :param poll_interval: Seconds between checks (the sensor's ``poke_interval``).
    :param deferrable: Wait in the triggerer. Defaults to ``[operators] default_deferrable``.
    :param output_path: Copy the images there when ready, on the worker (see
        :class:`~airflow_provider_kontext.operators.generate.KontextGenerateOperator`). Templated.
    :param output_file_name: File-name template under ``output_path``. Templated.
    :param max_image_bytes: Refuse result files larger than this.
    :param api: ``"kontext"`` (default) for Flux Kontext task ids, ``"market"`` for Market ones
        (FLUX.2, Nano Banana, Seedream, ...): kie reads each family's tasks at its own endpoint.

    With ``deferrable=True``, no ``output_path`` and ids written in the DAG file (not templated,
    not an XCom), the sensor starts in the triggerer (Airflow 3.3+): no worker runs it unless the
    wait fails, and then only to raise the typed error.
    """

    template_fields: Sequence[str] = ("kie_task_ids", "output_path", "output_file_name")
    operator_extra_links = (KontextImageLink(),)
    ui_color = "#e8d5ff"

    def __init__(
        self,
        *,
        kie_task_ids: str | list[str],
        kontext_conn_id: str = DEFAULT_CONN_ID,
        poll_interval: float = DEFAULT_POLL_INTERVAL_SECONDS,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        timeout: float = DEFAULT_TIMEOUT_SECONDS,
        output_path: Any = None,
        output_file_name: str | None = None,
        max_image_bytes: int = DEFAULT_MAX_IMAGE_BYTES,
        api: str = "kontext",
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("poke_interval", poll_interval)
        super().__init__(timeout=timeout, **kwargs)
        apply_default_retry_policy(self)
        self.kie_task_ids = kie_task_ids
        self.kontext_conn_id = kontext_conn_id
        self.poll_interval = float(kwargs["poke_interval"])
        self.deferrable = deferrable
        self.output_path = output_path
        self.output_file_name = output_file_name
        self.max_image_bytes = max_image_bytes
        self.api = _check_api(api)
        check_output_path(output_path, output_file_name)
        self._waiter: TaskWaiter | None = None
        if self._ids_known_at_parse():
            self._task_ids()  # a malformed id fails at parse time, not in the triggerer or a worker
            if deferrable and output_path is None and _compat.AIRFLOW_STARTS_TASKS_FROM_TRIGGERS:
                # Let Airflow defer this task straight to KontextTaskTrigger, no worker start first.
                self.start_from_trigger = True

    def _ids_known_at_parse(self) -> bool:
        ids = self.kie_task_ids
        return not (
            is_unrendered(ids) if isinstance(ids, str) else (not isinstance(ids, list) or any(map(is_unrendered, ids)))
        )

    @property
    def start_trigger_args(self) -> StartTriggerArgs | None:
        """
        Built when read (Airflow serializes the DAG after the whole file ran), not in ``__init__``.

        Whether a successful wait may end the task in the triggerer depends on its downstream
        tasks (:func:`~airflow_provider_kontext._tasks.task_defaults.end_mode`), which are only known
        once the DAG file has set the dependencies.
        """
        if not self.start_from_trigger:
            return None
        from airflow.triggers.base import StartTriggerArgs

        from airflow_provider_kontext._tasks.task_defaults import DEFER_TIMEOUT_BUFFER_SECONDS

        return StartTriggerArgs(
            trigger_cls="airflow_provider_kontext.triggers.task.KontextTaskTrigger",
            trigger_kwargs={
                "kontext_conn_id": self.kontext_conn_id,
                "kie_task_ids": self._task_ids(),
                "timeout": float(self.timeout),
                "poll_interval": self.poll_interval,
                "end_from_trigger": self.trigger_end_mode(),
                "api": self.api,
            },
            next_method="execute_complete",
            next_kwargs=None,
            timeout=timedelta(seconds=float(self.timeout) + self.poll_interval + DEFER_TIMEOUT_BUFFER_SECONDS),
        )

    @start_trigger_args.setter
    def start_trigger_args(self, value: StartTriggerArgs | None) -> None:
        """Airflow may assign it; the sensor builds its own from its arguments."""

    def trigger_end_mode(self) -> str | None:
        """End a successful deferred wait in the triggerer when the worker would only return the result."""
        from airflow_provider_kontext._tasks.task_defaults import end_mode

        return end_mode(self, KontextTaskSensor, output_path=self.output_path, returns_list=self._returns_list())

    @property
    def hook(self) -> KontextHook:
        from airflow_provider_kontext.hooks.kontext import KontextHook

        return KontextHook(kontext_conn_id=self.kontext_conn_id)

    def _task_ids(self) -> list[str]:
        ids = self.kie_task_ids
        if isinstance(ids, str):
            return [check_task_id(ids)]
        return [check_task_id(task_id) for task_id in ids]

    def _returns_list(self) -> bool:
        return not isinstance(self.kie_task_ids, str)

    def execute(self, context: Context) -> Any:
        from airflow_provider_kontext._tasks.waiting import wait_for

        check_output_path(self.output_path, self.output_file_name)
        if not self.deferrable:
            return super().execute(context)
        result = wait_for(
            self,
            self.hook,
            self._task_ids(),
            kontext_conn_id=self.kontext_conn_id,
            deferrable=True,
            poll_interval=self.poll_interval,
            budget=float(self.timeout),
            end_from_trigger=self.trigger_end_mode(),
            api=ApiFamily(self.api),
        )
        return self.finish(context, result)

    def poke(self, context: Context) -> bool | PokeReturnValue:
        from airflow_provider_kontext._protocol.polling import TaskWaiter

        if self._waiter is None:
            # In reschedule mode each poke is a new process: the "not found" grace starts at the
            # first poke, which Airflow remembers, rather than anew at every poke.
            first_poke = context["ti"].get_first_reschedule_date(context) if self.reschedule else None
            self._waiter = TaskWaiter(
                self._task_ids(),
                end_time=None,  # the sensor's own timeout governs poke/reschedule mode
                not_found_since=first_poke.timestamp() if first_poke is not None else None,
                api=ApiFamily(self.api),
            )
        outcome = self.hook.poll(self._waiter)
        if outcome is None:
            return False
        return PokeReturnValue(is_done=True, xcom_value=self.finish(context, outcome))

    def execute_complete(self, context: Context, event: Any = None) -> Any:
        """Resume after the trigger: a ``timeout`` event is a sensor timeout, so ``soft_fail`` applies."""
        from airflow_provider_kontext._protocol.polling import WaitStatus
        from airflow_provider_kontext._tasks.waiting import resumed_result

        result = resumed_result(
            event,
            hook=self.hook,
            ended_ids=self._task_ids,
            timeout=float(self.timeout),
            poll_interval=self.poll_interval,
            api=ApiFamily(self.api),
        )
        if result.status is WaitStatus.TIMEOUT:
            from airflow_provider_kontext._compat import AirflowSensorTimeout

            raise AirflowSensorTimeout(result.message)
        try:
            return self.finish(context, result)
        except Exception:
            from airflow_provider_kontext._compat import warn_retry_resumes_same_event

            warn_retry_resumes_same_event(self)
            raise

    def finish(self, context: Context, result: WaitResult) -> Any:
        """End the wait on the worker: raise the typed error, or store the images and return the result(s)."""
        from airflow_provider_kontext._tasks.waiting import finish_wait

        records = finish_wait(
            self,
            context,
            result,
            output_path=self.output_path,
            output_file_name=self.output_file_name,
            max_image_bytes=self.max_image_bytes,
        )
        return records if self._returns_list() else records[0]


def _check_api(api: Any) -> str:
    """The sensor's ``api``, checked at parse time: a typo must not poll the wrong endpoint."""
    try:
        return ApiFamily(api).value
    except ValueError:
        from airflow_provider_kontext.exceptions import KontextValidationError

        choices = ", ".join(family.value for family in ApiFamily)
        raise KontextValidationError(f"api must be one of {choices}; got {api!r}.", field="api") from None
