"""
Everything that differs between the Airflow versions this provider runs on (3.0.6 to 3.3), in one place.

Why one private module: the rest of the package imports a name from here and never asks which
Airflow it runs on, so supporting (or dropping) a version is a change to this file alone, and a
reader sees every difference side by side. Why not ``airflow.providers.common.compat.sdk`` for
these names: its lazy ``__getattr__`` costs a fallback import per name on every DAG parse and
types ``BaseHook`` and ``TaskInstanceKey`` as ``Any`` on 3.0; the few names below are cheaper
to pick directly.

Cost at DAG-parse time: one comparison of ``airflow.__version__`` (already imported) and the
imports Airflow itself has loaded by then. Nothing is probed, no module is imported to find out
what exists.

What differs, measured on 3.0.6, 3.1.8, 3.2.2 and 3.3.2:

* ``conf`` is in ``airflow.sdk`` from 3.2; before, ``airflow.configuration.conf``.
* ``AirflowException`` is in ``airflow.sdk.exceptions`` from 3.1 (the same class as
  ``airflow.exceptions``'); ``AirflowSensorTimeout`` and ``TaskDeferred`` from 3.2 (importing
  them from ``airflow.exceptions`` warns on 3.3).
* The task-instance state store (``context["task_state_store"]``, AIP-103) that lets a retry
  re-attach to kie tasks it already paid for, and ``BaseTrigger.on_kill``: 3.3.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

from airflow import __version__ as _airflow_version


def _release(version: str) -> tuple[int, int]:
    """``"3.1.8"`` -> ``(3, 1)``; also for ``"3.2.0rc1"``, ``"3.4.0.dev0"``."""
    major, minor = version.split(".")[:2]
    digits = ""
    for char in minor:
        if not char.isdigit():
            break
        digits += char
    return int(major), int(digits or 0)


AIRFLOW_RELEASE: Final = _release(_airflow_version)
AIRFLOW_V_3_1_PLUS: Final = AIRFLOW_RELEASE >= (3, 1)
AIRFLOW_V_3_2_PLUS: Final = AIRFLOW_RELEASE >= (3, 2)
AIRFLOW_V_3_3_PLUS: Final = AIRFLOW_RELEASE >= (3, 3)

# mypy checks the first branch only (on every venv): names that exist with the same meaning on
# every supported version. The running version takes the matching runtime branch.
if TYPE_CHECKING:
    from airflow.configuration import conf

    # 3.2+ re-exports it from airflow.sdk.exceptions without "as" (mypy still sees the class).
    from airflow.exceptions import (  # type: ignore[attr-defined,unused-ignore]
        AirflowException,
        AirflowSensorTimeout,
        TaskDeferred,
    )
    from airflow.providers.common.compat.sdk import TaskInstanceKey as TaskInstanceKey  # type only
elif AIRFLOW_V_3_2_PLUS:
    from airflow.sdk import conf
    from airflow.sdk.exceptions import AirflowException, AirflowSensorTimeout, TaskDeferred
else:
    from airflow.configuration import conf
    from airflow.exceptions import AirflowException, AirflowSensorTimeout, TaskDeferred


def is_object_storage_path(value: object) -> bool:
    """
    Whether ``value`` is an ``ObjectStoragePath`` (any universal-pathlib path), not a local one.

    Below Airflow 3.2 (universal-pathlib 0.2) ``ObjectStoragePath`` is an ``os.PathLike`` whose
    ``os.fspath()`` is its URI (``s3://bucket/key``, ``file:///tmp/x``), so a check for local
    paths must rule it out first; from 3.2 (universal-pathlib 0.3) it is not ``PathLike`` at
    all. Duck-typed (``protocol`` and ``storage_options``, which ``pathlib`` paths lack) so that
    it imports nothing.
    """
    return hasattr(value, "protocol") and hasattr(value, "storage_options")


#: Minimum Airflow for re-attaching to earlier tries' kie tasks (the task-instance state store).
REATTACH_MIN_AIRFLOW: Final = "3.3"

REATTACH_UNAVAILABLE_WARNING: Final = (
    "Airflow %s has no task-instance state store (it came with Airflow %s): if this task is retried, "
    "the retry creates (and pays for) new kie tasks instead of re-attaching to the ones this try "
    "created. To retry without paying twice, create with wait_for_completion=False and wait with "
    "KontextTaskSensor, putting the retries on the sensor."
)


def warn_no_task_state_store(log: Any, context: Any) -> bool:
    """
    Say once per task instance that a retry will create new kie tasks; return True if it warned.

    Called where an operator would use the state store and the context has none (Airflow below
    3.3). "Once" means once per try in which the first create happens: the warning appears in
    the task log next to the creates it is about, not on every poll or resume.
    """
    if context.get("task_state_store") is not None:
        return False
    log.warning(REATTACH_UNAVAILABLE_WARNING, _airflow_version, REATTACH_MIN_AIRFLOW)
    return True


__all__ = [
    "AIRFLOW_RELEASE",
    "AIRFLOW_V_3_1_PLUS",
    "AIRFLOW_V_3_2_PLUS",
    "AIRFLOW_V_3_3_PLUS",
    "REATTACH_MIN_AIRFLOW",
    "AirflowException",
    "AirflowSensorTimeout",
    "TaskDeferred",
    "conf",
    "is_object_storage_path",
    "warn_no_task_state_store",
]
