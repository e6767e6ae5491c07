"""Read what Kontext task instances left in XCom, inside the api-server, through Airflow's own models.

One query per page: every XCom of the run under the keys that can describe images, grouped by
task instance. Which task instances are "Kontext tasks" is decided by the values themselves
(:func:`.items.items_from_value`), not by operator class, so the generate and batch operators,
the sensor, the decorator and the review operator all show up, and a ``@task`` that passes
results on does too.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from airflow_provider_kontext._ui.items import ImageItem, Source, items_from_value
from airflow_provider_kontext.results import REVIEW_ITEMS_KEY, TASK_ID_KEY, TASK_IDS_KEY

if TYPE_CHECKING:
    from collections.abc import Iterable

    from sqlalchemy.orm import Session

#: Where a task instance's images are described, best first. A review keeps its own list (with
#: every decision) even after it returned only the approved ones; ids alone describe a task that
#: created its images and has not collected them yet.
SOURCE_KEYS: Final = (REVIEW_ITEMS_KEY, "return_value", TASK_IDS_KEY, TASK_ID_KEY)
_ID_KEYS: Final = frozenset({TASK_IDS_KEY, TASK_ID_KEY})


@dataclass(frozen=True)
class TaskImages:
    """The images of one task instance (``map_index`` -1 when it is not mapped)."""

    task_id: str
    map_index: int
    state: str | None
    items: list[ImageItem]


def load_task_images(
    session: Session, *, dag_id: str, run_id: str, task_id: str | None = None, map_index: int | None = None
) -> list[TaskImages]:
    """
    Every task instance of the run (or of ``task_id``, or of one map index) with Kontext images.

    Those with pictures first, then as the task instances started, by task id and map index
    (a create that did not wait shows only its id; the sensor that collected it has the image).
    """
    from airflow.models.taskinstance import TaskInstance
    from airflow.models.xcom import XComModel
    from sqlalchemy import select

    query = select(XComModel).where(
        XComModel.dag_id == dag_id, XComModel.run_id == run_id, XComModel.key.in_(SOURCE_KEYS)
    )
    ti_query = select(TaskInstance.task_id, TaskInstance.map_index, TaskInstance.state, TaskInstance.start_date).where(
        TaskInstance.dag_id == dag_id, TaskInstance.run_id == run_id
    )
    if task_id is not None:
        query = query.where(XComModel.task_id == task_id)
        ti_query = ti_query.where(TaskInstance.task_id == task_id)
    if map_index is not None:
        query = query.where(XComModel.map_index == map_index)
        ti_query = ti_query.where(TaskInstance.map_index == map_index)
    values: dict[tuple[str, int], dict[str, Any]] = {}
    for row in session.scalars(query):
        values.setdefault((row.task_id, row.map_index), {})[row.key] = XComModel.deserialize_value(row)
    started = {}
    states = {}
    for ti_task_id, ti_map_index, state, start_date in session.execute(ti_query):
        states[(ti_task_id, ti_map_index)] = str(state) if state is not None else None
        started[(ti_task_id, ti_map_index)] = start_date.timestamp() if start_date is not None else float("inf")
    found = [
        TaskImages(task_id=key[0], map_index=key[1], state=states.get(key), items=items)
        for key, by_key in values.items()
        if (items := choose_items(by_key.items())) is not None
    ]
    found.sort(
        key=lambda t: (
            all(item.source() is Source.NONE for item in t.items),
            started.get((t.task_id, t.map_index), float("inf")),
            t.task_id,
            t.map_index,
        )
    )
    return found


def choose_items(values: Iterable[tuple[str, Any]]) -> list[ImageItem] | None:
    """The items of one task instance from its XComs (key, value), by :data:`SOURCE_KEYS` priority."""
    by_key = dict(values)
    for key in SOURCE_KEYS:
        if key in by_key:
            items = items_from_value(by_key[key], ids_allowed=key in _ID_KEYS)
            if items is not None:
                return items
    return None


__all__ = ["SOURCE_KEYS", "TaskImages", "choose_items", "load_task_images"]
