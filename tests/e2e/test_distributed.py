"""A production-shaped deployment on one machine: Celery on Postgres and Redis, two workers, two triggerers.

Issue #11 item 3. What a production Airflow runs, started here for real: Postgres as the metadata
DB and Redis as the Celery broker (Debian packages, installed when missing; own ports, throwaway
directories), the CeleryExecutor with two ``airflow celery worker`` processes, an api-server, a
scheduler, a dag-processor and two triggerers, all against the ``kontext-emulator`` over loopback.

1. Triggerer failover: a DAG with deferrable generations, a batch and a sensor; while all of them
   are deferred, ``kill -9`` the triggerer that holds (most of) their triggers, its whole process
   tree. The other triggerer adopts them once the dead one's heartbeat is stale, and the run
   succeeds on its first try with exactly one create per image.
2. Worker loss: ``kill -9`` the Celery worker (its whole tree) that runs a batch while the batch is
   still creating (paced to one create per window). Airflow notices the task's missing heartbeat,
   retries it on the other worker, and the retry re-attaches to the kie task the first try
   created (Airflow 3.3's task state store): creates == images.

The API key must show up in no log, no file Airflow wrote, no metadata-DB row and no REST answer.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import pytest
import requests

from tests.conftest import API_KEY, connection_json
from tests.e2e.conftest import E2E_DAGS_DIR
from tests.e2e.deployment import (
    REQUEST_TIMEOUT,
    Component,
    Deployment,
    DeploymentError,
    DeploymentSpec,
    deploy,
    fired_events,
    fired_success,
    free_ports,
    run_path,
    wait_for,
)
from tests.e2e.services import Service, ensure_debian_packages, postgres, redis

pytestmark = [pytest.mark.e2e, pytest.mark.distributed, pytest.mark.timeout(1200)]

DAG_FILE = E2E_DAGS_DIR / "kontext_e2e_distributed.py"
FAILOVER_DAG = "kontext_e2e_distributed_failover"
WORKER_KILL_DAG = "kontext_e2e_distributed_worker_kill"
WORKERS = ("worker-a", "worker-b")
TRIGGERERS = ("triggerer-a", "triggerer-b")
#: Celery pool processes per worker: 2 workers x 2 = 4 slots, the parallelism below.
WORKER_CONCURRENCY = 2
#: The failover DAG's deferred task instances (generate[0], generate[1], batch, sensor) and images.
FAILOVER_DEFERRED = 4
FAILOVER_IMAGES = 5  # 2 generate + 2 batch + 1 submit
WORKER_KILL_IMAGES = 3
#: The worker-kill batch's pacing: one create per window (``RATE_WINDOW_SECONDS`` in the DAG file).
WORKER_KILL_WINDOW = 10.0
#: Generation time of the failover DAG's images: all five tasks must be deferred and the kill done
#: before the first image is ready (about 30 s after the first create on a loaded 2-core machine).
FAILOVER_SLOW_SECONDS = 45

#: Scheduler: a running task whose heartbeat (every ``[workers] min_heartbeat_interval`` = 5 s)
#: is older than this is failed and retried. The default is 300 s; 25 s is five heartbeats.
TASK_HEARTBEAT_TIMEOUT = 25
#: Triggerer: heartbeat every second; adopt a dead triggerer's triggers once its heartbeat is
#: 10 s old (defaults 5 s and 30 s). With two live triggerers the margin matters: a live one
#: late by more than the threshold would have its triggers adopted by the other.
TRIGGERER_HEARTBEAT = 1
TRIGGERER_THRESHOLD = 10

START_TIMEOUT = 240.0
DEFERRED_TIMEOUT = 240.0
RUN_TIMEOUT = 300.0
CREATING_TIMEOUT = 180.0


@dataclass
class Cluster:
    """The running distributed deployment, and which triggerer component runs which triggerer job."""

    deployment: Deployment
    postgres: Service
    redis: Service
    triggerer_jobs: dict[str, int] = field(default_factory=dict)
    #: Seconds each start-up step took, for the report.
    timings: dict[str, float] = field(default_factory=dict)
    rest_answers: list[str] = field(default_factory=list)

    def api_json(self, method: str, path: str, **kwargs: Any) -> Any:
        """A REST answer, kept for the key-leak check."""
        answer = self.deployment.api_json(method, path, **kwargs)
        self.rest_answers.append(json.dumps(answer))
        return answer


def distributed_spec(run_dir: Path, db_url: str, broker_url: str, services: list[Service]) -> DeploymentSpec:
    log_ports = free_ports(len(WORKERS) + len(TRIGGERERS))
    workers = [
        Component(
            name,
            (
                *("celery", "worker", "--celery-hostname", f"{name}@%h"),
                *("--concurrency", str(WORKER_CONCURRENCY)),
                # Each worker its own pid file: the default is one per AIRFLOW_HOME.
                *("--pid", str(run_dir / f"{name}.pid")),
            ),
            env={"AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(port)},
        )
        for name, port in zip(WORKERS, log_ports, strict=False)
    ]
    triggerers = [
        Component(
            name,
            ("triggerer", "--pid", str(run_dir / f"{name}.pid")),
            env={"AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(port)},
            # Started one after the other, so each triggerer job id belongs to a known process.
            autostart=index == 0,
        )
        for index, (name, port) in enumerate(zip(TRIGGERERS, log_ports[len(WORKERS) :], strict=True))
    ]
    return DeploymentSpec(
        dag_files=[DAG_FILE],
        api_key=API_KEY,
        connection=connection_json,
        executor="CeleryExecutor",
        database_url=db_url,
        parallelism=len(WORKERS) * WORKER_CONCURRENCY,
        components=[
            Component("api-server", ("api-server",)),
            Component("scheduler", ("scheduler",)),
            Component("dag-processor", ("dag-processor",)),
            *workers,
            *triggerers,
        ],
        service_logs={service.name: service.log for service in services},
        extra_env={
            "AIRFLOW__CELERY__BROKER_URL": broker_url,
            # Task states in the metadata DB, with the driver named (a bare postgresql:// means psycopg 3).
            "AIRFLOW__CELERY__RESULT_BACKEND": f"db+{db_url}",
            "AIRFLOW__CELERY__WORKER_CONCURRENCY": str(WORKER_CONCURRENCY),
            # The scheduler's pool for reading Celery task states: one process, not one per core.
            "AIRFLOW__CELERY__SYNC_PARALLELISM": "1",
            # Sending a task to the broker may take more than the default 1 s on a loaded machine.
            "AIRFLOW__CELERY__OPERATION_TIMEOUT": "10",
            "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": str(TASK_HEARTBEAT_TIMEOUT),
            "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": "2",
            "AIRFLOW__TRIGGERER__JOB_HEARTBEAT_SEC": str(TRIGGERER_HEARTBEAT),
            "AIRFLOW__TRIGGERER__TRIGGERER_HEALTH_CHECK_THRESHOLD": str(TRIGGERER_THRESHOLD),
            # Fewer idle connections per process: a dozen processes share one small Postgres.
            "AIRFLOW__DATABASE__SQL_ALCHEMY_POOL_SIZE": "3",
        },
    )


@pytest.fixture(scope="module")
def distributed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    run_dir = tmp_path_factory.mktemp("kontext-distributed")
    t0 = time.monotonic()
    timings: dict[str, float] = {}
    ensure_debian_packages()  # fails, never skips, where they cannot be installed
    timings["debian packages"] = time.monotonic() - t0
    with contextlib.ExitStack() as stack:
        pg, db_url = stack.enter_context(postgres(run_dir))
        rd, broker_url = stack.enter_context(redis(run_dir))
        timings["postgres + redis up"] = time.monotonic() - t0
        spec = distributed_spec(run_dir, db_url, broker_url, [pg, rd])
        d = stack.enter_context(deploy(run_dir, spec))
        timings["airflow healthy"] = time.monotonic() - t0
        cluster = Cluster(d, pg, rd, timings=timings)
        try:
            for worker in WORKERS:
                d.wait_log(worker, " ready.", START_TIMEOUT)
            # One triggerer at a time: the new alive TriggererJob is the one just started.
            for name in TRIGGERERS:
                if name not in d.processes:
                    d.start_component(name)
                known = set(cluster.triggerer_jobs.values())

                def new_job(known: set[int] = known) -> int | None:
                    ids = {int(job["id"]) for job in d.alive_jobs("TriggererJob")} - known
                    return ids.pop() if len(ids) == 1 else None

                cluster.triggerer_jobs[name] = wait_for(
                    f"{name} to register a live TriggererJob", START_TIMEOUT, new_job, diagnostics=d.diagnostics
                )
            timings["workers + triggerers up"] = time.monotonic() - t0
        except BaseException:
            d.failed = True
            raise
        print(f"\n[kontext distributed] start-up: {', '.join(f'{k} {v:.1f} s' for k, v in timings.items())}")
        yield cluster


# ------------------------------------------------------------------------------------------ helpers


def task_instances(c: Cluster, dag_id: str, run_id: str) -> dict[tuple[str, int], dict[str, Any]]:
    answer = c.api_json("GET", run_path(dag_id, run_id, "/taskInstances"), params={"limit": 100})
    return {(ti["task_id"], ti["map_index"]): ti for ti in answer["task_instances"]}


def xcom(c: Cluster, dag_id: str, run_id: str, task_id: str, key: str, map_index: int = -1) -> Any:
    path = run_path(dag_id, run_id, f"/taskInstances/{task_id}/xcomEntries/{key}")
    response = c.deployment.api("GET", path, params={"map_index": map_index})
    if response.status_code == 404:
        return None
    if response.status_code != 200:
        raise DeploymentError(f"GET {path} -> HTTP {response.status_code}: {response.text[:2000]}")
    c.rest_answers.append(response.text)
    value = response.json()["value"]
    if isinstance(value, str) and value[:1] in '{["':  # depending on serialization: a JSON string
        value = json.loads(value)
    return value


def creates(d: Deployment) -> tuple[int, int]:
    """(creates kie accepted, generate requests received) so far."""
    stats = d.emulator_stats()
    return int(stats["creates_accepted"]), int(stats["requests"].get("generate", 0))


def kie_task_terminal(d: Deployment, kie_id: str) -> bool:
    summary = requests.get(f"{d.emulator_url}/_emulator/tasks/{kie_id}", timeout=REQUEST_TIMEOUT).json()
    return bool(summary["terminal"])


def rows_with_key(c: Cluster) -> list[str]:
    """Every metadata-DB table whose rows, as text, contain the API key (trigger kwargs included)."""
    import psycopg2
    from psycopg2 import sql

    conn = psycopg2.connect(host="127.0.0.1", port=c.postgres.port, user="airflow", dbname="airflow")
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
            tables = [row[0] for row in cur.fetchall()]
            leaked = []
            for table in tables:
                query = sql.SQL("SELECT count(*) FROM {t} WHERE {t}::text LIKE %s").format(t=sql.Identifier(table))
                cur.execute(query, (f"%{API_KEY}%",))
                if cur.fetchone()[0]:
                    leaked.append(table)
            assert "trigger" in tables and "xcom" in tables, tables
            return leaked
    finally:
        conn.close()


def component_of_pid(d: Deployment, names: tuple[str, ...], pid: int) -> str | None:
    """Which of the components ``names`` has ``pid`` in its process tree."""
    for name in names:
        proc = d.processes.get(name)
        if proc is None:
            continue
        with contextlib.suppress(psutil.NoSuchProcess):
            leader = psutil.Process(proc.pid)
            if pid == leader.pid or pid in {child.pid for child in leader.children(recursive=True)}:
                return name
    return None


# ------------------------------------------------------------------------------------------ tests


def test_kill_9_of_a_triggerer_the_other_adopts_every_wait_and_nothing_is_created_twice(distributed: Cluster) -> None:
    c = distributed
    d = c.deployment
    t0 = time.monotonic()
    d.wait_dag_parsed(FAILOVER_DAG)
    creates_before = creates(d)
    run_id = d.trigger(FAILOVER_DAG, conf={"slow_seconds": FAILOVER_SLOW_SECONDS})
    deferred_keys = [("generate", 0), ("generate", 1), ("batch", -1), ("sensor", -1)]

    # 1. Every wait deferred, its trigger assigned to a live triggerer and started there.
    def all_deferred() -> dict[tuple[str, int], int] | None:
        tis = task_instances(c, FAILOVER_DAG, run_id)
        owners: dict[tuple[str, int], int] = {}
        for key in deferred_keys:
            ti = tis.get(key)
            if ti is None or ti["state"] != "deferred" or not ti.get("trigger"):
                return None
            owner = ti["trigger"]["triggerer_id"]
            if owner is None or int(owner) not in c.triggerer_jobs.values():
                return None
            if ') starting"' not in d.trigger_logs(FAILOVER_DAG, run_id, key[0], key[1]).get(int(owner), ""):
                return None
            owners[key] = int(owner)
        return owners

    owners: dict[tuple[str, int], int] = wait_for(
        f"generate[0..1], batch and sensor of {run_id} to be deferred with their triggers started",
        DEFERRED_TIMEOUT,
        all_deferred,
        diagnostics=d.diagnostics,
    )
    deferred_at = time.monotonic() - t0
    tis = task_instances(c, FAILOVER_DAG, run_id)
    assert tis[("submit", -1)]["state"] == "success", tis[("submit", -1)]

    # 2. Mid-generation: every kie task still running, else the kill proves nothing.
    kie_ids = [str(xcom(c, FAILOVER_DAG, run_id, "generate", "kie_task_id", i)) for i in range(2)]
    kie_ids += [str(kie_id) for kie_id in xcom(c, FAILOVER_DAG, run_id, "batch", "kie_task_ids")]
    kie_ids.append(str(xcom(c, FAILOVER_DAG, run_id, "submit", "return_value")))
    assert len(set(kie_ids)) == FAILOVER_IMAGES, kie_ids
    assert not [k for k in kie_ids if kie_task_terminal(d, k)], "a kie task finished before the kill: raise SLOW"
    # The trigger rows exist now (deleted once fired): their kwargs must not carry the key.
    assert not rows_with_key(c), "the API key is stored in the metadata DB"

    # 3. kill -9 the triggerer holding the most triggers (the whole tree, at once).
    load = Counter(owners.values())
    victim_job, victim_load = load.most_common(1)[0]
    victim = next(name for name, job in c.triggerer_jobs.items() if job == victim_job)
    (survivor,) = (name for name in TRIGGERERS if name != victim)
    survivor_job = c.triggerer_jobs[survivor]
    killed_at = time.monotonic()
    killed = d.kill_component(victim)
    tis = task_instances(c, FAILOVER_DAG, run_id)
    assert {tis[key]["state"] for key in deferred_keys} == {"deferred"}, "a trigger fired before the kill"
    print(
        f"\n[kontext distributed] all deferred after {deferred_at:.1f} s; triggers by job {dict(load)}; "
        f"kill -9 of {victim} (job {victim_job}, {victim_load} trigger(s)): {len(killed)} processes"
    )

    # 4. The survivor adopts the orphans; the run succeeds on its first try.
    state = d.wait_run(FAILOVER_DAG, run_id, RUN_TIMEOUT)
    recovered = time.monotonic() - killed_at
    tis = task_instances(c, FAILOVER_DAG, run_id)
    summary = {key: (ti["state"], ti["try_number"]) for key, ti in tis.items()}
    assert state == "success", f"run {run_id} ended {state!r}: {summary}"
    assert set(summary.values()) == {("success", 1)}, f"not all succeeded on their first try: {summary}"

    # 5. One create per image: nothing was submitted again on the way.
    creates_after = creates(d)
    assert creates_after[0] - creates_before[0] == FAILOVER_IMAGES, (creates_before, creates_after)
    assert creates_after[1] - creates_before[1] == FAILOVER_IMAGES, (creates_before, creates_after)

    # 6. Each trigger fired exactly once, in the survivor, with the success of its own kie task(s);
    #    the killed triggerer started its share and never fired.
    moved = 0
    for key in deferred_keys:
        logs = d.trigger_logs(FAILOVER_DAG, run_id, key[0], key[1])
        assert survivor_job in logs, f"{key}: the surviving triggerer (job {survivor_job}) never ran it: {sorted(logs)}"
        fired = fired_events(logs[survivor_job])
        assert len(fired) == 1, f"{key}: {len(fired)} events in job {survivor_job}:\n{logs[survivor_job]}"
        assert fired_success(fired[0]), fired[0]
        if owners[key] == victim_job:
            moved += 1
            assert not fired_events(logs[victim_job]), f"{key}: the killed triggerer fired"
        assert set(logs) <= {victim_job, survivor_job}, f"{key}: ran on unknown triggerer jobs {sorted(logs)}"
    assert moved == victim_load >= 1
    results = [xcom(c, FAILOVER_DAG, run_id, "generate", "return_value", i) for i in range(2)]
    results += xcom(c, FAILOVER_DAG, run_id, "batch", "return_value")
    sensed = xcom(c, FAILOVER_DAG, run_id, "sensor", "return_value")
    results += sensed if isinstance(sensed, list) else [sensed]
    assert [r["kie_task_id"] for r in results] == kie_ids, results
    assert {r["status"] for r in results} == {"SUCCESS"}, results
    print(
        f"[kontext distributed] {moved} trigger(s) moved to {survivor}; run succeeded {recovered:.1f} s after "
        f"the kill; creates {creates_after[0] - creates_before[0]} for {FAILOVER_IMAGES} images; "
        f"{time.monotonic() - t0:.1f} s in the test body"
    )


def test_kill_9_of_a_celery_worker_mid_batch_the_retry_re_attaches(distributed: Cluster) -> None:
    c = distributed
    d = c.deployment
    t0 = time.monotonic()
    d.wait_dag_parsed(WORKER_KILL_DAG)
    live_workers = tuple(name for name in WORKERS if name in d.processes)
    assert len(live_workers) == len(WORKERS), f"a Celery worker is down before the test: {d.dead_components()}"
    creates_before = creates(d)
    run_id = d.trigger(WORKER_KILL_DAG)
    state_path = run_path(WORKER_KILL_DAG, run_id, "/taskInstances/batch/state-store")

    # 1. The batch runs on a Celery worker and has created (and recorded) some of its images, not
    #    all: the next create waits for the rate window, so a kill now lands mid-batch and never
    #    between kie accepting a create and the id being written to the task state store.
    def creating() -> tuple[dict[str, Any], list[str]] | None:
        ti = task_instances(c, WORKER_KILL_DAG, run_id).get(("batch", -1))
        if ti is None or ti["state"] != "running" or not ti.get("pid"):
            return None
        ids = xcom(c, WORKER_KILL_DAG, run_id, "batch", "kie_task_ids") or []
        created = [str(kie_id) for kie_id in ids if kie_id]
        if not created or len(created) >= WORKER_KILL_IMAGES:
            return None
        accepted = creates(d)[0] - creates_before[0]
        stored = d.api("GET", state_path)
        if accepted != len(created) or stored.status_code != 200:
            return None
        entries = {e["key"]: e["value"] for e in stored.json()["task_state_store"]}
        c.rest_answers.append(stored.text)
        recorded = [e["kie_task_id"] for e in entries.get("kontext_submissions", []) if e.get("kie_task_id")]
        if recorded != created:
            return None
        # Early in the window (the emulator's clock is this machine's): the next create is seconds away.
        summary = requests.get(f"{d.emulator_url}/_emulator/tasks/{created[-1]}", timeout=REQUEST_TIMEOUT).json()
        return (ti, created) if time.time() - float(summary["createdAt"]) < WORKER_KILL_WINDOW / 2 else None

    ti, created_before_kill = wait_for(
        f"the batch of {run_id} to be creating on a Celery worker",
        CREATING_TIMEOUT,
        creating,
        every=0.5,
        diagnostics=d.diagnostics,
    )
    victim = component_of_pid(d, live_workers, int(ti["pid"]))
    assert victim is not None, f"task process {ti['pid']} is in no Celery worker's tree"
    killed_at = time.monotonic()
    killed = d.kill_component(victim)
    accepted_at_kill = creates(d)[0] - creates_before[0]
    assert accepted_at_kill == len(created_before_kill), "a create was accepted while the worker was being killed"
    print(
        f"\n[kontext distributed] kill -9 of {victim} ({len(killed)} processes) {killed_at - t0:.1f} s after the "
        f"trigger, with {len(created_before_kill)} of {WORKER_KILL_IMAGES} images created"
    )

    # 2. Airflow notices the missing heartbeat, fails the try and retries it on the other worker.
    state = d.wait_run(WORKER_KILL_DAG, run_id, RUN_TIMEOUT)
    recovered = time.monotonic() - killed_at
    ti = task_instances(c, WORKER_KILL_DAG, run_id)[("batch", -1)]
    assert state == "success", f"run {run_id} ended {state!r}: batch {ti['state']} try {ti['try_number']}"
    assert ti["try_number"] == 2, f"expected one retry after the kill, got try {ti['try_number']}"
    tries = c.api_json("GET", run_path(WORKER_KILL_DAG, run_id, "/taskInstances/batch/tries"))["task_instances"]
    first = next(t for t in tries if t["try_number"] == 1)
    assert first["state"] == "failed", f"the killed try ended {first['state']!r}"

    # 3. The retry re-attached to what the first try created and created only the rest.
    creates_after = creates(d)
    assert creates_after[0] - creates_before[0] == WORKER_KILL_IMAGES, (creates_before, creates_after)
    assert creates_after[1] - creates_before[1] == WORKER_KILL_IMAGES, (creates_before, creates_after)
    results = xcom(c, WORKER_KILL_DAG, run_id, "batch", "return_value")
    ids = [r["kie_task_id"] for r in results]
    assert ids[: len(created_before_kill)] == created_before_kill, (ids, created_before_kill)
    assert len(set(ids)) == WORKER_KILL_IMAGES and {r["status"] for r in results} == {"SUCCESS"}, results
    retry_log_path = (
        d.home / "logs" / f"dag_id={WORKER_KILL_DAG}" / f"run_id={run_id}" / "task_id=batch" / "attempt=2.log"
    )
    retry_log = retry_log_path.read_text(encoding="utf-8", errors="replace")
    for kie_id in created_before_kill:
        assert f"Re-attaching to kie task {kie_id}" in retry_log, retry_log[-3000:]
    print(
        f"[kontext distributed] retry succeeded {recovered:.1f} s after the kill; creates "
        f"{creates_after[0] - creates_before[0]} for {WORKER_KILL_IMAGES} images; "
        f"{time.monotonic() - t0:.1f} s in the test body"
    )


def test_the_api_key_is_in_no_log_file_db_row_or_rest_answer(distributed: Cluster) -> None:
    c = distributed
    d = c.deployment
    needle = API_KEY.encode()
    assert needle in d.logs["emulator"].read_bytes(), "positive control: the emulator prints its key at start"
    scanned = [
        path
        for path in sorted(d.run_dir.rglob("*"))
        if path.is_file() and not path.name.startswith("emulator.") and d.output_dir not in path.parents
    ]  # the emulator owns the key and prints it
    scanned += [path for path in sorted(c.postgres.data_dir.rglob("*")) if path.is_file()]
    task_logs = [path for path in scanned if "dag_id=" in str(path)]
    assert len(task_logs) >= 5, f"task/trigger logs were not scanned: {task_logs}"
    leaked = [str(path) for path in scanned if needle in path.read_bytes()]
    assert not leaked, f"the API key leaked into {leaked}"
    assert not rows_with_key(c), "the API key is stored in the metadata DB"
    assert len(c.rest_answers) >= 10, "too few REST answers were kept to check"
    leaked_answers = [answer[:500] for answer in c.rest_answers if API_KEY in answer]
    assert not leaked_answers, f"the API key leaked into REST answers: {leaked_answers}"
