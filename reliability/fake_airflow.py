"""The one stand-in for a running Airflow task: a task instance, its task state store, a context.

Everything else the tests, the benchmarks and the soak run is real (operators, hook, trigger,
the emulator over loopback HTTP); only what a worker hands ``execute`` in ``context`` is faked,
since a real one needs a whole running task. Keep it to what the provider reads, and no more.

Why here, in ``reliability/``: imports between the repo-only directories point one way,
``benchmarks/`` -> ``tests/`` -> ``reliability/`` (a benchmark borrows ``tests/e2e``'s deployment,
``tests/reliability`` runs the soak), and ``reliability/`` imports neither. Put in ``tests/``, the
soak (which runs on its own: ``python reliability/soak.py``) would have to import the test suite,
and ``tests/`` and ``reliability/`` would import each other. Here all three can use it, and mypy
checks it strictly with the rest of ``reliability``. The shipped package (``airflow_provider_kontext``)
imports nothing from any of these directories.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:
    from datetime import timedelta

    from airflow.providers.common.compat.sdk import Context

__all__ = ["DictStateStore", "FakeTaskInstance", "task_context"]


@dataclass
class FakeTaskInstance:
    """
    What the provider reads from ``context["ti"]``: its identity, and XCom push/pull of its own keys.

    ``xcom`` holds the last value pushed under each key (what a pull would see); ``pushes``
    every push in order, for a test that cares how values arrived (ids pushed as they came).
    """

    task_id: str = "generate"
    dag_id: str = "kontext_dag"
    run_id: str = "manual__2026-11-21T10:00:00+00:00"
    map_index: int = -1
    try_number: int = 1
    xcom: dict[str, Any] = field(default_factory=dict)
    pushes: list[tuple[str, Any]] = field(default_factory=list)

    def xcom_push(self, key: str, value: Any) -> None:
        self.xcom[key] = value
        self.pushes.append((key, value))

    def xcom_pull(
        self, task_ids: str | None = None, key: str = "return_value", map_indexes: int | None = None, **_: Any
    ) -> Any:
        """This task instance's own XCom; asking for another task's is a mistake the fake reports."""
        if (task_ids, map_indexes) != (self.task_id, self.map_index):
            raise AssertionError(
                f"the fake task instance holds only its own XComs ({self.task_id!r}, map index {self.map_index}), "
                f"not ({task_ids!r}, {map_indexes!r})"
            )
        return self.xcom.get(key)

    def get_first_reschedule_date(self, context: Any) -> None:
        """A sensor's first poke: never rescheduled before."""
        return None


class DictStateStore:
    """
    ``context["task_state_store"]`` (Airflow 3.3, AIP-103) in memory: get, set, delete, clear.

    As the real store, it keeps JSON only (values go through ``json`` on the way in, so a value
    the real store could not hold fails here too, and a caller's later mutation does not leak in)
    and refuses ``None``. Share one instance between two calls to stand for two tries of a task.
    """

    def __init__(self) -> None:
        self.values: dict[str, Any] = {}

    def get(self, key: str, default: Any = None) -> Any:
        return self.values.get(key, default)

    def set(self, key: str, value: Any, *, retention: timedelta | None = None) -> None:
        if value is None:
            raise ValueError("Cannot set value as None")
        self.values[key] = json.loads(json.dumps(value))

    def delete(self, key: str) -> None:
        self.values.pop(key, None)

    def clear(self) -> None:
        self.values.clear()


def task_context(
    ti: FakeTaskInstance | None = None, *, state_store: DictStateStore | None = None, **entries: Any
) -> Context:
    """
    A minimal task context: ``ti`` (a fresh :class:`FakeTaskInstance` by default), the state store
    when given (left out otherwise, as on Airflow before 3.3), and any other ``entries``.
    """
    context: dict[str, Any] = {"ti": ti if ti is not None else FakeTaskInstance(), **entries}
    if state_store is not None:
        context["task_state_store"] = state_store
    return cast("Context", context)
