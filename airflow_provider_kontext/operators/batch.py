"""``KontextBatchGenerateOperator``: many images, one task instance, one trigger.

Hundreds of images must not mean hundreds of task instances: the scheduler, the metadata DB
and the triggerer all pay per task instance. This operator validates every request before
sending any, submits them paced to the account's create limit, and waits for all of them on a
single trigger with bounded concurrent polls.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow_provider_kontext._protocol.defaults import KIE_CREATES_PER_WINDOW, KIE_WINDOW_SECONDS
from airflow_provider_kontext._protocol.ratelimit import check_rate_limit
from airflow_provider_kontext._protocol.record import ApiFamily
from airflow_provider_kontext._tasks.prepare import contains_unrendered, item_api, validate_items
from airflow_provider_kontext.operators.base import KontextSubmitOperator
from airflow_provider_kontext.results import TASK_IDS_KEY

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from airflow.providers.common.compat.sdk import Context

    from airflow_provider_kontext._protocol.polling import WaitResult


class KontextBatchGenerateOperator(KontextSubmitOperator):
    """
    Generate or edit many images in one task: validate all, submit paced, wait on one trigger.

    Returns one result dict per request, in request order (see :class:`KontextGenerateOperator`
    for its keys), or the list of kie task ids with ``wait_for_completion=False``. The ids are
    pushed to XCom ``kie_task_ids`` after every create (aligned with ``requests``, ``None``
    for requests not created yet), so a failure part-way still shows
    what was created (and billed). On Airflow 3.3+ they are also kept in the task state store,
    so an Airflow retry re-attaches to tasks still running or done and re-creates only failed
    ones (:mod:`~airflow_provider_kontext._tasks.ledger`).

    :param requests: A list of dicts, each with the Flux Kontext generate fields (``prompt``,
        ``input_image``, ``aspect_ratio``, ``output_format``, ``model``, ...), or each a Market
        request (``model`` and its ``input``; models may differ). One batch is of one family.
        Templated.
    :param kontext_conn_id: The ``kontext`` Airflow connection.
    :param wait_for_completion: Wait for every image (default) or return the ids once created.
    :param deferrable: Wait in the triggerer. Defaults to ``[operators] default_deferrable``.
    :param poll_interval: Seconds between status-check rounds.
    :param timeout: Seconds for the whole batch, creates (waiting out kie's rate limit) and images.
    :param fail_on_any_failure: Fail the task if any image failed (default); with ``False``
        return every item with its own ``status``/``error_code``/``error_message``.
    :param max_creates_per_window: The account's create limit per ``rate_window_seconds``;
        default the connection's ``max_creates_per_window`` extra (kie's default: 20 per 10 s).
        Set it where kie raised your account's limit; tasks sharing an account need no lower
        value, they adapt (see the README's "Sharing one kie account").
    :param rate_window_seconds: The rate-limit window; default the connection's.
    :param min_credits: Read the balance first and fail before any spend below it.
    :param output_path: Copy every image there when ready (see :class:`KontextGenerateOperator`).
        File names default to ``{dag_id}/{run_id}/{task_id}/{map_index}-{kie_task_id}-{index}.{ext}``.
    :param output_file_name: File-name template (fields as for the single operator, plus ``index``).
    :param max_image_bytes: Refuse result files larger than this.
    """

    template_fields: Sequence[str] = ("requests", "output_path", "output_file_name")
    template_fields_renderers = {"requests": "json"}
    items_field = "requests"

    def __init__(
        self,
        *,
        requests: list[dict[str, Any]],
        fail_on_any_failure: bool = True,
        max_creates_per_window: int | None = None,
        rate_window_seconds: float | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.requests = requests
        self.fail_on_any_failure = fail_on_any_failure
        self.max_creates_per_window = max_creates_per_window
        self.rate_window_seconds = rate_window_seconds
        if max_creates_per_window is not None or rate_window_seconds is not None:
            # Check each given value; an unset one stands in as kie's default (never `or`: 0 must fail).
            check_rate_limit(
                KIE_CREATES_PER_WINDOW if max_creates_per_window is None else max_creates_per_window,
                KIE_WINDOW_SECONDS if rate_window_seconds is None else rate_window_seconds,
            )
        if isinstance(requests, list) and not contains_unrendered(requests):
            validate_items(requests)  # static batches fail at parse time, not mid-run

    def execute(self, context: Context) -> Any:
        validate_items(self.requests)  # every item, before any request
        ti = context["ti"]
        return self.submit_and_wait(
            context,
            self.requests,
            max_creates_per_window=self.max_creates_per_window,
            rate_window_seconds=self.rate_window_seconds,
            on_progress=lambda ids_so_far: ti.xcom_push(key=TASK_IDS_KEY, value=ids_so_far),
            # Reporting per item means a refused or ambiguous create is one item's failure,
            # not a reason to abandon the images already paid for.
            keep_going=not self.fail_on_any_failure,
        )

    @property
    def task_api(self) -> ApiFamily:
        first = self.requests[0] if isinstance(self.requests, list) and self.requests else {}
        return item_api(first) if isinstance(first, dict) else ApiFamily.KONTEXT

    @property
    def allow_failed_tasks(self) -> bool:  # type: ignore[override]
        return not self.fail_on_any_failure

    def finish(self, context: Context, result: WaitResult, creates: Sequence[Mapping[str, Any]] | None = None) -> Any:
        records = super().finish(context, result, creates)
        if self.min_credits is not None:
            try:
                self.log.info("kie balance after the batch: %g credits.", self.hook.get_credits())
            except Exception as err:  # the images are done; a balance read must not fail them
                self.log.warning("Could not read the kie balance after the batch: %s", err)
        return records
