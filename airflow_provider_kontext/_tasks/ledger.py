"""Remember created kie tasks across Airflow retries, so a retry does not pay for them again.

An Airflow retry re-runs ``execute`` from the top, and XComs are cleared between tries, so
without help it creates (and bills) every image again. Airflow 3.3 added a per-task-instance
state store (``context["task_state_store"]``, AIP-103) that survives retries. Right after each
create the kie task id is written there, next to a fingerprint of the request that produced it.
A retry then re-attaches to tasks that are still running or already succeeded, and creates new
ones only for requests that never got a task, whose task failed, or whose content changed.

On Airflow versions without the store (below 3.3), :attr:`SubmissionLedger.available` is False
and a retry creates new tasks: that is documented, not hidden, and :func:`submit_once` says so in
the task log once per try that creates (:func:`~airflow_provider_kontext._compat.warn_no_task_state_store`).

Known gap: if a create is accepted but the worker dies before the id is written (or the answer
is lost, :class:`~airflow_provider_kontext.exceptions.KontextSubmissionOutcomeUnknownError`),
no id exists to re-attach to and a retry creates a new task.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final, NamedTuple

from airflow_provider_kontext._protocol.record import ApiFamily, TaskRecord, TaskStatus
from airflow_provider_kontext._tasks.prepare import fingerprint, item_api, materialize
from airflow_provider_kontext.exceptions import KontextError
from airflow_provider_kontext.results import NOT_CREATED_STATUS

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence

    from airflow.providers.common.compat.sdk import Context

    from airflow_provider_kontext._protocol.ratelimit import CreatePacer
    from airflow_provider_kontext.hooks.kontext import KontextHook

#: The state-store key. Never rename it: in-flight task instances written by an older version
#: would lose their ids and pay again.
STATE_KEY: Final = "kontext_submissions"


class SubmissionLedger:
    """
    The kie task id of each request of one task instance, persisted in the task state store.

    :param context: The task's context; its ``task_state_store`` is used when present.
    :param fingerprints: One :func:`~.prepare.fingerprint` per request of this try, in order,
        so a changed request is not mistaken for the image an earlier try paid for.
    """

    def __init__(self, context: Context, fingerprints: Sequence[str]) -> None:
        self._store: Any = context.get("task_state_store")
        self._fingerprints = list(fingerprints)
        self.ids: list[str | None] = [None] * len(self._fingerprints)

    @property
    def available(self) -> bool:
        return self._store is not None

    def load(self) -> int:
        """Read ids from earlier tries whose request is unchanged; return how many were found."""
        if self._store is None:
            return 0
        stored = self._store.get(STATE_KEY)
        if not isinstance(stored, list):
            return 0
        found = 0
        for index, entry in enumerate(stored[: len(self.ids)]):
            if isinstance(entry, dict) and entry.get("fingerprint") == self._fingerprints[index]:
                task_id = entry.get("kie_task_id")
                if isinstance(task_id, str) and task_id:
                    self.ids[index] = task_id
                    found += 1
        return found

    def record(self, index: int, kie_task_id: str) -> None:
        """Write one new id at once: a crash right after a create must not lose it."""
        self.ids[index] = kie_task_id
        if self._store is not None:
            self._store.set(
                STATE_KEY,
                [
                    {"fingerprint": digest, "kie_task_id": task_id}
                    for digest, task_id in zip(self._fingerprints, self.ids, strict=True)
                ],
            )

    def drop_unusable(self, hook: KontextHook, log: Any, api: ApiFamily = ApiFamily.KONTEXT) -> None:
        """
        Keep ids whose task is still running or succeeded; forget those that failed.

        A task whose status cannot be read is kept: re-attaching costs nothing, and the wait
        will report it properly, while a blind resubmit could pay twice.
        """
        for index, task_id in enumerate(self.ids):
            if task_id is None:
                continue
            try:
                record = hook.get_task(task_id, api=api)
            except KontextError as err:
                log.warning("Could not check earlier kie task %s (%s); re-attaching to it.", task_id, err)
                continue
            if record.failed:
                log.info("Earlier kie task %s ended %s; submitting request %d again.", task_id, record.status, index)
                self.ids[index] = None
            else:
                state = "succeeded" if record.succeeded else "still running"
                if record.status is TaskStatus.PENDING:
                    state = "accepted, not yet visible"
                log.info("Re-attaching to kie task %s from an earlier try (%s).", task_id, state)

    def missing(self) -> list[int]:
        return [index for index, task_id in enumerate(self.ids) if task_id is None]


class Created(NamedTuple):
    """What getting one item created came to, in item order (see :func:`submit_once`)."""

    #: The usable kie task id; ``None`` when this item's create failed (``error`` says why).
    kie_task_id: str | None
    #: Why the create failed; ``None`` when it did not.
    error: KontextError | None = None
    #: What the create cost (:meth:`CreateStats.to_dict`); ``None`` when the item re-attached.
    stats: dict[str, Any] | None = None

    def report(self, item: Mapping[str, Any]) -> dict[str, Any]:
        """
        This item's entry in the plain-JSON create report that crosses a deferral.

        ``create_stats`` joins the item's result dict; an item whose create failed carries the
        result dict it will be reported with (``not_created``): same keys as a task's, no kie
        task id, and ``error_class`` naming the typed error
        (``KontextSubmissionOutcomeUnknownError`` when kie may have created and billed it
        anyway), so a caller can tell "refused" from "ask kie's logs".
        """
        entry: dict[str, Any] = {"create_stats": self.stats}
        if self.kie_task_id is None:
            record: dict[str, Any] = dict.fromkeys(TaskRecord.__dataclass_fields__)
            market_input = item.get("input")
            fields = market_input if isinstance(market_input, dict) else item
            for name in ("prompt", "aspect_ratio", "output_format"):
                value = fields.get(name)
                record[name] = value if isinstance(value, str) else None
            record["model"] = item.get("model") if isinstance(item.get("model"), str) else None
            record["api"] = item_api(item).value
            record["result_image_urls"] = []
            error = self.error
            record.update(
                status=NOT_CREATED_STATUS,
                error_code=error.code if error is not None else None,
                error_message=str(error) if error is not None else None,
                error_class=type(error).__name__ if error is not None else None,
            )
            entry["not_created"] = record
        return entry


def submit_once(
    context: Context,
    hook: KontextHook,
    items: Sequence[Mapping[str, Any]],
    *,
    pacer: CreatePacer | None = None,
    deadline: float | None = None,
    on_progress: Callable[[list[str | None]], None] | None = None,
    keep_going: bool = False,
    items_field: str | None = None,
) -> list[Created]:
    """
    Create a kie task for every item that does not already have a usable one; one :class:`Created` per item.

    ``items`` are rendered generate fields, already validated (:mod:`.prepare`). Images to
    upload are uploaded only for the items actually created. ``on_progress`` sees the ids
    (``None`` for not yet created) after every create. With ``keep_going`` an item whose create
    failed on its own is reported as such and the others still go out (see
    :meth:`KontextHook.submit_each`); without it the first failure is raised. ``items_field``
    names the operator argument holding the items (a batch's ``requests``), so an upload error
    names its item (``requests[1].input_image``) as validation does.
    """
    ledger = SubmissionLedger(context, [fingerprint(item) for item in items])
    if ledger.load():
        ledger.drop_unusable(hook, hook.log, item_api(items[0]))
    todo = ledger.missing()
    if todo and not ledger.available:
        from airflow_provider_kontext._compat import warn_no_task_state_store

        warn_no_task_state_store(hook.log, context)
    if todo and len(todo) < len(items):
        hook.log.info("Creating %d of %d kie task(s); the rest re-attach.", len(todo), len(items))
    created = [Created(kie_task_id) for kie_task_id in ledger.ids]
    requests = [
        materialize(hook, items[index], prefix=f"{items_field}[{index}]" if items_field else None) for index in todo
    ]
    outcomes = hook.submit_each(requests, pacer=pacer, deadline=deadline, keep_going=keep_going)
    for index, outcome in zip(todo, outcomes, strict=True):
        created[index] = Created(outcome.kie_task_id, outcome.error, outcome.stats.to_dict())
        if outcome.kie_task_id is not None:
            ledger.record(index, outcome.kie_task_id)
            if on_progress is not None:
                on_progress(list(ledger.ids))
    if not todo and on_progress is not None:
        on_progress(list(ledger.ids))
    return created
