"""Child side of the polling benchmarks: one contender in a fresh interpreter, measured from inside.

``bench_1_poll_cost`` and ``bench_2_capacity`` start this module once per contender with
``python -m benchmarks._pollers <mode> --spec FILE`` so that imports, RSS and the event loop of
one contender never leak into another, and the emulator's CPU (a separate process) is never
counted. The child prints one JSON object on stdout.

What is measured, and how, is the same for every contender:

* CPU: ``resource.getrusage(RUSAGE_SELF)`` of this process (all its threads, so the peer's
  ``sync_to_async`` worker threads count too) over the polling window only, not the imports;
* polls: the emulator's own status-request counter (``record-info``, or ``jobs-record-info`` for
  Market tasks), read before and after the window;
* connections opened: every ``loop.create_connection`` call of the event loop (aiohttp opens
  each TCP connection through it, whoever owns the session);
* RSS: ``/proc/self/statm`` before and after the window, and ``ru_maxrss``.

A spec may ask for a ``warmup``: seconds the waiters run before a second, steady-state window
is measured (``steady_cpu_seconds``, ``steady_polls``), so start-up (each trigger's connection
lookup, its first poll's URL building) does not dilute a per-poll comparison.

Contenders run by :func:`run_children` poll at the same time: each child, once imported, waits at
a barrier (``spec['barrier']``) until all are ready, so their windows cover the same seconds and
a load spike on a shared machine costs them alike. ``spec['spread']`` starts the waiters spread
evenly over one poll interval, as waits that began at different times are, rather than all
polling in the same instant each interval.

Modes: ``ours`` (real :class:`KontextTaskTrigger` instances, waiting on tasks of the spec's
``api`` family), ``peer`` (real ``HttpEventTrigger`` instances of apache-airflow-providers-http
with an async response check that reads ``successFlag``), ``floor`` (a bare aiohttp keep-alive
loop doing the same GETs) and ``capacity`` (batch triggers plus an event-loop lag probe).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import json
import os
import resource
import sys
import time
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Iterator

RECORD_INFO_PATH = "/api/v1/flux/kontext/record-info"
#: The emulator's name of each API family's status endpoint, in its request counters.
STATUS_ENDPOINTS = {"kontext": "record-info", "market": "jobs-record-info"}
#: The Market model the benchmarks create (text-to-image, one image, the cheapest FLUX.2).
MARKET_MODEL = "flux-2/pro-text-to-image"
#: The polling benchmarks' emulator: no create limit, no balance to run out, tasks readable at once.
EMULATOR_FLAGS = ("--rate-limit-creates", "1000000", "--credits", "1e9", "--record-info-null-seconds", "0")
#: Connection ids the parent puts in ``AIRFLOW_CONN_*`` (a real connection lookup, no mocks).
OURS_CONN_ID = "kie_bench"
PEER_CONN_ID = "kie_bench_http"
#: Where the peer's response check lives; HttpEventTrigger imports (and reloads) it every poll.
PEER_CHECK_PATH = "benchmarks._peer_check.kie_task_finished"
#: Pool size of the floor: the same as the provider's shared session, so connection counts compare.
FLOOR_POOL_SIZE = 32


def rss_bytes() -> int:
    """Current resident set size of this process."""
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE")


def cpu_seconds() -> float:
    """User + system CPU of this process (every thread), not of the emulator."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def status_count(base_url: str, api: str = "kontext") -> int:
    """How many status requests of the ``api`` family the emulator has answered so far (its own counter)."""
    with urllib.request.urlopen(f"{base_url}/_emulator/stats", timeout=60) as response:
        stats = json.loads(response.read())
    return int(stats["requests"].get(STATUS_ENDPOINTS[api], 0))


def count_connections(loop: asyncio.AbstractEventLoop) -> list[int]:
    """Count every TCP connection the loop opens from now on; returns the one-element counter."""
    counter = [0]
    original = loop.create_connection

    async def counting(*args: Any, **kwargs: Any) -> Any:
        counter[0] += 1
        return await original(*args, **kwargs)

    loop.create_connection = counting  # type: ignore[method-assign]
    return counter


async def drive_trigger(trigger: Any, events: list[Any]) -> None:
    """What the triggerer does with one trigger: iterate ``run()`` until its first event."""
    async for event in trigger.run():
        events.append(event)
        return


def build_ours(spec: dict[str, Any]) -> list[Callable[[], Awaitable[None]]]:
    # The trigger loads its aiohttp client lazily, off the loop (a one-off ~0.5 s that
    # bench_2 and tests/triggers/test_trigger_import.py look at); load it here, outside the
    # window, as the peer and the floor import aiohttp before theirs.
    import airflow_provider_kontext.hooks.async_client  # noqa: F401
    from airflow_provider_kontext.triggers.task import KontextTaskTrigger

    events: list[Any] = []
    end_time = time.time() + 24 * 3600
    triggers = [
        KontextTaskTrigger(
            OURS_CONN_ID, ids, end_time=end_time, poll_interval=spec["interval"], api=spec.get("api", "kontext")
        )
        for ids in spec["batches"]
    ]
    if not spec.get("spread"):
        return [lambda t=t: drive_trigger(t, events) for t in triggers]  # type: ignore[misc]
    step = spec["interval"] / max(1, len(triggers))

    async def start_later(index: int, trigger: Any) -> None:
        await asyncio.sleep(index * step)
        await drive_trigger(trigger, events)

    return [lambda i=i, t=t: start_later(i, t) for i, t in enumerate(triggers)]  # type: ignore[misc]


def build_peer(spec: dict[str, Any]) -> list[Callable[[], Awaitable[None]]]:
    from airflow.providers.http.triggers.http import HttpEventTrigger

    events: list[Any] = []
    triggers = []
    for ids in spec["batches"]:
        (task_id,) = ids  # the generic trigger watches one URL, so one task each
        triggers.append(
            HttpEventTrigger(
                response_check_path=PEER_CHECK_PATH,
                http_conn_id=PEER_CONN_ID,
                method="GET",
                endpoint=RECORD_INFO_PATH,
                data={"taskId": task_id},
                poll_interval=spec["interval"],
            )
        )
    return [lambda t=t: drive_trigger(t, events) for t in triggers]  # type: ignore[misc]


def build_floor(spec: dict[str, Any]) -> list[Callable[[], Awaitable[None]]]:
    import aiohttp

    url = spec["base_url"] + RECORD_INFO_PATH
    headers = {"Authorization": f"Bearer {spec['api_key']}", "Accept": "application/json"}
    interval = spec["interval"]
    shared: dict[str, aiohttp.ClientSession] = {}

    async def waiter(task_id: str) -> None:
        if "session" not in shared:
            shared["session"] = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=FLOOR_POOL_SIZE))
        session = shared["session"]
        try:
            while True:
                async with session.get(url, params={"taskId": task_id}, headers=headers) as response:
                    body = await response.read()
                if json.loads(body)["data"]["successFlag"] != 0:
                    return
                await asyncio.sleep(interval)
        finally:
            if not session.closed:
                await session.close()

    return [lambda i=ids[0]: waiter(i) for ids in spec["batches"]]  # type: ignore[misc]


async def poll_window(spec: dict[str, Any], starters: list[Callable[[], Awaitable[None]]]) -> dict[str, Any]:
    """
    Start every waiter, let them poll for ``spec['seconds']``, cancel them, report the counters.

    With ``spec['warmup']`` the waiters first run that long, and the ``seconds`` after it are
    also measured on their own (``steady_*``): from the first poll round after start-up to just
    before the cancellation.
    """
    connections = count_connections(asyncio.get_running_loop())
    tasks = [asyncio.ensure_future(start()) for start in starters]
    steady: dict[str, Any] = {}
    warmup = float(spec.get("warmup", 0.0))
    if warmup > 0:
        await asyncio.sleep(warmup)
        # The counter read blocks the loop for a moment: read it outside the CPU bracket.
        polls_before = status_count(spec["base_url"], spec.get("api", "kontext"))
        cpu_before = cpu_seconds()
    await asyncio.sleep(spec["seconds"])
    if warmup > 0:
        steady["steady_cpu_seconds"] = cpu_seconds() - cpu_before
        steady["steady_polls"] = status_count(spec["base_url"], spec.get("api", "kontext")) - polls_before
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await asyncio.sleep(0.25)  # let closed sessions release their sockets
    return {"connections_opened": connections[0], **steady}


async def capacity_window(spec: dict[str, Any]) -> dict[str, Any]:
    """
    The triggerer's view of 10k in-flight images: import the trigger on the loop, run batch triggers, probe lag.

    The probe sleeps 10 ms in a loop and records how late it wakes up: the scheduling delay
    every other trigger in the process would see too.
    """
    loop = asyncio.get_running_loop()
    connections = count_connections(loop)
    lags: list[float] = []
    busy: list[float] = []
    stop = asyncio.Event()

    async def probe() -> None:
        # Wall lateness is what the issue asks for, but on a shared machine it also counts the
        # time the OS ran someone else; the loop thread's own CPU while the probe slept is the
        # part this process caused.
        while not stop.is_set():
            started, cpu = loop.time(), time.thread_time()
            await asyncio.sleep(0.01)
            lags.append(max(0.0, loop.time() - started - 0.01))
            busy.append(time.thread_time() - cpu)

    probe_task = asyncio.ensure_future(probe())
    await asyncio.sleep(0.1)
    # The triggerer imports a trigger's class on its loop the first time it sees the classpath.
    started = time.perf_counter()
    module = importlib.import_module("airflow_provider_kontext.triggers.task")
    import_seconds = time.perf_counter() - started
    events: list[Any] = []
    end_time = time.time() + 24 * 3600
    triggers = [
        module.KontextTaskTrigger(OURS_CONN_ID, ids, end_time=end_time, poll_interval=spec["interval"])
        for ids in spec["batches"]
    ]
    tasks = [asyncio.ensure_future(drive_trigger(t, events)) for t in triggers]
    await asyncio.sleep(spec["seconds"])
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    stop.set()
    await probe_task
    return {
        "connections_opened": connections[0],
        "lags": lags,
        "busy": busy,
        "import_seconds": import_seconds,
        "events": len(events),
    }


def wait_at_barrier(barrier: Path, name: str) -> None:
    """Say this child is ready (imported, waiters built), then wait until the parent says go."""
    (barrier / f"{name}.ready").touch()
    go = barrier / "go"
    while not go.exists():
        time.sleep(0.01)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=("ours", "peer", "floor", "capacity"))
    parser.add_argument("--spec", type=Path, required=True)
    args = parser.parse_args()
    spec = json.loads(args.spec.read_text())
    if args.mode == "capacity":
        import airflow.triggers.base  # noqa: F401 - a triggerer has Airflow loaded before any trigger
    else:
        builders = {"ours": build_ours, "peer": build_peer, "floor": build_floor}
        starters = builders[args.mode](spec)
    if "barrier" in spec:
        wait_at_barrier(Path(spec["barrier"]), spec["barrier_name"])
    polls_before = status_count(spec["base_url"], spec.get("api", "kontext"))
    rss_before = rss_bytes()
    cpu_before = cpu_seconds()
    wall_before = time.perf_counter()
    window = capacity_window(spec) if args.mode == "capacity" else poll_window(spec, starters)
    result = asyncio.run(window)
    wall = time.perf_counter() - wall_before
    cpu = cpu_seconds() - cpu_before
    rss_after = rss_bytes()
    polls = status_count(spec["base_url"], spec.get("api", "kontext")) - polls_before
    result.update(
        mode=args.mode,
        cpu_seconds=cpu,
        wall_seconds=wall,
        polls=polls,
        rss_before=rss_before,
        rss_after=rss_after,
        max_rss=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
    )
    json.dump(result, sys.stdout)


if __name__ == "__main__":
    main()


# ----------------------------------------------------------------------------- parent side


def create_tasks(base_url: str, api_key: str, count: int, *, slow_seconds: float, api: str = "kontext") -> list[str]:
    """Create ``count`` emulator tasks of the ``api`` family, unfinished for ``slow_seconds`` (the prompt marker)."""
    import concurrent.futures

    def create(index: int) -> str:
        prompt = f"bench image {index} [emulator:slow={slow_seconds:g}]"
        if api == "market":
            path = "/api/v1/jobs/createTask"
            payload = {"model": MARKET_MODEL, "input": {"prompt": prompt, "aspect_ratio": "1:1", "resolution": "1K"}}
        else:
            path, payload = "/api/v1/flux/kontext/generate", {"prompt": prompt}
        request = urllib.request.Request(
            f"{base_url}{path}",
            data=json.dumps(payload).encode(),
            headers={"Authorization": f"Bearer {api_key}", "Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=60) as response:
            payload = json.loads(response.read())
        if payload.get("code") != 200:
            raise RuntimeError(f"emulator refused a create: {payload}")
        return str(payload["data"]["taskId"])

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        return list(pool.map(create, range(count)))


@contextlib.contextmanager
def generating_tasks(
    count: int, *, per_trigger: int, interval: float, seconds: float
) -> Iterator[tuple[dict[str, Any], dict[str, str]]]:
    """
    An emulator process holding ``count`` tasks that stay generating, and what a child needs to poll them.

    Yields the child's spec (the ids in triggers of ``per_trigger``, the poll ``interval``, the
    measured window of ``seconds``) and its environment (the connection).
    """
    from benchmarks.common import API_KEY, emulator_process

    with emulator_process(*EMULATOR_FLAGS) as base_url:
        ids = create_tasks(base_url, API_KEY, count, slow_seconds=3600)
        time.sleep(0.2)
        spec = {
            "base_url": base_url,
            "api_key": API_KEY,
            "batches": [ids[i : i + per_trigger] for i in range(0, count, per_trigger)],
            "interval": interval,
            "seconds": seconds,
        }
        yield spec, connection_env(base_url, API_KEY)


def connection_env(base_url: str, api_key: str) -> dict[str, str]:
    """``AIRFLOW_CONN_*`` for both triggers: each looks its connection up the real way."""
    from urllib.parse import urlsplit

    parts = urlsplit(base_url)
    ours = {"conn_type": "kontext", "host": base_url, "password": api_key}
    peer = {
        "conn_type": "http",
        "host": parts.hostname,
        "port": parts.port,
        "schema": parts.scheme,
        "extra": {"Authorization": f"Bearer {api_key}", "Accept": "application/json"},
    }
    return {
        f"AIRFLOW_CONN_{OURS_CONN_ID.upper()}": json.dumps(ours),
        f"AIRFLOW_CONN_{PEER_CONN_ID.upper()}": json.dumps(peer),
    }


def run_child(mode: str, spec: dict[str, Any], env: dict[str, str]) -> dict[str, Any]:
    """Run one contender in a fresh interpreter and return what it measured."""
    (result,) = run_children([(mode, spec)], env)
    return result


def run_children(jobs: list[tuple[str, dict[str, Any]]], env: dict[str, str]) -> list[dict[str, Any]]:
    """
    Run contenders ``(mode, spec)`` each in a fresh interpreter; what each measured, in order.

    Several contenders run at the same time and start polling together: each child waits at a
    barrier once imported, and all are released when the last is ready.
    """
    import subprocess
    import tempfile

    root = Path(__file__).resolve().parent.parent
    running: list[tuple[str, dict[str, Any], subprocess.Popen[bytes]]] = []
    with tempfile.TemporaryDirectory(prefix="kontext-bench-children-") as tmp:
        barrier = Path(tmp)
        try:
            for index, (mode, spec) in enumerate(jobs):
                spec_file = barrier / f"spec-{index}.json"
                together = {"barrier": tmp, "barrier_name": str(index)} if len(jobs) > 1 else {}
                spec_file.write_text(json.dumps({**spec, **together}))
                # Files, not pipes: a child must never block on a full pipe while another is read.
                with (barrier / f"{index}.out").open("w") as out, (barrier / f"{index}.err").open("w") as err:
                    proc = subprocess.Popen(
                        [sys.executable, "-m", "benchmarks._pollers", mode, "--spec", str(spec_file)],
                        cwd=root,
                        env={**os.environ, "AIRFLOW__CORE__LOAD_EXAMPLES": "False", **env},
                        stdout=out,
                        stderr=err,
                    )
                running.append((mode, spec, proc))
            if len(jobs) > 1:
                deadline = time.monotonic() + 600
                while not all((barrier / f"{index}.ready").exists() for index in range(len(jobs))):
                    if any(proc.poll() is not None for _, _, proc in running) or time.monotonic() > deadline:
                        break  # a child died (its error is read below) or never got ready
                    time.sleep(0.01)
                (barrier / "go").touch()
            results = []
            for index, (mode, spec, proc) in enumerate(running):
                proc.wait(timeout=spec["seconds"] + spec.get("warmup", 0) + 600)
                if proc.returncode != 0:
                    stderr = (barrier / f"{index}.err").read_text()
                    raise RuntimeError(f"{mode} child failed ({proc.returncode}): {stderr[-3000:]}")
                results.append(json.loads((barrier / f"{index}.out").read_text().strip().splitlines()[-1]))
            return results
        finally:
            for _, _, proc in running:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
