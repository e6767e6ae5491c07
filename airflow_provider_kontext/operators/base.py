"""What the generate and batch operators share: connection, credit guard, submit, wait, store.

Both create kie tasks on the worker (once, re-attaching on Airflow retries), then wait for them
in the same way and finish in the same way; only how their items are described differs.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

from airflow_provider_kontext._compat import conf, warn_no_retry_policy, warn_retry_resumes_same_event
from airflow_provider_kontext._protocol.defaults import (
    DEFAULT_CONN_ID,
    DEFAULT_MAX_IMAGE_BYTES,
    DEFAULT_POLL_INTERVAL_SECONDS,
    DEFAULT_TIMEOUT_SECONDS,
)
from airflow_provider_kontext._protocol.record import ApiFamily
from airflow_provider_kontext._protocol.request import check_poll_interval
from airflow_provider_kontext._tasks.prepare import check_output_path
from airflow_provider_kontext._tasks.task_defaults import apply_default_retry_policy
from airflow_provider_kontext.links import KontextImageLink
from airflow_provider_kontext.results import TASK_ID_KEY

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence

    from airflow.providers.common.compat.sdk import Context

    from airflow_provider_kontext._protocol.polling import WaitResult
    from airflow_provider_kontext.hooks.kontext import KontextHook

# The submit/wait/finish machinery (ledger, waiting, polling, envelope parsing, retry policy)
# is imported inside the methods that run it: a DAG file is parsed again and again by the DAG
# processor and needs only the constructor's validation, not the code that talks to kie.


class KontextSubmitOperator(BaseOperator):
    """
    Base of the operators that create kie tasks. Not for direct use.

    :param kontext_conn_id: The ``kontext`` Airflow connection.
    :param wait_for_completion: Wait for the images (default) or return the kie task id(s) at once.
    :param deferrable: Wait in the triggerer, freeing the worker slot. Defaults to
        ``[operators] default_deferrable``.
    :param poll_interval: Seconds between status checks.
    :param timeout: The task's deadline in seconds from the start of ``execute`` (capped by
        ``execution_timeout`` when that is shorter): creates wait out kie's rate limit until
        it (then ``KontextRateLimitError``), and the images must be ready by it (then
        ``KontextTimeoutError``).
    :param min_credits: Read the balance first and fail before any spend when it is lower.
    :param max_credits: The most this task may spend: its requests are priced from the model
        catalog before the first create, and a task that would cost more (or whose price the
        catalog does not know) fails with ``KontextCostLimitError``, having sent nothing.
    :param output_path: Copy the images here when ready (kie deletes them after 14 days): an
        ``ObjectStoragePath`` or a URI (``file:///data/images``, ``s3://bucket/prefix``,
        ``s3://conn_id@bucket/prefix``). Templated. The stored URI is added to each result as
        ``stored_path``; declared outlets get an Asset event listing the files.
    :param output_file_name: ``str.format`` template for file names under ``output_path`` over
        ``dag_id``, ``run_id``, ``task_id``, ``map_index``, ``kie_task_id``, ``ext`` (and
        ``index`` in a batch). Templated.
    :param max_image_bytes: Refuse result files larger than this.
    """

    operator_extra_links = (KontextImageLink(),)
    ui_color = "#e8d5ff"

    def __init__(
        self,
        *,
        kontext_conn_id: str = DEFAULT_CONN_ID,
        wait_for_completion: bool = True,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        poll_interval: float = DEFAULT_POLL_INTERVAL_SECONDS,
        timeout: float = DEFAULT_TIMEOUT_SECONDS,
        min_credits: float | None = None,
        max_credits: float | None = None,
        output_path: Any = None,
        output_file_name: str | None = None,
        max_image_bytes: int = DEFAULT_MAX_IMAGE_BYTES,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        apply_default_retry_policy(self)
        self.kontext_conn_id = kontext_conn_id
        self.wait_for_completion = wait_for_completion
        self.deferrable = deferrable
        self.poll_interval = poll_interval
        self.timeout = timeout
        self.min_credits = min_credits
        self.max_credits = max_credits
        self.output_path = output_path
        self.output_file_name = output_file_name
        self.max_image_bytes = max_image_bytes
        check_poll_interval(poll_interval)  # a bad interval fails at parse time, not mid-run
        if timeout <= 0:
            raise ValueError("timeout must be positive")
        if max_credits is not None and (isinstance(max_credits, bool) or not max_credits > 0):
            raise ValueError(f"max_credits must be a positive number of credits, got {max_credits!r}.")
        check_output_path(output_path, output_file_name)

    @property
    def hook(self) -> KontextHook:
        from airflow_provider_kontext.hooks.kontext import KontextHook

        return KontextHook(kontext_conn_id=self.kontext_conn_id)

    def submit_and_wait(
        self,
        context: Context,
        items: Sequence[Mapping[str, Any]],
        *,
        max_creates_per_window: int | None = None,
        rate_window_seconds: float | None = None,
        on_progress: Callable[[list[str | None]], None] | None = None,
        keep_going: bool = False,
    ) -> Any:
        """
        Create what is missing, then wait: the ids with ``wait_for_completion=False``, else :meth:`finish`'s value.

        ``items`` must already be validated: this is where money starts being spent. With
        ``keep_going`` a create that fails on its own does not stop the others: the item is
        reported as ``NOT_CREATED`` with its typed error, and the images already paid for are
        still waited for (across a deferral too, through the create report in the resume kwargs).

        Creates are paced to the account's limit (the connection's, unless the arguments name
        one) and wait out kie's 429s until the task's deadline: ``timeout`` from now, capped by
        ``execution_timeout``. The same budget then bounds the wait for the images.
        """
        from airflow_provider_kontext._protocol.catalog import check_credit_ceiling
        from airflow_provider_kontext._protocol.polling import WaitResult, WaitStatus
        from airflow_provider_kontext._tasks.ledger import submit_once
        from airflow_provider_kontext._tasks.prepare import validate_item
        from airflow_provider_kontext._tasks.waiting import wait_budget, wait_for

        check_output_path(self.output_path, self.output_file_name)
        warn_no_retry_policy(self)
        deadline = time.time() + wait_budget(self.timeout, self.execution_timeout)
        requests = [validate_item(item) for item in items]  # already valid: no I/O, only the prices
        estimates = [request.estimated_credits for request in requests]
        if self.max_credits is not None:
            total = check_credit_ceiling(
                estimates, self.max_credits, models=[request.model_name for request in requests]
            )
            self.log.info("About %g credits at the catalog's prices (max_credits %g).", total, self.max_credits)
        hook = self.hook
        if self.min_credits is not None:
            hook.ensure_credits(self.min_credits)
        created = submit_once(
            context,
            hook,
            items,
            pacer=hook.pacer(max_creates_per_window, rate_window_seconds),
            deadline=deadline,
            on_progress=on_progress,
            keep_going=keep_going,
            items_field=self.items_field,
        )
        if not self.wait_for_completion:
            if self.deferrable:
                self.log.warning("deferrable has no effect with wait_for_completion=False.")
            return [item.kie_task_id for item in created]
        creates = [
            {**item.report(fields), "estimated_credits": estimate}
            for item, fields, estimate in zip(created, items, estimates, strict=True)
        ]
        ids = [item.kie_task_id for item in created if item.kie_task_id is not None]
        if not ids:
            nothing = WaitResult(WaitStatus.FAILED, (), f"None of the {len(items)} create(s) succeeded.")
            return self.finish(context, nothing, creates)
        all_sent = len(ids) == len(created)
        result = wait_for(
            self,
            hook,
            ids,
            kontext_conn_id=self.kontext_conn_id,
            deferrable=self.deferrable,
            poll_interval=self.poll_interval,
            budget=max(deadline - time.time(), 1.0),
            just_created=all(item.stats is not None for item in created),
            resume_kwargs={"creates": creates},
            end_from_trigger=self.trigger_end_mode() if self.deferrable and all_sent else None,
            creates=creates,
            api=self.task_api,
        )
        return self.finish(context, result, creates)

    def execute_complete(self, context: Context, event: Any = None, creates: list[dict[str, Any]] | None = None) -> Any:
        """Resume after the trigger: validate its event, then succeed or raise the typed error."""
        from airflow_provider_kontext._tasks.waiting import resumed_result, wait_budget

        ti = context["ti"]
        result = resumed_result(
            event,
            hook=self.hook,
            # Only a single-image task ends in the triggerer; its id is in XCom since its create.
            ended_ids=(lambda: [ti.xcom_pull(task_ids=ti.task_id, key=TASK_ID_KEY, map_indexes=ti.map_index)])
            if self.trigger_end_mode() is not None
            else None,
            timeout=wait_budget(self.timeout, self.execution_timeout),
            poll_interval=self.poll_interval,
            api=self.task_api,
        )
        try:
            return self.finish(context, result, creates)
        except Exception:
            warn_retry_resumes_same_event(self)
            raise

    @property
    def task_api(self) -> ApiFamily:
        """The API family of this task's items (one per task): where their status is read."""
        return ApiFamily.KONTEXT

    def trigger_end_mode(self) -> str | None:
        """How a successful deferred wait may end in the triggerer (its ``end_from_trigger``); ``None``: resume."""
        return None

    def finish(self, context: Context, result: WaitResult, creates: Sequence[Mapping[str, Any]] | None = None) -> Any:
        """
        End the wait on the worker: raise the typed error, or store the images and return the result dicts.

        ``creates`` is the create report (one entry per item, see :meth:`.ledger.Created.report`).
        """
        from airflow_provider_kontext._tasks.waiting import finish_wait

        return finish_wait(
            self,
            context,
            result,
            allow_failed_tasks=self.allow_failed_tasks,
            output_path=self.output_path,
            output_file_name=self.output_file_name,
            max_image_bytes=self.max_image_bytes,
            creates=creates,
        )

    #: Return failed items with their own status instead of raising (the batch's ``fail_on_any_failure=False``).
    allow_failed_tasks = False
    #: The argument holding a list of items (the batch's ``requests``): an error about one names ``requests[i]``.
    items_field: str | None = None
