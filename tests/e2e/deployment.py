"""A real Airflow 3 deployment on one machine: the e2e tests and the worker-slot benchmark share it.

By default four components (api-server, scheduler, dag-processor, triggerer) run as separate
processes on a throwaway SQLite home with the LocalExecutor, next to a ``kontext-emulator``
console script. :class:`DeploymentSpec` changes the executor, the metadata DB and the component
list: the distributed test runs the CeleryExecutor on Postgres (:mod:`tests.e2e.services`) with
two Celery workers and two triggerers. The DAG folder is a throwaway directory of symlinks, so
each caller deploys exactly the DAG files it needs (the examples, a test-only DAG, a benchmark
DAG) without one folder serving all of them.

Nothing here imports pytest or ``tests/conftest.py`` (whose import sets in-process Airflow
settings): the benchmark runs it outside pytest. Failures raise :class:`DeploymentError`, an
``AssertionError``, so pytest reports them as test failures with the given diagnostics.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import psutil
import requests

from airflow_provider_kontext._compat import AIRFLOW_V_3_2_PLUS

BIN_DIR = Path(sys.executable).parent
TERMINAL_RUN_STATES = frozenset({"success", "failed"})

# Bounded waits, generous for a loaded 2-core machine.
EMULATOR_START_TIMEOUT = 30.0
DB_MIGRATE_TIMEOUT = 180.0
HEALTH_TIMEOUT = 150.0
DAG_PARSE_TIMEOUT = 150.0
STOP_GRACE_SECONDS = 10.0
KILL_TIMEOUT = 10.0
REQUEST_TIMEOUT = 20.0
EVENT_LOG_PAGE = 100  # the REST API's default maximum page size


class DeploymentError(AssertionError):
    """The deployment did not do what was expected in time (carries the diagnostics to read)."""


def free_ports(count: int) -> list[int]:
    """Distinct free loopback ports (all sockets held open until every port is picked)."""
    with contextlib.ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) for _ in range(count)]
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [int(sock.getsockname()[1]) for sock in sockets]


def tail(path: Path, lines: int = 80) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as err:
        return f"<cannot read {path}: {err}>"
    return "\n".join(text.splitlines()[-lines:]) or "<empty>"


def wait_for(
    what: str,
    deadline_seconds: float,
    probe: Callable[[], Any],
    *,
    every: float = 1.0,
    diagnostics: Callable[[], str] | None = None,
) -> Any:
    """Call ``probe`` until it returns something truthy; raise with ``what`` after the deadline.

    Connection errors and timeouts count as "not yet": a busy or still-starting server.
    """
    deadline = time.monotonic() + deadline_seconds
    last_error: BaseException | None = None
    while time.monotonic() < deadline:
        try:
            result = probe()
        except (requests.ConnectionError, requests.Timeout) as err:
            last_error = err
        else:
            if result:
                return result
        time.sleep(every)
    extra = f"\n{diagnostics()}" if diagnostics else ""
    raise DeploymentError(
        f"Timed out after {deadline_seconds:.0f} s waiting for {what} (last error: {last_error!r}).{extra}"
    )


def sanitized_env() -> dict[str, str]:
    """This process's environment without in-process Airflow settings (tests/conftest.py sets some)."""
    return {key: value for key, value in os.environ.items() if not key.startswith(("AIRFLOW", "KONTEXT_", "PYTEST_"))}


def stop_group(proc: subprocess.Popen[bytes], sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)  # start_new_session=True: the group id is the leader's pid


def stop_all(processes: Sequence[subprocess.Popen[bytes]]) -> None:
    """SIGTERM every process group, then SIGKILL whatever is still around after a grace period."""
    for proc in processes:
        stop_group(proc, signal.SIGTERM)
    deadline = time.monotonic() + STOP_GRACE_SECONDS
    for proc in processes:
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=max(deadline - time.monotonic(), 0.1))
    # Kill the groups even if the leader exited: LocalExecutor workers or uvicorn children may linger.
    for proc in processes:
        stop_group(proc, signal.SIGKILL)
    for proc in processes:
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=5)


def start(argv: list[str], env: Mapping[str, str], log: Path, cwd: Path) -> subprocess.Popen[bytes]:
    """Start a process in its own session (so its whole group can be stopped), output to ``log``."""
    with log.open("ab") as handle:
        return subprocess.Popen(
            argv,
            env=dict(env),
            cwd=cwd,
            stdout=handle,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )


def _alive(pid: int) -> bool:
    """Whether ``pid`` still runs; a zombie (dead, not yet reaped by its new parent) does not."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


@dataclass(frozen=True)
class KilledProcess:
    """One process of a killed component's tree, as it was just before the kill."""

    pid: int
    ppid: int
    cmdline: str
    listening_ports: frozenset[int]


@dataclass(frozen=True)
class Component:
    """One Airflow process of the deployment.

    :param name: Its key in :attr:`Deployment.processes` and the name of its log file.
    :param command: The ``airflow`` sub-command and its arguments, e.g. ``("celery", "worker")``
        (the api-server gets ``--host``/``--port`` added).
    :param env: Environment of this process only (e.g. its own log-server port).
    :param autostart: Started by :func:`deploy`; otherwise the caller starts it when it wants.
    """

    name: str
    command: tuple[str, ...]
    env: Mapping[str, str] = field(default_factory=dict)
    autostart: bool = True


#: The LocalExecutor deployment: one process per component.
COMPONENTS = ("api-server", "scheduler", "dag-processor", "triggerer")
LOCAL_COMPONENTS = tuple(Component(name, (name,)) for name in COMPONENTS)


@dataclass(frozen=True)
class DeploymentSpec:
    """What to deploy.

    :param dag_files: DAG files (and modules they import) to symlink into the DAG folder.
    :param api_key: The key the emulator accepts.
    :param connection: Builds the ``AIRFLOW_CONN_KONTEXT_DEFAULT`` JSON from the emulator's URL.
    :param emulator_args: Extra ``kontext-emulator`` flags.
    :param parallelism: ``[core] parallelism``: LocalExecutor worker processes (each ~150 MB).
    :param extra_env: More environment for every component (wins over the defaults).
    :param executor: ``[core] executor``.
    :param database_url: The metadata DB's SQLAlchemy URL; ``None``: a SQLite file in the home.
    :param components: The Airflow processes to run.
    :param service_logs: Logs of services the caller runs (Postgres, Redis), for the diagnostics.
    :param users: Simple auth manager users (name -> role, e.g. ``{"admin": "admin"}``): requests
        then need credentials, and :attr:`Deployment.http` carries the first admin's token.
        Empty: every request is an admin (``simple_auth_manager_all_admins``).
    """

    dag_files: Sequence[Path]
    api_key: str
    connection: Callable[[str], str]
    emulator_args: Sequence[str] = ("--generation-seconds", "3", "--image-long-side", "256")
    parallelism: int = 2
    extra_env: Mapping[str, str] = field(default_factory=dict)
    executor: str = "LocalExecutor"
    database_url: str | None = None
    components: Sequence[Component] = LOCAL_COMPONENTS
    service_logs: Mapping[str, Path] = field(default_factory=dict)
    users: Mapping[str, str] = field(default_factory=dict)


@dataclass
class Deployment:
    """What a test or benchmark needs to drive and inspect the running deployment."""

    base_url: str
    emulator_url: str
    run_dir: Path
    home: Path
    output_dir: Path
    env: dict[str, str]
    logs: dict[str, Path]
    components: dict[str, Component] = field(default_factory=dict)
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    http: requests.Session = field(default_factory=requests.Session)
    failed: bool = False
    #: Every process ever started, including replaced components: all are stopped at the end.
    started: list[subprocess.Popen[bytes]] = field(default_factory=list)
    #: The simple auth manager's passwords (``DeploymentSpec.users``), by user name.
    passwords: dict[str, str] = field(default_factory=dict)

    def token(self, username: str) -> str:
        """A fresh API token for one of ``DeploymentSpec.users`` (``POST /auth/token``)."""
        body = {"username": username, "password": self.passwords[username]}
        response = requests.post(f"{self.base_url}/auth/token", json=body, timeout=REQUEST_TIMEOUT)
        if response.status_code != 201:
            raise DeploymentError(f"POST /auth/token for {username} -> HTTP {response.status_code}: {response.text}")
        token: str = response.json()["access_token"]
        return token

    # ------------------------------------------------------------------ inspection

    def api(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", REQUEST_TIMEOUT)
        return self.http.request(method, f"{self.base_url}{path}", **kwargs)

    def api_json(self, method: str, path: str, *, expect: int = 200, **kwargs: Any) -> Any:
        """The JSON answer of a REST call that must answer ``expect``."""
        response = self.api(method, path, **kwargs)
        if response.status_code != expect:
            raise DeploymentError(f"{method} {path} -> HTTP {response.status_code}: {response.text[:2000]}")
        return response.json()

    def emulator_stats(self) -> dict[str, Any]:
        stats: dict[str, Any] = requests.get(f"{self.emulator_url}/_emulator/stats", timeout=REQUEST_TIMEOUT).json()
        return stats

    def dead_components(self) -> dict[str, int]:
        return {name: proc.returncode for name, proc in self.processes.items() if proc.poll() is not None}

    def log_tails(self, lines: int = 80) -> dict[str, str]:
        tails = {f"{name} log": tail(path, lines) for name, path in self.logs.items()}
        for path in sorted((self.home / "logs").glob("**/dag_id=*/**/*.log*")):
            tails[f"task log {path.relative_to(self.home / 'logs')}"] = tail(path, lines)
        return tails

    def diagnostics(self) -> str:
        dead = self.dead_components()
        parts = [f"dead components (exit codes): {dead}"] if dead else []
        parts += [f"----- {name} -----\n{text}" for name, text in self.log_tails(40).items()]
        return "\n".join(parts)

    def alive_jobs(self, job_type: str) -> list[dict[str, Any]]:
        """The jobs of ``job_type`` (``TriggererJob``, ``SchedulerJob``, ...) whose heartbeat is fresh."""
        answer = self.api_json("GET", "/api/v2/jobs", params={"job_type": job_type, "is_alive": True, "limit": 100})
        jobs: list[dict[str, Any]] = answer["jobs"]
        return jobs

    def trigger_logs(
        self, dag_id: str, run_id: str, task_id: str, map_index: int = -1, attempt: int = 1
    ) -> dict[int, str]:
        """The triggerer logs of one task instance try, by triggerer job id (one file per job)."""
        task_dir = self.home / "logs" / f"dag_id={dag_id}" / f"run_id={run_id}" / f"task_id={task_id}"
        if map_index >= 0:
            task_dir = task_dir / f"map_index={map_index}"
        logs: dict[int, str] = {}
        for path in task_dir.glob(f"attempt={attempt}.log.trigger.*.log"):
            logs[int(path.name.rsplit(".", 2)[1])] = path.read_text(encoding="utf-8", errors="replace")
        return logs

    def event_rows(self, dag_id: str, run_id: str, task_id: str) -> list[dict[str, Any]]:
        """Every row of Airflow's event log for the run's ``task_id`` task instances, all pages."""
        rows: list[dict[str, Any]] = []
        while True:
            params: dict[str, str | int] = {
                "dag_id": dag_id,
                "run_id": run_id,
                "task_id": task_id,
                "limit": EVENT_LOG_PAGE,
                "offset": len(rows),
                "order_by": "id",
            }
            page: list[dict[str, Any]] = self.api_json("GET", "/api/v2/eventLogs", params=params)["event_logs"]
            rows += page
            if len(page) < EVENT_LOG_PAGE:
                return rows

    def worker_starts(self, dag_id: str, run_id: str, task_id: str) -> dict[int, int]:
        """
        Per map index: how many times a worker started the task instance.

        From Airflow 3.2, counted from the event log's ``running`` rows, which the Execution API
        writes each time a worker takes a task instance to ``running`` (the first start and every
        resume after a deferral). 3.0 and 3.1's Execution API writes no such rows: there, counted
        from the task's log files, where every worker start parses the DAG file once ("Filling up
        the DagBag from"). A task that starts and ends in the triggerer has none either way.
        """
        starts: dict[int, int] = {}
        if AIRFLOW_V_3_2_PLUS:
            for row in self.event_rows(dag_id, run_id, task_id):
                if row["event"] == "running":
                    starts[int(row["map_index"])] = starts.get(int(row["map_index"]), 0) + 1
            return starts
        task_dir = self.home / "logs" / f"dag_id={dag_id}" / f"run_id={run_id}" / f"task_id={task_id}"
        for log in sorted(task_dir.glob("**/attempt=*.log")):
            map_dir = log.parent.name
            map_index = int(map_dir.removeprefix("map_index=")) if map_dir.startswith("map_index=") else -1
            count = log.read_text(encoding="utf-8", errors="replace").count("Filling up the DagBag from")
            if count:
                starts[map_index] = starts.get(map_index, 0) + count
        return starts

    def create_kie_task(self, prompt: str, api_key: str) -> str:
        """Create a kie task straight on the emulator, as a system outside Airflow would; returns its id."""
        answer = requests.post(
            f"{self.emulator_url}/api/v1/flux/kontext/generate",
            headers={"Authorization": f"Bearer {api_key}"},
            json={"prompt": prompt},
            timeout=REQUEST_TIMEOUT,
        )
        if answer.status_code != 200:
            raise DeploymentError(f"create on the emulator -> HTTP {answer.status_code}: {answer.text[:2000]}")
        task_id: str = answer.json()["data"]["taskId"]
        return task_id

    def wait_log(self, name: str, needle: str, timeout: float) -> None:
        """Wait until component ``name`` wrote ``needle`` to its log (e.g. Celery's "ready.")."""

        def written() -> bool:
            if name in self.dead_components():
                code = self.processes[name].returncode
                raise DeploymentError(f"{name} exited (code {code}):\n{tail(self.logs[name])}")
            return needle in self.logs[name].read_text(encoding="utf-8", errors="replace")

        wait_for(f"{name} to log {needle!r}", timeout, written, every=0.5, diagnostics=self.diagnostics)

    # ------------------------------------------------------------------ components

    def start_component(self, name: str, *, log_name: str | None = None) -> subprocess.Popen[bytes]:
        """Start the component ``name`` (again), logging to ``<log_name or name>.log``."""
        component = self.components[name]
        log_name = log_name or name
        argv = [str(BIN_DIR / "airflow"), *component.command]
        if component.command[0] == "api-server":
            argv += ["--host", "127.0.0.1", "--port", self.base_url.rsplit(":", 1)[1]]
        log = self.run_dir / f"{log_name}.log"
        proc = start(argv, {**self.env, **component.env}, log, self.run_dir)
        self.logs[log_name] = log
        self.processes[name] = proc
        self.started.append(proc)
        return proc

    def kill_component(self, name: str) -> list[KilledProcess]:
        """``kill -9`` a component's whole process tree at once, as a crash or the OOM killer would.

        A component is more than the process we started: the triggerer forks its trigger runner
        (the process whose event loop runs the triggers) and a log server. Signalling only the
        leader, or only its process group, could leave the runner polling (Airflow can put
        children into groups of their own). So the tree is frozen first (SIGSTOP: no process
        can fork or exit unnoticed), listed, and every member is SIGKILLed; then each pid is
        checked to be gone. Returns the tree as it was before the kill.
        """
        proc = self.processes.pop(name)
        leader = psutil.Process(proc.pid)
        leader.send_signal(signal.SIGSTOP)
        tree: dict[int, psutil.Process] = {leader.pid: leader}
        for _ in range(3):  # children forked while we stopped their parents are caught next round
            for child in leader.children(recursive=True):
                if child.pid not in tree:
                    with contextlib.suppress(psutil.NoSuchProcess):
                        child.send_signal(signal.SIGSTOP)
                    tree[child.pid] = child
        snapshot: list[KilledProcess] = []
        for pid, member in tree.items():
            with contextlib.suppress(psutil.NoSuchProcess):
                listening = frozenset(
                    conn.laddr.port for conn in member.net_connections(kind="tcp") if conn.status == psutil.CONN_LISTEN
                )
                snapshot.append(KilledProcess(pid, member.ppid(), " ".join(member.cmdline()), listening))
        for member in tree.values():
            with contextlib.suppress(psutil.NoSuchProcess):
                member.send_signal(signal.SIGKILL)
        proc.wait(timeout=KILL_TIMEOUT)
        wait_for(f"every process of {name} to be gone", KILL_TIMEOUT, lambda: not any(map(_alive, tree)), every=0.1)
        return snapshot

    # ------------------------------------------------------------------ DAG runs

    def wait_dag_parsed(self, dag_id: str, timeout: float = DAG_PARSE_TIMEOUT) -> None:
        def parsed() -> bool:
            return self.api("GET", f"/api/v2/dags/{dag_id}").status_code == 200

        def parse_diagnostics() -> str:
            errors = self.api("GET", "/api/v2/importErrors").text
            return f"import errors: {errors[:3000]}\n{self.diagnostics()}"

        wait_for(f"DAG {dag_id} to be parsed", timeout, parsed, diagnostics=parse_diagnostics)

    def trigger(self, dag_id: str, conf: Mapping[str, Any] | None = None) -> str:
        """Unpause ``dag_id`` and start a run with an id of our own; returns the run id."""
        dag = self.api_json("PATCH", f"/api/v2/dags/{dag_id}", json={"is_paused": False})
        if dag["is_paused"] is not False:
            raise DeploymentError(f"{dag_id} is still paused: {dag}")
        run_id = f"kontext_e2e_{uuid.uuid4().hex[:12]}"
        body = {"dag_run_id": run_id, "logical_date": None, "conf": dict(conf or {})}
        created = self.api_json("POST", f"/api/v2/dags/{dag_id}/dagRuns", json=body)
        if created["dag_run_id"] != run_id:
            raise DeploymentError(f"asked for run {run_id}, got {created}")
        return run_id

    def wait_run(self, dag_id: str, run_id: str, timeout: float) -> str:
        """Wait for a run's terminal state and return it; fails early if a component dies."""

        def finished() -> str | None:
            dead = self.dead_components()
            if dead:
                raise DeploymentError(f"Airflow component(s) died during run {run_id}: {dead}\n{self.diagnostics()}")
            state: str | None = self.api_json("GET", run_path(dag_id, run_id))["state"]
            return state if state in TERMINAL_RUN_STATES else None

        state: str = wait_for(f"run {dag_id}/{run_id} to finish", timeout, finished, diagnostics=self.diagnostics)
        return state


#: How a trigger log shows a task ended in the triggerer (``TaskSuccessEvent``, payload ``"success"``):
#: its XComs carry the result, not the event.
ENDED_IN_TRIGGERER = "TriggerEvent<'success'>"


def fired_success(event: Mapping[str, Any], kie_id: str | None = None) -> bool:
    """A fired event reports success: the task ended in the triggerer, or the worker resumes with it."""
    result = str(event.get("result", ""))
    if result == ENDED_IN_TRIGGERER:
        return True
    return "'status': 'success'" in result and (kie_id is None or kie_id in result)


def fired_events(trigger_log: str) -> list[dict[str, Any]]:
    """The "Trigger fired event" records of a trigger log (JSON lines)."""
    return [json.loads(line) for line in trigger_log.splitlines() if '"Trigger fired event"' in line]


def run_path(dag_id: str, run_id: str, suffix: str = "") -> str:
    """REST path of a DAG run (``suffix`` appended, e.g. ``/taskInstances``)."""
    return f"/api/v2/dags/{dag_id}/dagRuns/{quote(run_id, safe='')}{suffix}"


def start_emulator(run_dir: Path, env: Mapping[str, str], spec: DeploymentSpec) -> tuple[subprocess.Popen[bytes], str]:
    """Start ``kontext-emulator`` and wait for its ready file; returns it and its base URL."""
    ready = run_dir / "emulator.ready"
    log = run_dir / "emulator.log"
    argv = [str(BIN_DIR / "kontext-emulator"), "--host", "127.0.0.1", "--port", "0", "--api-key", spec.api_key]
    proc = start([*argv, *spec.emulator_args, "--ready-file", str(ready)], env, log, run_dir)
    deadline = time.monotonic() + EMULATOR_START_TIMEOUT
    while not ready.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            stop_all([proc])
            raise DeploymentError(f"kontext-emulator did not start (exit code {proc.returncode}):\n{tail(log)}")
        time.sleep(0.1)
    return proc, ready.read_text(encoding="utf-8").strip()


@contextlib.contextmanager
def deploy(run_dir: Path, spec: DeploymentSpec) -> Iterator[Deployment]:
    """Migrate a fresh metadata DB, start the emulator and the components; stop all on exit.

    Yields once the api-server answers its health check (the DAGs may not be parsed yet).
    On a failure the caller sets ``deployment.failed``; the component logs are then printed.
    """
    home = run_dir / "airflow-home"
    output_dir = run_dir / "images"
    dags_dir = home / "dags"
    dags_dir.mkdir(parents=True)
    output_dir.mkdir()
    for dag_file in spec.dag_files:
        (dags_dir / dag_file.name).symlink_to(dag_file.resolve())
    base_env = {**sanitized_env(), "PYTHONWARNINGS": "ignore", "PYTHONUNBUFFERED": "1"}
    passwords = {name: secrets.token_urlsafe(12) for name in spec.users}
    auth_env = {"AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True"}
    if spec.users:
        passwords_file = home / "simple_auth_manager_passwords.json"
        passwords_file.write_text(json.dumps(passwords), encoding="utf-8")
        auth_env = {
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "False",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": ",".join(f"{n}:{r}" for n, r in spec.users.items()),
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords_file),
        }

    emulator, emulator_url = start_emulator(run_dir, base_env, spec)
    # Own ports for everything, so parallel runs on one machine do not collide (the log servers
    # default to the fixed ports 8793/8794).
    api_port, worker_log_port, trigger_log_port = free_ports(3)
    db = spec.database_url or f"sqlite:///{home / 'airflow.db'}"
    env = {
        **base_env,
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(dags_dir),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__EXECUTOR": spec.executor,
        "AIRFLOW__CORE__PARALLELISM": str(spec.parallelism),
        **auth_env,
        "AIRFLOW__CORE__SQL_ALCHEMY_CONN": db,
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": db,
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{api_port}/execution/",
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__API__PORT": str(api_port),
        "AIRFLOW__API__WORKERS": "1",
        "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(worker_log_port),
        "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(trigger_log_port),
        # One shared secret, so tokens the scheduler issues to workers validate in the api-server.
        "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(32),
        "AIRFLOW__API__SECRET_KEY": secrets.token_urlsafe(32),
        "AIRFLOW_CONN_KONTEXT_DEFAULT": spec.connection(emulator_url),
        "KONTEXT_OUTPUT_DIR": str(output_dir),
        **spec.extra_env,
    }
    deployment = Deployment(
        base_url=f"http://127.0.0.1:{api_port}",
        emulator_url=emulator_url,
        run_dir=run_dir,
        home=home,
        output_dir=output_dir,
        env=env,
        logs={"emulator": run_dir / "emulator.log", **spec.service_logs},
        components={component.name: component for component in spec.components},
        started=[emulator],
        passwords=passwords,
    )
    t0 = time.monotonic()
    try:
        try:
            migrate = subprocess.run(
                [str(BIN_DIR / "airflow"), "db", "migrate"],
                env=env,
                cwd=run_dir,
                capture_output=True,
                timeout=DB_MIGRATE_TIMEOUT,
                check=False,
            )
            (run_dir / "db-migrate.log").write_bytes(migrate.stdout + migrate.stderr)
            if migrate.returncode != 0:
                raise DeploymentError(f"airflow db migrate failed:\n{tail(run_dir / 'db-migrate.log')}")
            migrated_at = time.monotonic() - t0
            for component in spec.components:
                if component.autostart:
                    deployment.start_component(component.name)

            def healthy() -> bool:
                dead = deployment.dead_components()
                if dead:
                    raise DeploymentError(f"Airflow component(s) exited during start-up: {dead}")
                return deployment.api("GET", "/api/v2/monitor/health", timeout=5).status_code == 200

            wait_for("/api/v2/monitor/health", HEALTH_TIMEOUT, healthy, diagnostics=deployment.diagnostics)
            admins = [name for name, role in spec.users.items() if role.lower() == "admin"]
            if admins:
                deployment.http.headers["Authorization"] = f"Bearer {deployment.token(admins[0])}"
            healthy_at = time.monotonic() - t0
            print(f"\n[kontext deploy] db migrated in {migrated_at:.1f} s; api-server healthy after {healthy_at:.1f} s")
        except BaseException:
            deployment.failed = True
            raise
        yield deployment
    finally:
        deployment.http.close()
        stop_all(deployment.started)
        if deployment.failed:
            # Also on the terminal with -s; pytest report sections carry the same tails otherwise.
            print(f"\n===== kontext deployment logs ({run_dir}) =====\n{deployment.diagnostics()}", file=sys.stderr)
