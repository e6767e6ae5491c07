"""A real Airflow 3 deployment runs the text-to-image example DAG against the kie emulator.

Four components (api-server, scheduler, dag-processor, triggerer) run as separate processes on a
throwaway SQLite home with the LocalExecutor; the emulator runs as its console script. The run is
driven through the REST API, then checked from every side: the run's state, the XCom, the image
on disk, the emulator's counters, proof that the wait happened in the triggerer process, and that
the API key shows up in no log and no REST answer.
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
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import pytest
import requests

from tests.conftest import API_KEY, EXAMPLES_DIR, connection_json

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(720)]

DAG_ID = "example_kontext_text_to_image"
BIN_DIR = Path(sys.executable).parent
COMPONENTS = ("api-server", "scheduler", "dag-processor", "triggerer")
TRIGGER_CLASS = "airflow_provider_kontext.triggers.task.KontextTaskTrigger"
TERMINAL_RUN_STATES = {"success", "failed"}

# Bounded waits, generous for a loaded 2-core machine (the whole test normally takes about a minute).
EMULATOR_START_TIMEOUT = 30.0
DB_MIGRATE_TIMEOUT = 180.0
HEALTH_TIMEOUT = 150.0
DAG_PARSE_TIMEOUT = 150.0
RUN_TIMEOUT = 180.0
STOP_GRACE_SECONDS = 10.0
REQUEST_TIMEOUT = 20.0


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
    """Call ``probe`` until it returns something truthy; fail with ``what`` after the deadline."""
    deadline = time.monotonic() + deadline_seconds
    last_error: BaseException | None = None
    while time.monotonic() < deadline:
        try:
            result = probe()
        except (requests.ConnectionError, requests.Timeout) as err:  # a busy or still-starting server
            last_error = err
        else:
            if result:
                return result
        time.sleep(every)
    extra = f"\n{diagnostics()}" if diagnostics else ""
    pytest.fail(f"Timed out after {deadline_seconds:.0f} s waiting for {what} (last error: {last_error!r}).{extra}")


@dataclass
class Deployment:
    """What the test needs to drive and inspect the running deployment."""

    base_url: str
    emulator_url: str
    home: Path
    output_dir: Path
    env: dict[str, str]
    logs: dict[str, Path]
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    http: requests.Session = field(default_factory=requests.Session)
    failed: bool = False

    def api(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", REQUEST_TIMEOUT)
        return self.http.request(method, f"{self.base_url}{path}", **kwargs)

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


def sanitized_env() -> dict[str, str]:
    """The test process's environment without the in-process Airflow settings of tests/conftest.py."""
    return {key: value for key, value in os.environ.items() if not key.startswith(("AIRFLOW", "KONTEXT_", "PYTEST_"))}


def stop_group(proc: subprocess.Popen[bytes], sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)  # start_new_session=True: the group id is the leader's pid


def stop_all(processes: list[subprocess.Popen[bytes]]) -> None:
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


def start(argv: list[str], env: dict[str, str], log: Path, cwd: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as handle:
        return subprocess.Popen(
            argv,
            env=env,
            cwd=cwd,
            stdout=handle,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )


def start_emulator(run_dir: Path, env: dict[str, str]) -> tuple[subprocess.Popen[bytes], str, Path]:
    ready = run_dir / "emulator.ready"
    log = run_dir / "emulator.log"
    proc = start(
        [
            str(BIN_DIR / "kontext-emulator"),
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--api-key",
            API_KEY,
            "--generation-seconds",
            "3",
            "--image-long-side",
            "256",
            "--ready-file",
            str(ready),
        ],
        env,
        log,
        run_dir,
    )
    deadline = time.monotonic() + EMULATOR_START_TIMEOUT
    while not ready.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            stop_all([proc])
            pytest.fail(f"kontext-emulator did not start (exit code {proc.returncode}):\n{tail(log)}")
        time.sleep(0.1)
    return proc, ready.read_text(encoding="utf-8").strip(), log


@pytest.fixture(scope="module")
def airflow_deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    run_dir = tmp_path_factory.mktemp("kontext-e2e")
    home = run_dir / "airflow-home"
    output_dir = run_dir / "images"
    home.mkdir()
    output_dir.mkdir()
    base_env = {**sanitized_env(), "PYTHONWARNINGS": "ignore", "PYTHONUNBUFFERED": "1"}

    emulator, emulator_url, emulator_log = start_emulator(run_dir, base_env)
    started: list[subprocess.Popen[bytes]] = [emulator]

    # Own ports for everything, so parallel runs on one machine do not collide (the log servers
    # default to the fixed ports 8793/8794).
    api_port, worker_log_port, trigger_log_port = free_ports(3)
    db = f"sqlite:///{home / 'airflow.db'}"
    env = {
        **base_env,
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": EXAMPLES_DIR,
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__CORE__PARALLELISM": "2",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
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
        "AIRFLOW_CONN_KONTEXT_DEFAULT": connection_json(emulator_url),
        "KONTEXT_OUTPUT_DIR": str(output_dir),
    }
    logs = {name: run_dir / f"{name}.log" for name in COMPONENTS}
    deployment = Deployment(
        base_url=f"http://127.0.0.1:{api_port}",
        emulator_url=emulator_url,
        home=home,
        output_dir=output_dir,
        env=env,
        logs={**logs, "emulator": emulator_log},
    )
    airflow = str(BIN_DIR / "airflow")
    t0 = time.monotonic()
    try:
        try:
            migrate = subprocess.run(
                [airflow, "db", "migrate"],
                env=env,
                cwd=run_dir,
                capture_output=True,
                timeout=DB_MIGRATE_TIMEOUT,
                check=False,
            )
            (run_dir / "db-migrate.log").write_bytes(migrate.stdout + migrate.stderr)
            assert migrate.returncode == 0, f"airflow db migrate failed:\n{tail(run_dir / 'db-migrate.log')}"
            migrated_at = time.monotonic() - t0

            for name in COMPONENTS:
                argv = [airflow, name]
                if name == "api-server":
                    argv += ["--host", "127.0.0.1", "--port", str(api_port)]
                proc = start(argv, env, logs[name], run_dir)
                deployment.processes[name] = proc
                started.append(proc)

            def healthy() -> bool:
                dead = deployment.dead_components()
                if dead:
                    pytest.fail(f"Airflow component(s) exited during start-up: {dead}\n{deployment.diagnostics()}")
                response = deployment.api("GET", "/api/v2/monitor/health", timeout=5)
                return response.status_code == 200

            wait_for("/api/v2/monitor/health", HEALTH_TIMEOUT, healthy, diagnostics=deployment.diagnostics)
            healthy_at = time.monotonic() - t0
            print(f"\n[kontext e2e] db migrate took {migrated_at:.1f} s; api-server healthy after {healthy_at:.1f} s")
        except BaseException:
            deployment.failed = True
            raise
        yield deployment
    finally:
        deployment.http.close()
        stop_all(started)
        if deployment.failed:
            # Also on the terminal with -s; the report sections carry the same tails otherwise.
            print(f"\n===== kontext e2e logs ({run_dir}) =====\n{deployment.diagnostics()}", file=sys.stderr)


# --------------------------------------------------------------------------------------------- helpers


def run_path(run_id: str, suffix: str = "") -> str:
    return f"/api/v2/dags/{DAG_ID}/dagRuns/{quote(run_id, safe='')}{suffix}"


def api_json(deployment: Deployment, method: str, path: str, *, expect: int = 200, **kwargs: Any) -> Any:
    response = deployment.api(method, path, **kwargs)
    assert response.status_code == expect, f"{method} {path} -> HTTP {response.status_code}: {response.text[:2000]}"
    return response.json()


# ------------------------------------------------------------------------------------------------ test


def test_text_to_image_dag_runs_in_a_real_deployment(airflow_deployment: Deployment) -> None:
    d = airflow_deployment
    t0 = time.monotonic()
    rest_answers: list[str] = []  # every REST body the key-leak check looks at

    # 1. The dag-processor has parsed the example DAG.
    def parsed() -> bool:
        response = d.api("GET", f"/api/v2/dags/{DAG_ID}")
        return response.status_code == 200

    def parse_diagnostics() -> str:
        errors = d.api("GET", "/api/v2/importErrors").text
        return f"import errors: {errors[:3000]}\n{d.diagnostics()}"

    wait_for(f"DAG {DAG_ID} to be parsed", DAG_PARSE_TIMEOUT, parsed, diagnostics=parse_diagnostics)
    parsed_at = time.monotonic() - t0

    # 2. Unpause and trigger a run with an id of our own.
    dag = api_json(d, "PATCH", f"/api/v2/dags/{DAG_ID}", json={"is_paused": False})
    assert dag["is_paused"] is False
    run_id = f"kontext_e2e_{uuid.uuid4().hex[:12]}"
    created = api_json(d, "POST", f"/api/v2/dags/{DAG_ID}/dagRuns", json={"dag_run_id": run_id, "logical_date": None})
    assert created["dag_run_id"] == run_id

    # 3. Poll the run, and the generate task instance, whose state and trigger we record on the way.
    generate_states: list[str] = []
    triggers_seen: list[dict[str, Any]] = []
    state = None
    deadline = time.monotonic() + RUN_TIMEOUT
    while time.monotonic() < deadline:
        try:
            run = d.api("GET", run_path(run_id))
            ti = d.api("GET", run_path(run_id, "/taskInstances/generate"))
        except (requests.ConnectionError, requests.Timeout):
            time.sleep(1)
            continue
        if ti.status_code == 200:
            rest_answers.append(ti.text)
            body = ti.json()
            if body["state"] and (not generate_states or generate_states[-1] != body["state"]):
                generate_states.append(body["state"])
            if body.get("trigger"):
                triggers_seen.append(body["trigger"])
        if run.status_code == 200 and run.json()["state"] in TERMINAL_RUN_STATES:
            state = run.json()["state"]
            break
        dead = d.dead_components()
        assert not dead, f"Airflow component(s) died during the run: {dead}"
        time.sleep(0.25)  # the deferral lasts at least ~3 s (the emulator's generation time): seen for sure
    run_seconds = time.monotonic() - t0 - parsed_at
    print(
        f"\n[kontext e2e] DAG parsed after {parsed_at:.1f} s; run {state} after {run_seconds:.1f} s; "
        f"generate states seen: {generate_states}"
    )

    assert state is not None, f"run {run_id} not finished after {RUN_TIMEOUT:.0f} s (generate states {generate_states})"
    tis = api_json(d, "GET", run_path(run_id, "/taskInstances"))
    ti_states = {ti["task_id"]: ti["state"] for ti in tis["task_instances"]}
    assert state == "success", f"run {run_id} ended {state!r}; task states {ti_states}"
    assert ti_states == {"generate": "success", "save_image": "success"}

    # 4. The XCom of generate: a succeeded kie task whose image lives on the emulator.
    xcom_answer = d.api("GET", run_path(run_id, "/taskInstances/generate/xcomEntries/return_value"))
    assert xcom_answer.status_code == 200, xcom_answer.text
    rest_answers.append(xcom_answer.text)
    result = xcom_answer.json()["value"]
    if isinstance(result, str):  # depending on the serialization the API returns a JSON string
        result = json.loads(result)
    assert result["status"] == "SUCCESS", result
    image_url = result["result_image_url"]
    emulator = urlsplit(d.emulator_url)
    assert urlsplit(image_url).netloc == emulator.netloc, f"{image_url} is not on the emulator {d.emulator_url}"

    # 5. save_image wrote that image (a real, decodable PNG) under KONTEXT_OUTPUT_DIR.
    saved = api_json(d, "GET", run_path(run_id, "/taskInstances/save_image/xcomEntries/return_value"))
    rest_answers.append(json.dumps(saved))
    value = saved["value"]
    saved_path = Path(json.loads(value) if value.startswith('"') else value)
    assert saved_path.is_file(), f"save_image returned {saved_path}, which does not exist"
    assert d.output_dir.resolve() in saved_path.resolve().parents, f"{saved_path} is outside {d.output_dir}"
    assert saved_path.name == f"{result['kie_task_id']}.png"
    from PIL import Image

    with Image.open(saved_path) as image:
        image.verify()
        assert image.format == "PNG"
    assert saved_path.read_bytes() == requests.get(image_url, timeout=REQUEST_TIMEOUT).content

    # 6. The emulator saw exactly one create, status reads, one key-less image download.
    stats = requests.get(f"{d.emulator_url}/_emulator/stats", timeout=REQUEST_TIMEOUT).json()
    assert stats["creates_accepted"] == 1, stats
    assert stats["requests"]["generate"] == 1, stats
    assert stats["auth_failures"] == 0, stats
    assert stats["requests"]["record-info"] >= 2, stats  # the worker's first check + the trigger's polls
    assert stats["file_requests"] >= 1, stats
    assert stats["file_requests_with_auth"] == 0, stats

    # 7. The wait ran as a KontextTaskTrigger in the triggerer process, after a real deferral:
    #    the REST API showed the task deferred on that trigger, the worker's log says it deferred,
    #    and the triggerer wrote the trigger's own log (start, fired event, completion) for it.
    assert "deferred" in generate_states, f"generate was never seen deferred over REST (states {generate_states})"
    assert triggers_seen, "the deferred generate task instance showed no trigger over REST"
    assert {trigger["classpath"] for trigger in triggers_seen} == {TRIGGER_CLASS}, triggers_seen
    generate_dir = d.home / "logs" / f"dag_id={DAG_ID}" / f"run_id={run_id}" / "task_id=generate"
    worker_log = (generate_dir / "attempt=1.log").read_text(encoding="utf-8", errors="replace")
    assert "Pausing task as DEFERRED" in worker_log, f"the worker log does not show the deferral:\n{worker_log[-3000:]}"
    trigger_logs = sorted(generate_dir.glob("attempt=1.log.trigger.*.log"))
    assert len(trigger_logs) == 1, f"expected one triggerer log for generate, found {trigger_logs}"
    trigger_log = trigger_logs[0].read_text(encoding="utf-8", errors="replace")
    fired = [json.loads(line) for line in trigger_log.splitlines() if '"Trigger fired event"' in line]
    assert len(fired) == 1, f"the trigger fired {len(fired)} events:\n{trigger_log}"
    assert fired[0]["filename"] == "triggerer_job_runner.py", fired[0]  # logged by the triggerer process
    assert "'status': 'success'" in fired[0]["result"], fired[0]
    assert result["kie_task_id"] in fired[0]["result"], fired[0]
    assert '"trigger completed"' in trigger_log, trigger_log
    generate_ti = api_json(d, "GET", run_path(run_id, "/taskInstances/generate"))
    assert generate_ti["try_number"] == 1, "resuming after the deferral must not count as a retry"
    task_log = d.api("GET", run_path(run_id, "/taskInstances/generate/logs/1"), headers={"Accept": "application/json"})
    assert task_log.status_code == 200, task_log.text[:2000]
    rest_answers.append(task_log.text)

    # 8. The API key appears in no Airflow log (components, task and trigger logs), nor in the
    #    metadata DB or any other file Airflow wrote, nor in any REST answer we received.
    needle = API_KEY.encode()
    assert needle in d.logs["emulator"].read_bytes(), "positive control: the emulator prints its key at start"
    run_dir = d.home.parent
    scanned = [
        path
        for path in sorted(run_dir.rglob("*"))
        if path.is_file() and not path.name.startswith("emulator.") and d.output_dir not in path.parents
    ]  # the emulator owns the key and prints it; the images are binary output
    assert d.logs["triggerer"] in scanned
    assert len([path for path in scanned if "dag_id=" in str(path)]) >= 3, "task/trigger logs were not scanned"
    leaked = [str(path.relative_to(run_dir)) for path in scanned if needle in path.read_bytes()]
    assert not leaked, f"the API key leaked into {leaked}"
    leaked_answers = [answer[:500] for answer in rest_answers if API_KEY in answer]
    assert not leaked_answers, f"the API key leaked into REST answers: {leaked_answers}"
    print(
        f"[kontext e2e] key absent from {len(scanned)} files and {len(rest_answers)} REST answers; "
        f"{time.monotonic() - t0:.1f} s in the test body"
    )
