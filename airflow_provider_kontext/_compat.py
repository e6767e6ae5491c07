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
* Human-in-the-loop operators (``HITLOperator``, which ``KontextReviewOperator`` builds on) and
  plugin ``external_views`` (the images views): 3.1. Below, the standard provider's ``hitl``
  module raises at import.
* Typed connection-form fields (provider-info ``conn-fields``) and a triggerer that ends a task
  from a ``TaskSuccessEvent`` and stores its XComs: 3.2.
* A retry of a deferred task that failed on resume starts again from ``execute``: 3.1. Airflow
  3.0 keeps the task instance's ``next_method`` / ``next_kwargs`` across tries (its execution
  API's retry path does not clear them; 3.1 does), so the retry resumes with the same trigger
  event and fails the same way.
* ``start_from_trigger`` (a task deferred by the scheduler, no worker start): 3.3.
* Retry policies (``retry_policy=``, ``airflow.sdk.definitions.retry_policy``), the task-instance
  state store (``context["task_state_store"]``, AIP-103) that lets a retry re-attach to kie tasks
  it already paid for, and ``BaseTrigger.on_kill``: 3.3.

Where a DAG uses something its Airflow lacks, the provider says so: a class that cannot exist
there (``KontextReviewOperator``, ``KontextRetryPolicy``) still imports, and constructing it
raises :class:`~airflow_provider_kontext.exceptions.KontextAirflowVersionError` naming the feature
and the minimum version; a default the provider sets for the author (re-attach, its retry
policy) is logged once per try that it would have mattered in. The README's "Airflow versions"
table lists each; ``tests/unit/test_compat.py`` asserts each on whichever Airflow runs it.
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


AIRFLOW_VERSION: Final = _airflow_version
AIRFLOW_RELEASE: Final = _release(_airflow_version)
AIRFLOW_V_3_1_PLUS: Final = AIRFLOW_RELEASE >= (3, 1)
AIRFLOW_V_3_2_PLUS: Final = AIRFLOW_RELEASE >= (3, 2)
AIRFLOW_V_3_3_PLUS: Final = AIRFLOW_RELEASE >= (3, 3)

#: The first Airflow with each feature the provider uses beyond the floor (the README's table).
REVIEW_MIN_AIRFLOW: Final = "3.1"  # human-in-the-loop (KontextReviewOperator)
IMAGES_VIEWS_MIN_AIRFLOW: Final = "3.1"  # plugin external_views (the "Kontext images" views)
CONN_FIELDS_MIN_AIRFLOW: Final = "3.2"  # typed connection-form fields
END_FROM_TRIGGER_MIN_AIRFLOW: Final = "3.2"  # a TaskSuccessEvent ends the task, XComs stored
START_FROM_TRIGGER_MIN_AIRFLOW: Final = "3.3"  # start_from_trigger (the sensor starts in the triggerer)
RETRY_POLICY_MIN_AIRFLOW: Final = "3.3"  # retry_policy= (KontextRetryPolicy)
RETRY_RESTARTS_MIN_AIRFLOW: Final = "3.1"  # a retry after a failed resume starts from execute
REATTACH_MIN_AIRFLOW: Final = "3.3"  # the task-instance state store
TRIGGER_ON_KILL_MIN_AIRFLOW: Final = "3.3"  # BaseTrigger.on_kill

#: Airflow ends a task from its trigger's ``TaskSuccessEvent`` and stores the event's XComs
#: (read in 3.2.2's and 3.3's ``models/trigger.py``; shown end to end on 3.3.2). Below, a deferred
#: task always resumes on a worker.
AIRFLOW_ENDS_TASKS_FROM_TRIGGERS: Final = AIRFLOW_V_3_2_PLUS
#: The scheduler defers a task with ``start_from_trigger`` straight to its trigger, no worker start
#: (3.3; in 3.0 to 3.2's ``DagRun.schedule_tis`` that branch is commented out, "not backported to
#: 3.2"). Below, the sensor starts on a worker like any deferrable task.
AIRFLOW_STARTS_TASKS_FROM_TRIGGERS: Final = AIRFLOW_V_3_3_PLUS
#: Plugins' ``external_views`` are shown by the UI (3.1+): the images views register nothing below.
AIRFLOW_HAS_EXTERNAL_VIEWS: Final = AIRFLOW_V_3_1_PLUS

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

    # Imported when first asked for (module __getattr__ below): mypy sees the newest Airflow's.
    from airflow.providers.standard.operators.hitl import HITLOperator
    from airflow.sdk.definitions.retry_policy import RetryDecision, RetryPolicy
elif AIRFLOW_V_3_2_PLUS:
    from airflow.sdk import conf
    from airflow.sdk.exceptions import AirflowException, AirflowSensorTimeout, TaskDeferred
else:
    from airflow.configuration import conf
    from airflow.exceptions import AirflowException, AirflowSensorTimeout, TaskDeferred


class NeedsNewerAirflow:
    """
    Stands in for an Airflow base class this Airflow lacks; subclasses can be defined but not built.

    So a module such as :mod:`~airflow_provider_kontext.operators.review` imports on every
    version, and the DAG that constructs the class gets one clear error at parse time instead
    of an ``ImportError`` from inside Airflow.
    """

    #: What needs the newer Airflow, in words, and the first version that has it.
    feature: str = ""
    minimum_airflow: str = ""

    def __new__(cls, *args: Any, **kwargs: Any) -> Any:
        raise cls.unavailable()

    @classmethod
    def partial(cls, *args: Any, **kwargs: Any) -> Any:
        """``Operator.partial(...).expand(...)`` fails the same way as constructing it."""
        raise cls.unavailable()

    @classmethod
    def unavailable(cls) -> Exception:
        from airflow_provider_kontext.exceptions import KontextAirflowVersionError

        return KontextAirflowVersionError(cls.__name__, feature=cls.feature, minimum_airflow=cls.minimum_airflow)


def _needs_newer_airflow(name: str, feature: str, minimum_airflow: str) -> type[Any]:
    return type(name, (NeedsNewerAirflow,), {"feature": feature, "minimum_airflow": minimum_airflow})


def _lazy(name: str) -> Any:
    """The names that cost an import: resolved on first use, so DAG parsing pays only where they are used."""
    if name == "HITLOperator":
        if AIRFLOW_V_3_1_PLUS:
            from airflow.providers.standard.operators.hitl import HITLOperator

            return HITLOperator
        return _needs_newer_airflow(name, "human-in-the-loop operators", REVIEW_MIN_AIRFLOW)
    if name in ("RetryPolicy", "RetryDecision"):
        if AIRFLOW_V_3_3_PLUS:
            from airflow.sdk.definitions import retry_policy

            return getattr(retry_policy, name)
        return _needs_newer_airflow(name, "retry policies", RETRY_POLICY_MIN_AIRFLOW)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


if not TYPE_CHECKING:

    def __getattr__(name: str) -> Any:
        value = _lazy(name)
        globals()[name] = value  # asked once per process
        return value


def hitl_response_timeout(response_timeout: Any) -> dict[str, Any]:
    """
    ``response_timeout`` as the installed standard provider's ``HITLOperator`` takes it.

    The standard provider (not Airflow) added ``response_timeout`` in 1.13; before, the
    operator waited for the human for ``execution_timeout`` (Airflow 3.1.8's own constraints pin
    1.12). Read from the constructor's signature, when a review is constructed, not at import.
    """
    if response_timeout is None:
        return {}
    import inspect

    if "response_timeout" in inspect.signature(_lazy("HITLOperator").__init__).parameters:
        return {"response_timeout": response_timeout}
    return {"execution_timeout": response_timeout}


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


REATTACH_UNAVAILABLE_WARNING: Final = (
    "Airflow %s has no task-instance state store (it came with Airflow %s): if this task is retried, "
    "the retry creates (and pays for) new kie tasks instead of re-attaching to the ones this try "
    "created. To retry without paying twice, create with wait_for_completion=False and wait with "
    "KontextTaskSensor, putting the retries on the sensor."
)

RETRY_POLICY_UNAVAILABLE_WARNING: Final = (
    "Airflow %s has no retry policies (they came with Airflow %s): this task's %d retries follow "
    "Airflow's plain retries, so a failure no retry can fix (content policy, validation, bad key, "
    "no credits, an unknown create outcome) is retried too, and each such retry pays for new creates."
)


RETRY_RESUMES_SAME_EVENT_WARNING: Final = (
    "Airflow %s keeps a deferred task's resume across tries (fixed in Airflow %s): if this task is "
    "retried, each of its %d retries resumes with this same trigger event and fails the same way, "
    "creating nothing. For retries that start again (and create anew), use deferrable=False."
)


def warn_retry_resumes_same_event(task: Any) -> bool:
    """
    Say, when a resumed try fails, that Airflow 3.0 will replay it on retry; return True if it warned.

    Called from the resume method's failure path only: on 3.0 every later try of the task runs
    that same method with the same event (see the module docstring), so the warning is in each
    such try's log, next to the failure it is about.
    """
    retries = int(getattr(task, "retries", 0) or 0)
    if AIRFLOW_V_3_1_PLUS or retries <= 0:
        return False
    task.log.warning(RETRY_RESUMES_SAME_EVENT_WARNING, _airflow_version, RETRY_RESTARTS_MIN_AIRFLOW, retries)
    return True


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


def warn_no_retry_policy(task: Any) -> bool:
    """
    Say, before a try's creates, that this Airflow retries every failure; return True if it warned.

    On 3.3+ the provider's tasks carry :class:`~airflow_provider_kontext.retry_policy.KontextRetryPolicy`,
    which fails at once where a retry cannot help. Below there is none to carry, which matters
    only to a task that has retries. Once per try: operators create once per try.
    """
    retries = int(getattr(task, "retries", 0) or 0)
    if AIRFLOW_V_3_3_PLUS or retries <= 0:
        return False
    task.log.warning(RETRY_POLICY_UNAVAILABLE_WARNING, _airflow_version, RETRY_POLICY_MIN_AIRFLOW, retries)
    return True


__all__ = [
    "AIRFLOW_ENDS_TASKS_FROM_TRIGGERS",
    "AIRFLOW_HAS_EXTERNAL_VIEWS",
    "AIRFLOW_RELEASE",
    "AIRFLOW_STARTS_TASKS_FROM_TRIGGERS",
    "AIRFLOW_VERSION",
    "AIRFLOW_V_3_1_PLUS",
    "AIRFLOW_V_3_2_PLUS",
    "AIRFLOW_V_3_3_PLUS",
    "CONN_FIELDS_MIN_AIRFLOW",
    "END_FROM_TRIGGER_MIN_AIRFLOW",
    "IMAGES_VIEWS_MIN_AIRFLOW",
    "REATTACH_MIN_AIRFLOW",
    "RETRY_POLICY_MIN_AIRFLOW",
    "RETRY_RESTARTS_MIN_AIRFLOW",
    "REVIEW_MIN_AIRFLOW",
    "START_FROM_TRIGGER_MIN_AIRFLOW",
    "TRIGGER_ON_KILL_MIN_AIRFLOW",
    "AirflowException",
    "AirflowSensorTimeout",
    "HITLOperator",
    "NeedsNewerAirflow",
    "RetryDecision",
    "RetryPolicy",
    "TaskDeferred",
    "conf",
    "hitl_response_timeout",
    "is_object_storage_path",
    "warn_no_retry_policy",
    "warn_no_task_state_store",
    "warn_retry_resumes_same_event",
]
