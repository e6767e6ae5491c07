"""The submission ledger: kie task ids kept in the task state store, so a retry does not pay twice.

What two tries of one task instance see: the first try's ids in the state store, the second
re-attaching to them and creating only for requests that never got a usable task (failed, or
changed since). The creates go through a real ``KontextHook`` to the emulator over loopback, which
counts what was paid for; the context and its state store are :mod:`reliability.fake_airflow`'s.
"""

from __future__ import annotations

import logging
from typing import Any

from airflow_provider_kontext import exceptions as exc
from airflow_provider_kontext._tasks.ledger import STATE_KEY, Created, SubmissionLedger, submit_once
from airflow_provider_kontext.emulator import EmulatorServer
from airflow_provider_kontext.hooks.kontext import KontextHook
from airflow_provider_kontext.results import NOT_CREATED_STATUS
from reliability.fake_airflow import DictStateStore, task_context
from tests.conftest import requests_to

LOG = logging.getLogger(__name__)


def stored_ids(store: DictStateStore) -> list[str | None]:
    """The kie task ids the ledger left in the state store, in request order."""
    return [entry["kie_task_id"] for entry in store.get(STATE_KEY)]


def submit(requests: list[dict[str, Any]], store: DictStateStore | None = None) -> None:
    """One try's submission, as the operators make it."""
    submit_once(task_context(state_store=store), KontextHook(), requests)


def test_a_try_leaves_one_id_per_request_in_the_state_store(emulator: EmulatorServer) -> None:
    store = DictStateStore()
    submit([{"prompt": "a kettle"}, {"prompt": "a lamp"}, {"prompt": "a mug"}], store)
    ids = stored_ids(store)
    assert emulator.stats()["creates_accepted"] == 3
    created = [emulator.state.get_task(task_id) for task_id in ids if task_id]
    assert [task.prompt for task in created if task] == ["a kettle", "a lamp", "a mug"], "each id is its request's"


def test_a_second_try_reattaches_and_creates_only_for_failed_or_changed_requests(emulator: EmulatorServer) -> None:
    store = DictStateStore()
    first_requests = [{"prompt": "a kettle"}, {"prompt": "a lamp"}, {"prompt": "a mug [emulator:generate_failed]"}]
    submit(first_requests, store)
    first = stored_ids(store)
    # The third has failed.
    KontextHook().wait_for_tasks([task_id for task_id in first if task_id], timeout=30, poll_interval=0.2)

    second_requests = [first_requests[0], {"prompt": "a lamp", "aspect_ratio": "1:1"}, first_requests[2]]
    submit(second_requests, store)
    second = stored_ids(store)
    assert second[0] == first[0], "an unchanged request whose task succeeded re-attaches"
    assert second[1] != first[1], "a changed request is a new image"
    assert second[2] != first[2], "a request whose task failed is created again"
    assert emulator.stats()["creates_accepted"] == 3 + 2

    submit(second_requests, store)  # a third try, everything usable: nothing is paid again
    assert emulator.stats()["creates_accepted"] == 5
    assert stored_ids(store)[:2] == second[:2]


def test_without_a_state_store_every_try_creates_again(emulator: EmulatorServer) -> None:
    # Airflow < 3.3 has no task state store: documented, not hidden.
    requests = [{"prompt": "a kettle"}, {"prompt": "a lamp"}]
    submit(requests)
    submit(requests)
    assert emulator.stats()["creates_accepted"] == 4


def test_an_id_is_written_as_soon_as_it_is_recorded_and_only_reloaded_for_the_same_request() -> None:
    store = DictStateStore()
    ledger = SubmissionLedger(task_context(state_store=store), ["fingerprint-a", "fingerprint-b"])
    ledger.record(0, "kie-a")
    assert stored_ids(store) == ["kie-a", None], "a crash right after a create must not lose its id"
    ledger.record(1, "kie-b")

    same = SubmissionLedger(task_context(state_store=store), ["fingerprint-a", "fingerprint-b"])
    assert same.load() == 2
    assert same.ids == ["kie-a", "kie-b"] and same.missing() == []
    changed = SubmissionLedger(task_context(state_store=store), ["fingerprint-a", "fingerprint-b2"])
    assert changed.load() == 1
    assert changed.ids == ["kie-a", None] and changed.missing() == [1]
    assert SubmissionLedger(task_context(), ["fingerprint-a"]).load() == 0, "no store, nothing to load"


def test_drop_unusable_forgets_only_tasks_that_failed(emulator: EmulatorServer) -> None:
    hook = KontextHook()
    succeeded = hook.create_task("a kettle")
    failed = hook.create_task("a lamp [emulator:generate_failed]")
    running = hook.create_task("a mug [emulator:slow=30]")
    hook.wait_for_tasks([succeeded, failed], timeout=30, poll_interval=0.2)
    unknown = "0" * 32  # a status that cannot be read: kept, a blind resubmit could pay twice
    store = DictStateStore()
    fingerprints = ["succeeded", "failed", "running", "unknown"]
    first_try = SubmissionLedger(task_context(state_store=store), fingerprints)
    for index, task_id in enumerate([succeeded, failed, running, unknown]):
        first_try.record(index, task_id)

    retry = SubmissionLedger(task_context(state_store=store), fingerprints)
    assert retry.load() == 4
    retry.drop_unusable(hook, LOG)
    assert retry.ids == [succeeded, None, running, unknown]
    assert retry.missing() == [1]


def test_a_failed_create_reports_a_result_with_a_result_dicts_keys_naming_its_error(emulator: EmulatorServer) -> None:
    hook = KontextHook()
    kie_task_id = hook.create_task("a kettle")
    (created,) = hook.wait_for_tasks([kie_task_id], timeout=30, poll_interval=0.2).result_dicts()
    error = exc.KontextSubmissionOutcomeUnknownError("the answer to the create was lost", code=500)

    stats = {"attempts": 1, "accepted": 0, "rate_limited": 0, "maintenance": 0, "waited_seconds": 0.0}
    entry = Created(None, error, stats).report({"prompt": "a lamp", "aspect_ratio": "1:1", "model": 3})
    assert entry["create_stats"] == stats
    record = entry["not_created"]
    # The cost keys are added to both alike when a wait's results are read (WaitResult.result_dicts).
    assert set(created) - {"credits", "credits_estimated"} <= set(record), "same keys as a created task's result"
    assert record["kie_task_id"] is None and record["result_image_url"] is None
    assert record["status"] == NOT_CREATED_STATUS
    assert (record["prompt"], record["aspect_ratio"], record["model"]) == ("a lamp", "1:1", None)
    assert record["error_class"] == "KontextSubmissionOutcomeUnknownError", "kie may have billed it: say so"
    assert record["error_code"] == 500
    assert record["error_message"] == str(error)


def test_a_created_item_reports_only_its_cost() -> None:
    assert Created("kie-1", None, None).report({"prompt": "x"}) == {"create_stats": None}
    assert "not_created" not in Created("kie-1", None, {"attempts": 1}).report({"prompt": "x"})


def test_a_market_retry_reattaches_reading_its_tasks_where_market_tasks_are(emulator: EmulatorServer) -> None:
    from airflow_provider_kontext._protocol.record import ApiFamily

    store = DictStateStore()
    requests = [
        {"model": "z-image", "input": {"prompt": "a kettle", "aspect_ratio": "1:1"}},
        {"model": "z-image", "input": {"prompt": "a lamp [emulator:generate_failed]", "aspect_ratio": "1:1"}},
    ]
    submit(requests, store)
    first = stored_ids(store)
    KontextHook().wait_for_tasks([i for i in first if i], timeout=30, poll_interval=0.2, api=ApiFamily.MARKET)
    checks_before = requests_to(emulator, "jobs-record-info")

    submit(requests, store)
    second = stored_ids(store)
    assert second[0] == first[0], "the succeeded Market task re-attaches"
    assert second[1] != first[1], "the failed one is created again"
    assert emulator.stats()["creates_accepted_by_api"]["market"] == 3
    assert requests_to(emulator, "jobs-record-info") == checks_before + 2, "checked where Market tasks are"
    assert requests_to(emulator, "record-info") == 0
