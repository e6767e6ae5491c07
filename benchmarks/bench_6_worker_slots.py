"""Worker slots (issue #6 part 6): in a real Airflow run, N concurrent generations, deferrable vs not.

A real deployment (api-server, scheduler, dag-processor, triggerer; LocalExecutor with one slot
per generation) runs two DAGs that differ only in ``deferrable``, against an emulator with a
fixed generation time. From Airflow's own event log (a ``running`` row when a worker starts a
task instance, a ``deferred``/``success``/... row when it gives the slot back) we get every
interval a worker held a task in the ``running`` state; the emulator tells when each kie task
was created and finished. Two figures:

* **worker-slot seconds spent waiting**: running intervals that overlap the kie task's
  generation. Blocking waits hold the slot for the whole generation; a deferred task holds it
  only between its create and its deferral, and not at all after (goal: about 0).
* **worker-slot seconds per image**: all running time, the submit and resume included.

The deployment code is the e2e tests' (``tests/e2e/deployment.py``), not a copy.
"""

from __future__ import annotations

import json
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import requests

from benchmarks.common import API_KEY, Figure, bench_main
from tests.e2e.deployment import REQUEST_TIMEOUT, DeploymentSpec, deploy, run_path

if TYPE_CHECKING:
    from tests.e2e.deployment import Deployment

NAME = "6 worker slots"
DAG_FILE = Path(__file__).resolve().parent / "dags" / "kontext_bench_worker_slots.py"
#: Event-log rows that end a worker's hold on a task instance (the ``running`` row starts one).
SLOT_RELEASING_EVENTS = frozenset(
    {"deferred", "success", "failed", "up_for_retry", "up_for_reschedule", "skipped", "removed", "upstream_failed"}
)
RUN_TIMEOUT = 900.0
SENSOR_DAG_ID = "kontext_bench_slots_sensor"
#: Worker task starts per deferred image before a successful wait could end in the triggerer:
#: one to create (or, for the sensor, check) and defer, one to resume and return.
STARTS_BEFORE = 2

#: Issue goal: "about 0" waiting slot time when deferred; read as at most a tenth of blocking.
WAITING_GOAL = 0.1
#: Deferring used to pay two task starts (submit, resume) instead of one; it must still at least
#: halve the total slot time to be worth it.
PER_IMAGE_GOAL = 0.5


@dataclass(frozen=True)
class SlotUse:
    """Worker-slot seconds of one run."""

    tasks: int
    running_seconds: float
    waiting_seconds: float
    holds: int  # running intervals (worker starts): 1 per task blocking; deferred, 1 + any resume
    wall_seconds: float


def _when(row: dict[str, Any]) -> float:
    return datetime.fromisoformat(row["when"]).timestamp()


def event_rows(d: Deployment, dag_id: str, run_id: str) -> list[dict[str, Any]]:
    """Every event-log row of the run's ``generate`` task instances, all pages."""
    return d.event_rows(dag_id, run_id, "generate")


def running_intervals(rows: list[dict[str, Any]]) -> dict[int, list[tuple[float, float]]]:
    """Per map index: the (start, end) epochs during which a worker ran the task instance."""
    by_index: dict[int, list[dict[str, Any]]] = {}
    for row in rows:
        by_index.setdefault(int(row["map_index"]), []).append(row)
    intervals: dict[int, list[tuple[float, float]]] = {}
    for index, events in by_index.items():
        started: float | None = None
        for row in sorted(events, key=_when):
            if row["event"] == "running":
                started = _when(row)
            elif row["event"] in SLOT_RELEASING_EVENTS and started is not None:
                intervals.setdefault(index, []).append((started, _when(row)))
                started = None
        if started is not None:
            raise RuntimeError(f"map_index={index}: a running interval never ended: {events}")
    return intervals


def overlap(a: tuple[float, float], b: tuple[float, float]) -> float:
    return max(0.0, min(a[1], b[1]) - max(a[0], b[0]))


def measure(d: Deployment, dag_id: str, tasks: int) -> SlotUse:
    """Run ``dag_id`` once and account for its worker-slot time."""
    d.wait_dag_parsed(dag_id)
    creates_before = d.emulator_stats()["creates_accepted"]
    started = time.monotonic()
    run_id = d.trigger(dag_id)
    state = d.wait_run(dag_id, run_id, RUN_TIMEOUT)
    wall = time.monotonic() - started
    if state != "success":
        raise RuntimeError(f"{dag_id} run {run_id} ended {state}\n{d.diagnostics()}")
    creates = d.emulator_stats()["creates_accepted"] - creates_before
    if creates != tasks:
        raise RuntimeError(f"{dag_id}: {creates} creates for {tasks} images")

    intervals = running_intervals(event_rows(d, dag_id, run_id))
    if sorted(intervals) != list(range(tasks)):
        raise RuntimeError(f"{dag_id}: running intervals for map indexes {sorted(intervals)}, expected 0..{tasks - 1}")
    running = waiting = 0.0
    for index, spans in intervals.items():
        path = run_path(dag_id, run_id, "/taskInstances/generate/xcomEntries/return_value")
        value = d.api_json("GET", path, params={"map_index": index})["value"]
        result = json.loads(value) if isinstance(value, str) else value
        task = requests.get(f"{d.emulator_url}/_emulator/tasks/{result['kie_task_id']}", timeout=REQUEST_TIMEOUT)
        generation = (float(task.json()["createdAt"]), float(task.json()["completesAt"]))
        running += sum(end - start for start, end in spans)
        waiting += sum(overlap(span, generation) for span in spans)
    holds = sum(len(spans) for spans in intervals.values())
    use = SlotUse(tasks, running, waiting, holds, wall)
    print(f"[bench 6] {dag_id}: {use}", flush=True)
    return use


def sensor_dag(kie_task_ids: list[str]) -> str:
    """A DAG of deferrable sensors with literal ids (known at parse time), one per image."""
    waits = "\n".join(
        f"    KontextTaskSensor(task_id='wait_{n}', kie_task_ids={task_id!r}, deferrable=True, poll_interval=2)"
        for n, task_id in enumerate(kie_task_ids)
    )
    return (
        '"""Written by bench_6_worker_slots: sensors whose kie task ids are in the DAG file."""\n'
        "from airflow.sdk import DAG\n\n"
        "from airflow_provider_kontext.sensors.task import KontextTaskSensor\n\n"
        f"with DAG(dag_id={SENSOR_DAG_ID!r}, schedule=None, catchup=False, max_active_tasks={len(kie_task_ids)}):\n"
        f"{waits}\n"
    )


def sensor_starts(d: Deployment, tasks: int) -> int:
    """Worker starts of ``tasks`` deferrable sensors on images created outside Airflow."""
    ids = [d.create_kie_task(f"Worker-slot benchmark, sensed image {n}", API_KEY) for n in range(tasks)]
    (Path(d.env["AIRFLOW__CORE__DAGS_FOLDER"]) / f"{SENSOR_DAG_ID}.py").write_text(sensor_dag(ids), encoding="utf-8")
    d.wait_dag_parsed(SENSOR_DAG_ID)
    run_id = d.trigger(SENSOR_DAG_ID)
    state = d.wait_run(SENSOR_DAG_ID, run_id, RUN_TIMEOUT)
    if state != "success":
        raise RuntimeError(f"{SENSOR_DAG_ID} run {run_id} ended {state}\n{d.diagnostics()}")
    starts = sum(sum(d.worker_starts(SENSOR_DAG_ID, run_id, f"wait_{n}").values()) for n in range(tasks))
    print(f"[bench 6] {SENSOR_DAG_ID}: {starts} worker starts for {tasks} images", flush=True)
    return starts


def run(quick: bool) -> list[Figure]:
    tasks = 5 if quick else 20
    # kie renders a Flux Kontext image in roughly 10-40 s. Not shorter here: with 20 task
    # processes starting at once on 2 cores, create -> defer alone took 7 s, and Airflow 3.3.2
    # fails a task whose deferral ends before the executor reported the defer-exit
    # (apache/airflow#67287, #72716): a 10-s generation lost tasks to that race.
    generation_seconds = 15.0 if quick else 30.0
    spec = DeploymentSpec(
        dag_files=[DAG_FILE],
        api_key=API_KEY,
        connection=lambda url: json.dumps({"conn_type": "kontext", "host": url, "password": API_KEY}),
        # A high create limit: this measures slots, not kie's create pacing.
        emulator_args=("--generation-seconds", str(generation_seconds), "--rate-limit-creates", "1000"),
        parallelism=tasks,  # one LocalExecutor slot per generation: blocking runs all at once
        extra_env={"KONTEXT_BENCH_SLOT_TASKS": str(tasks), "AIRFLOW__CORE__MAX_ACTIVE_TASKS_PER_DAG": str(tasks)},
    )
    with tempfile.TemporaryDirectory(prefix="kontext-bench-slots-") as tmp, deploy(Path(tmp), spec) as d:
        try:
            # Deferrable first: whatever the first run pays for warming up counts against it.
            deferred = measure(d, "kontext_bench_slots_deferrable", tasks)
            blocking = measure(d, "kontext_bench_slots_blocking", tasks)
            sensed = sensor_starts(d, tasks)
        except BaseException:
            d.failed = True
            raise
    setup = (
        f"{tasks} mapped generate tasks, emulator generation {generation_seconds:g} s, poll 2 s, "
        f"LocalExecutor parallelism {tasks}"
    )
    waiting_ratio = deferred.waiting_seconds / blocking.waiting_seconds
    per_image = deferred.running_seconds / tasks
    per_image_blocking = blocking.running_seconds / tasks
    per_image_ratio = per_image / per_image_blocking
    return [
        Figure(
            benchmark=NAME,
            metric=f"worker-slot seconds spent waiting, {tasks} generations, deferrable",
            ours=deferred.waiting_seconds,
            reference="same DAG, deferrable=False",
            reference_value=blocking.waiting_seconds,
            ratio=waiting_ratio,
            goal=f"<= {WAITING_GOAL} (about 0)",
            passed=waiting_ratio <= WAITING_GOAL,
            unit="s",
            note=(
                f"{setup}. Waiting = time in `running` (Airflow event log: worker start -> defer/finish) "
                f"overlapping the kie task's generation (emulator create -> completion)."
            ),
        ),
        Figure(
            benchmark=NAME,
            metric="worker-slot seconds per image (all `running` time), deferrable",
            ours=per_image,
            reference="same DAG, deferrable=False",
            reference_value=per_image_blocking,
            ratio=per_image_ratio,
            goal=f"<= {PER_IMAGE_GOAL}",
            passed=per_image_ratio <= PER_IMAGE_GOAL,
            unit="s",
            note=(
                f"Deferrable: {deferred.holds} worker holds (submit, plus any resume on a worker), "
                f"run {deferred.wall_seconds:.0f} s wall; blocking: {blocking.holds} holds, "
                f"{blocking.wall_seconds:.0f} s wall. Process start-up "
                f"(queued, slot already taken, ~5 s a task on 2 cores) is not in `running` and not counted."
            ),
        ),
        Figure(
            benchmark=NAME,
            metric="worker task starts per deferred image, generate (no output_path)",
            ours=deferred.holds / tasks,
            reference="create + defer, then resume on a worker",
            reference_value=STARTS_BEFORE,
            ratio=deferred.holds / tasks / STARTS_BEFORE,
            goal="1 start (ratio 0.5)",
            passed=deferred.holds == tasks,
            note=(
                "`running` rows in Airflow's event log (one per worker start: the first and every resume). "
                "A successful wait ends the task in the triggerer (TaskSuccessEvent with the resume's XComs)."
            ),
        ),
        Figure(
            benchmark=NAME,
            metric="worker task starts per deferred image, sensor (literal ids)",
            ours=sensed / tasks,
            reference="check + defer, then resume on a worker",
            reference_value=STARTS_BEFORE,
            ratio=sensed / tasks / STARTS_BEFORE,
            goal="0 starts",
            passed=sensed == 0,
            note=(
                f"{tasks} deferrable KontextTaskSensor tasks, ids written in the DAG file, on images created "
                "outside Airflow: they start in the triggerer (start_from_trigger) and end there."
            ),
        ),
    ]


if __name__ == "__main__":
    bench_main(run)
