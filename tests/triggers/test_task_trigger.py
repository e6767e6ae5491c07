"""KontextTaskTrigger against the emulator over real HTTP, in a real event loop."""

from __future__ import annotations

import asyncio
import json
import time
from types import SimpleNamespace
from typing import Any

import pytest

from airflow_provider_kontext.emulator import EmulatorServer
from airflow_provider_kontext.hooks import async_client as client_module
from airflow_provider_kontext.hooks.kontext import KontextHook
from airflow_provider_kontext.triggers import task as trigger_module
from airflow_provider_kontext.triggers.task import KontextTaskTrigger
from tests.conftest import API_KEY, connection_json, requests_to

CLASSPATH = "airflow_provider_kontext.triggers.task.KontextTaskTrigger"


async def only_event(trigger: KontextTaskTrigger) -> dict[str, Any]:
    events = [event async for event in trigger.run()]
    assert len(events) == 1, "a trigger yields exactly one event"
    return events[0].payload


def make(ids: list[str], *, seconds: float = 30, **kwargs: Any) -> KontextTaskTrigger:
    return KontextTaskTrigger("kontext_default", ids, end_time=time.time() + seconds, poll_interval=0.1, **kwargs)


def test_serialize_round_trip_has_plain_values_and_no_secret() -> None:
    trigger = KontextTaskTrigger("kontext_default", ["t1", "t2"], end_time=1_900_000_000.5, poll_interval=7)
    classpath, kwargs = trigger.serialize()
    assert classpath == CLASSPATH
    assert kwargs == {
        "kontext_conn_id": "kontext_default",
        "kie_task_ids": ["t1", "t2"],
        "end_time": 1_900_000_000.5,
        "poll_interval": 7.0,
        "not_found_grace": 60.0,
        "first_poll_at": None,
        "end_from_trigger": None,
        "creates": None,
        "timeout": None,
        "api": "kontext",
    }
    assert json.loads(json.dumps(kwargs)) == kwargs
    assert API_KEY not in json.dumps(kwargs)
    assert API_KEY not in repr(trigger)
    assert KontextTaskTrigger(**kwargs).serialize() == (classpath, kwargs)


async def test_first_poll_waits_for_first_poll_at_and_survives_a_round_trip(emulator: EmulatorServer) -> None:
    # Tasks created a moment ago cannot be done: the trigger makes no request before first_poll_at.
    hook = KontextHook()
    ids = [hook.create_task(prompt="a kite"), hook.create_task(prompt="a kite, again")]
    start = time.time()
    _, kwargs = make(ids, first_poll_at=start + 0.8).serialize()
    trigger = KontextTaskTrigger(**json.loads(json.dumps(kwargs)))
    task = asyncio.ensure_future(only_event(trigger))
    await asyncio.sleep(0.5)
    assert requests_to(emulator, "record-info") == 0
    event = await task
    assert event["status"] == "success"
    assert requests_to(emulator, "record-info") >= 2
    assert time.time() - start >= 0.8


async def test_a_first_poll_at_in_the_past_polls_at_once(emulator: EmulatorServer) -> None:
    # A trigger resumed by a new triggerer long after it was planned does not wait again.
    kie_task_id = KontextHook().create_task(prompt="a kite")
    emulator.configure(generation_seconds=0, record_info_null_seconds=0)
    start = time.time()
    event = await only_event(make([kie_task_id], first_poll_at=start - 60))
    assert event["status"] == "success"
    assert time.time() - start < 0.5


@pytest.mark.parametrize("ids", [[], [""], ["ok", None]])
def test_bad_ids_fail_in_the_worker_not_the_triggerer(ids: list[Any]) -> None:
    with pytest.raises(ValueError):
        make(ids)


async def test_success_for_several_tasks_in_input_order(emulator: EmulatorServer) -> None:
    hook = KontextHook()
    ids = [hook.create_task(f"image {n}") for n in range(3)]
    event = await only_event(make(ids))
    assert event["status"] == "success"
    assert event["kie_task_ids"] == ids
    assert [r["kie_task_id"] for r in event["records"]] == ids
    assert all(r["result_image_url"].startswith("http") for r in event["records"])
    assert [r["prompt"] for r in event["records"]] == ["image 0", "image 1", "image 2"]
    assert emulator.stats()["creates_accepted"] == 3, "the trigger never creates"


async def test_failed_task_gives_failed_event_with_records(emulator: EmulatorServer) -> None:
    hook = KontextHook()
    ids = [hook.create_task("fine"), hook.create_task("bad [emulator:content_policy]")]
    event = await only_event(make(ids))
    assert event["status"] == "failed"
    assert event["records"][0]["status"] == "SUCCESS"
    assert event["records"][1]["status"] == "GENERATE_FAILED"
    assert event["records"][1]["error_code"] == 400


async def test_deadline_already_past_times_out_at_once_without_polling(emulator: EmulatorServer) -> None:
    task_id = KontextHook().create_task("x")
    event = await only_event(make([task_id], seconds=-5))
    assert event["status"] == "timeout"
    assert requests_to(emulator, "record-info") == 0


async def test_resume_from_serialized_kwargs_keeps_the_deadline(emulator: EmulatorServer) -> None:
    task_id = KontextHook().create_task("slow [emulator:slow=60]")
    first = make([task_id], seconds=1.5)
    run = asyncio.ensure_future(only_event(first))
    await asyncio.sleep(0.5)
    run.cancel()  # the triggerer died mid-wait
    with pytest.raises(asyncio.CancelledError):
        await run
    _, kwargs = first.serialize()
    started = time.time()
    event = await only_event(KontextTaskTrigger(**kwargs))
    assert event["status"] == "timeout"
    assert time.time() - started < 1.5, "a resumed trigger must not open a fresh window"
    assert time.time() >= kwargs["end_time"]
    assert emulator.stats()["creates_accepted"] == 1


async def test_polls_sleep_the_interval_clipped_to_the_deadline(
    emulator: EmulatorServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """
    The trigger's clock is virtual here: each sleep it asks for advances it by exactly that much.

    So the test counts the sleeps and polls the trigger chose, and a loaded machine (a slow poll,
    a late wake-up) cannot change them: 25 s to the deadline at a 10 s interval is 10, 10, then 5.
    """
    task_id = KontextHook().create_task("slow [emulator:slow=600]")
    start = time.time()
    clock = [start]
    sleeps: list[float] = []
    real_sleep = asyncio.sleep
    test_loop = asyncio.get_running_loop()

    async def fake_sleep(delay: float, *args: Any) -> Any:
        if asyncio.get_running_loop() is not test_loop:  # the emulator's own loop, in its thread
            return await real_sleep(delay, *args)
        sleeps.append(delay)
        clock[0] += delay
        return await real_sleep(0)

    monkeypatch.setattr(trigger_module.asyncio, "sleep", fake_sleep)
    monkeypatch.setattr(trigger_module, "time", SimpleNamespace(time=lambda: clock[0]))
    trigger = KontextTaskTrigger("kontext_default", [task_id], end_time=start + 25, poll_interval=10)
    event = await only_event(trigger)
    assert event["status"] == "timeout"
    assert sleeps == [10, 10, 5]
    assert requests_to(emulator, "record-info") == 3  # one poll before each sleep, none after the deadline


async def test_transient_poll_errors_are_tolerated(emulator: EmulatorServer) -> None:
    task_id = KontextHook().create_task("x")
    emulator.inject_fault("record-info", "http", count=2, status=503)
    emulator.inject_fault("record-info", "drop", count=1)
    emulator.inject_fault("record-info", "malformed_json", count=1)
    event = await only_event(make([task_id]))
    assert event["status"] == "success"


async def test_too_many_consecutive_failures_end_with_error(emulator: EmulatorServer) -> None:
    task_id = KontextHook().create_task("x")
    emulator.inject_fault("record-info", "http", count=50, status=500)
    event = await only_event(make([task_id]))
    assert event["status"] == "error"
    assert "5 consecutive" in event["message"]


async def test_auth_failure_is_permanent(emulator: EmulatorServer, monkeypatch: pytest.MonkeyPatch) -> None:
    task_id = KontextHook().create_task("x")
    monkeypatch.setenv("AIRFLOW_CONN_KONTEXT_DEFAULT", connection_json(emulator.base_url, api_key="revoked"))
    event = await only_event(make([task_id]))
    assert event["status"] == "error"
    assert event["error_class"] == "KontextAuthError"
    assert requests_to(emulator, "record-info") == 1, "no retry on a permanent error"
    assert "revoked" not in json.dumps(event)


async def test_unknown_task_fails_after_grace(emulator: EmulatorServer) -> None:
    event = await only_event(make(["no-such-task"], not_found_grace=0.3))
    assert event["status"] == "error"
    assert event["error_class"] == "KontextTaskNotFoundError"


async def test_missing_connection_is_an_error_event(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_KONTEXT_DEFAULT", '{"conn_type": "kontext"}')
    event = await only_event(make(["t1"]))
    assert event["status"] == "error"
    assert "no API key" in event["message"]


#: What a trigger must never do on its event loop's thread: each of these blocks it until the OS answers.
_BLOCKING_EVENTS = frozenset({"open", "time.sleep", "socket.getaddrinfo", "subprocess.Popen", "os.system"})


async def test_event_loop_is_never_blocked(emulator: EmulatorServer) -> None:
    """
    No blocking call and no long callback on the loop while five triggers wait.

    Measured so that load on the machine cannot fake or hide it: blocking calls are caught by
    an audit hook (sync file or DNS I/O, sleeps, blocking socket connects, imports of modules
    not loaded yet), and each callback's cost is the loop thread's own CPU time, which another
    process's load does not inflate.
    """
    import sys
    import threading

    hook = KontextHook()
    ids = [hook.create_task(f"n{n}") for n in range(5)]
    await only_event(make([hook.create_task("warm-up")]))  # loads the client stack once, off the loop
    loop_thread = threading.get_ident()
    blocking: list[str] = []
    watching = True

    def audit(event: str, args: tuple[Any, ...]) -> None:
        if not watching or threading.get_ident() != loop_thread:
            return
        if event in _BLOCKING_EVENTS:
            blocking.append(f"{event}{args!r:.120}")
        elif event == "socket.connect" and args[0].getblocking():
            blocking.append(f"blocking connect to {args[1]!r}")
        elif event == "import" and args[0] not in sys.modules:
            blocking.append(f"import {args[0]}")

    sys.addaudithook(audit)  # audit hooks cannot be removed: ``watching`` switches it off
    costs: list[tuple[float, str]] = []
    original_run = asyncio.events.Handle._run

    def timed_run(handle: asyncio.Handle) -> None:
        cpu = time.thread_time()
        original_run(handle)
        costs.append((time.thread_time() - cpu, repr(handle)[:120]))

    asyncio.events.Handle._run = timed_run  # type: ignore[method-assign]
    try:
        events = await asyncio.gather(*(only_event(make([task_id])) for task_id in ids))
    finally:
        asyncio.events.Handle._run = original_run  # type: ignore[method-assign]
        watching = False
    assert [e["status"] for e in events] == ["success"] * 5
    assert not blocking, blocking
    assert costs, "the callbacks were measured"
    slowest = max(costs)
    assert slowest[0] < 0.05, f"a callback held the loop for {slowest[0] * 1000:.0f} ms of CPU: {slowest[1]}"


async def test_triggers_share_one_keep_alive_pool(emulator: EmulatorServer) -> None:
    hook = KontextHook()
    ids = [hook.create_task(f"n{n}") for n in range(4)]
    seen_sessions: set[int] = set()
    original = client_module.shared_client

    def spying_shared_client(settings: Any) -> Any:
        manager = original(settings)

        class Spy:
            async def __aenter__(self) -> Any:
                client = await manager.__aenter__()
                seen_sessions.add(id(client._session))
                return client

            async def __aexit__(self, *exc_info: Any) -> Any:
                return await manager.__aexit__(*exc_info)

        return Spy()

    client_module.shared_client = spying_shared_client  # type: ignore[assignment]
    try:
        await asyncio.gather(*(only_event(make([task_id])) for task_id in ids))
    finally:
        client_module.shared_client = original
    assert len(seen_sessions) == 1
