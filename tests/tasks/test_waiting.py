"""How every Kontext task waits (``_tasks/waiting.py``): the budget, the worker and deferral paths, stored images.

The kie tasks are real, created with a ``KontextHook`` against the emulator over loopback HTTP;
the task waiting is a plain ``BaseOperator`` and its context :mod:`reliability.fake_airflow`'s.
"""

from __future__ import annotations

import time
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from airflow.sdk import BaseOperator

from airflow_provider_kontext import exceptions as exc
from airflow_provider_kontext._compat import TaskDeferred
from airflow_provider_kontext._protocol.defaults import DEFAULT_CONN_ID, DEFAULT_MAX_IMAGE_BYTES
from airflow_provider_kontext._protocol.polling import WaitStatus
from airflow_provider_kontext._tasks.task_defaults import DEFER_TIMEOUT_BUFFER_SECONDS
from airflow_provider_kontext._tasks.waiting import store_images, wait_budget, wait_for
from airflow_provider_kontext.emulator import EmulatorServer
from airflow_provider_kontext.hooks.kontext import KontextHook
from reliability.fake_airflow import FakeTaskInstance, task_context
from tests.conftest import requests_to


def waiting_task() -> BaseOperator:
    return BaseOperator(task_id="wait")


@pytest.mark.parametrize(
    ("timeout", "execution_timeout", "budget"),
    [(600, None, 600.0), (600, timedelta(seconds=120), 120.0), (60, timedelta(hours=1), 60.0)],
)
def test_the_budget_is_the_timeout_cut_to_the_execution_timeout(
    timeout: float, execution_timeout: timedelta | None, budget: float
) -> None:
    assert wait_budget(timeout, execution_timeout) == budget


def test_on_the_worker_every_record_comes_back_in_id_order(emulator: EmulatorServer) -> None:
    hook = KontextHook()
    ids = [hook.create_task("a kettle"), hook.create_task("a lamp"), hook.create_task("a mug")]
    result = wait_for(
        waiting_task(), hook, ids, kontext_conn_id=DEFAULT_CONN_ID, deferrable=False, poll_interval=0.1, budget=30
    )
    assert result.status is WaitStatus.SUCCESS
    assert [record.kie_task_id for record in result.records] == ids
    assert [record.prompt for record in result.records] == ["a kettle", "a lamp", "a mug"]


def test_on_the_worker_the_wait_ends_with_the_budget(emulator: EmulatorServer) -> None:
    hook = KontextHook()
    kie_task_id = hook.create_task("a kettle [emulator:slow=30]")
    started = time.time()
    result = wait_for(
        waiting_task(), hook, [kie_task_id], kontext_conn_id=DEFAULT_CONN_ID, deferrable=False, poll_interval=0.1,
        budget=0.5,
    )  # fmt: skip
    assert result.status is WaitStatus.TIMEOUT
    assert time.time() - started < 5
    with pytest.raises(exc.KontextTimeoutError):
        result.raise_for_status()


def test_deferrable_finished_tasks_end_on_the_worker_after_one_check(emulator: EmulatorServer) -> None:
    # Re-attached tasks (a retry, a sensor's ids) may be done already: no trip through the triggerer.
    hook = KontextHook()
    ids = [hook.create_task("a kettle"), hook.create_task("a lamp")]
    hook.wait_for_tasks(ids, timeout=30, poll_interval=0.2)
    checks_before = requests_to(emulator, "record-info")
    result = wait_for(
        waiting_task(), hook, ids, kontext_conn_id=DEFAULT_CONN_ID, deferrable=True, poll_interval=5, budget=600
    )
    assert result.status is WaitStatus.SUCCESS
    assert requests_to(emulator, "record-info") - checks_before == len(ids), "one status check per task"


def test_deferrable_new_tasks_defer_at_once_with_a_buffered_timeout(emulator: EmulatorServer) -> None:
    hook = KontextHook()
    ids = [hook.create_task("a kettle")]
    before = time.time()
    with pytest.raises(TaskDeferred) as deferred:
        wait_for(
            waiting_task(), hook, ids, kontext_conn_id=DEFAULT_CONN_ID, deferrable=True, poll_interval=2, budget=600,
            just_created=True,
        )  # fmt: skip
    assert requests_to(emulator, "record-info") == 0, "a task created a moment ago cannot be done yet"
    trigger = deferred.value.trigger
    assert trigger.kie_task_ids == ids
    assert before + 600 <= trigger.end_time <= time.time() + 600
    assert trigger.first_poll_at is not None and trigger.first_poll_at > before
    assert deferred.value.method_name == "execute_complete"
    timeout = deferred.value.timeout
    assert timeout is not None
    assert timeout >= timedelta(seconds=600 + 2 + DEFER_TIMEOUT_BUFFER_SECONDS - 1), "the trigger's own timeout wins"


def test_store_images_copies_each_succeeded_image_under_the_task_instances_name(
    emulator: EmulatorServer, tmp_path: Path
) -> None:
    hook = KontextHook()
    ids = [hook.create_task("a kettle"), hook.create_task("a lamp [emulator:generate_failed]")]
    records = hook.wait_for_tasks(ids, timeout=30, poll_interval=0.2).result_dicts()
    ti = FakeTaskInstance(dag_id="shop", run_id="manual__1", task_id="shots")

    stored = store_images(
        hook, task_context(ti), records, output_path=tmp_path.as_uri(), file_name=None,
        max_bytes=DEFAULT_MAX_IMAGE_BYTES,
    )  # fmt: skip
    assert len(stored) == 1, "the failed task has no image"
    assert records[0]["stored_path"] == stored[0]
    assert "stored_path" not in records[1]
    path = Path(urlsplit(stored[0]).path)
    assert path.relative_to(tmp_path).parts[:3] == ("shop", "manual__1", "shots")
    assert ids[0] in path.name
    assert path.read_bytes()[:3] == b"\xff\xd8\xff", "the image itself, a JPEG"


def test_store_images_keeps_every_image_of_a_task_with_several(emulator: EmulatorServer, tmp_path: Path) -> None:
    from airflow_provider_kontext._protocol.record import ApiFamily

    hook = KontextHook()
    ids = [hook.create_market_task("wan/2-7-image", {"prompt": "three kites", "n": 3})]
    records = hook.wait_for_tasks(ids, timeout=30, poll_interval=0.2, api=ApiFamily.MARKET).result_dicts()
    ti = FakeTaskInstance(dag_id="shop", run_id="manual__1", task_id="shots")

    stored = store_images(
        hook, task_context(ti), records, output_path=tmp_path.as_uri(), file_name=None,
        max_bytes=DEFAULT_MAX_IMAGE_BYTES,
    )  # fmt: skip
    names = [Path(urlsplit(uri).path).name for uri in stored]
    assert [name.rsplit(".", 1)[0] for name in names] == [f"-1-{ids[0]}-{n}" for n in range(3)], names
    assert len(set(names)) == 3, "no image of the task overwrote another"
    assert records[0]["stored_paths"] == stored and records[0]["stored_path"] == stored[0]
    assert all(Path(urlsplit(uri).path).read_bytes()[:3] == b"\xff\xd8\xff" for uri in stored)
