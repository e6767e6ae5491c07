"""Soak: many images through ``KontextBatchGenerateOperator`` while the emulator faults ~10 % of requests.

Run it: ``.venv/bin/python reliability/soak.py --images 1000 --fault-rate 0.1 --seed 1``. The CI
variant (``tests/reliability/test_soak.py``) calls :func:`run_soak` with fewer images.

What runs is the real batch path over real loopback HTTP: the operator's ``execute`` on the
"worker" (validation, paced creates, the state-store ledger, one status check), the real
``KontextTaskTrigger`` on an asyncio loop (the triggerer), and ``execute_complete`` on a fresh
operator instance with the deferral's resume kwargs (the resumed worker); ``--mode sync``
waits on the worker instead. Only the task-instance context is stood in for (:mod:`reliability.fake_airflow`).

Times are kie's, compressed by ``time_scale`` on *both* sides so their ratios stay realistic:
generation times (drawn around kie's reported 10-50 s), the 20-per-10 s create limit (the
emulator enforces it, the operator paces to it), the poll interval and the retry backoff.

The expected outcome of every image is derived independently of the provider's code, from the
fault log of the emulator and the prompt markers, by the retry rules the README states: a create
is resent only after 429/455 (kie dropped it); a refusal (402, 404, 422, 501, 505) is final and
typed; an ambiguous answer (5xx, unreadable, dropped, lost after acceptance) is final as
``KontextSubmissionOutcomeUnknownError`` and never resent; faults on polls must be survived.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sys
import tempfile
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Final

from reliability.fake_airflow import DictStateStore, FakeTaskInstance, task_context

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from airflow_provider_kontext.emulator import EmulatorServer
    from airflow_provider_kontext.emulator.chaos import AppliedFault

__all__ = ["SoakConfig", "SoakReport", "expected_create_outcome", "main", "run_soak"]

API_KEY: Final = "soak-key"
CONN_ID: Final = "kontext_soak"
DELIVERED: Final = "delivered"
OUTCOME_UNKNOWN: Final = "KontextSubmissionOutcomeUnknownError"

#: Prompt markers and the typed error each must end in (share of images per marker).
MARKERS: Final[dict[str, tuple[float, str]]] = {
    "[emulator:content_policy]": (0.02, "KontextContentPolicyError"),
    "[emulator:generate_failed]": (0.01, "KontextGenerationFailedError"),
    "[emulator:create_failed]": (0.005, "KontextTaskCreateFailedError"),
    "[emulator:no_url]": (0.005, "KontextMissingResultError"),
}

#: Body code of a create refusal -> the typed error; kie refused, nothing was created.
_REFUSED_CODES: Final[dict[int, str]] = {
    401: "KontextAuthError",
    402: "KontextInsufficientCreditsError",
    404: "KontextNotFoundError",
    422: "KontextValidationError",
    501: "KontextGenerationFailedError",
    505: "KontextFeatureDisabledError",
}
#: Answers that mean "dropped, not processed": the create is sent again.
_RESEND_CODES: Final[dict[int, str]] = {429: "KontextRateLimitError", 455: "KontextServiceUnavailableError"}
#: Faults after which nobody can know whether kie created the task.
_AMBIGUOUS_KINDS: Final = frozenset({"malformed_json", "empty_body", "html", "drop", "drop_after_accept"})


@dataclass(frozen=True)
class SoakConfig:
    """
    One soak run.

    :param images: Images in the batch.
    :param fault_rate: Share of generate/record-info requests the emulator faults at random.
    :param seed: Seeds the emulator's faults and the prompts (markers, generation times).
    :param time_scale: kie's seconds -> soak seconds (0.02: a 20 s generation takes 0.4 s).
    :param mode: ``deferred`` (execute, trigger, execute_complete) or ``sync`` (wait on the worker).
    :param max_attempts: The connection's ``max_attempts`` (resends of creates that never connected;
        429/455 are resent until the task's deadline).
    :param read_timeout: The connection's read timeout; ``slow`` faults stay below it.
    """

    images: int = 1000
    fault_rate: float = 0.1
    seed: int = 1
    time_scale: float = 0.02
    mode: str = "deferred"
    max_attempts: int = 5
    read_timeout: float = 5.0

    def __post_init__(self) -> None:
        if self.images < 1:
            raise ValueError("images must be at least 1")
        if not 0 <= self.fault_rate <= 1:
            raise ValueError("fault_rate must be from 0 to 1")
        if self.time_scale <= 0:
            raise ValueError("time_scale must be positive")
        if self.mode not in ("deferred", "sync"):
            raise ValueError("mode must be 'deferred' or 'sync'")


@dataclass
class SoakReport:
    """What a soak measured and whether every expectation held (``problems`` empty)."""

    config: SoakConfig
    images: int = 0
    delivered: int = 0
    failed_by_class: dict[str, int] = field(default_factory=dict)
    expected_failed_by_class: dict[str, int] = field(default_factory=dict)
    create_requests: int = 0
    creates_accepted: int = 0
    duplicate_creates: int = 0
    prompts_created_twice: list[str] = field(default_factory=list)
    creates_rate_limited_by_emulator: int = 0
    faults: dict[str, dict[str, int]] = field(default_factory=dict)
    faults_total: int = 0
    faulted_share: float = 0.0
    poll_requests: int = 0
    in_input_order: bool = False
    wall_seconds: float = 0.0
    problems: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.problems

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["passed"] = self.passed
        return data

    def render(self) -> str:
        """The human summary the script prints."""
        c = self.config
        lines = [
            f"soak: {self.images} images, fault rate {c.fault_rate:g}, seed {c.seed}, mode {c.mode}, "
            f"time scale {c.time_scale:g}",
            f"  delivered                {self.delivered}",
            f"  failed (typed)           {sum(self.failed_by_class.values())}",
        ]
        lines += [f"    {name:<38} {count}" for name, count in sorted(self.failed_by_class.items())]
        lines += [
            f"  creates sent             {self.create_requests}  (accepted {self.creates_accepted})",
            f"  duplicate creates        {self.duplicate_creates}",
            f"  429s from the emulator   {self.creates_rate_limited_by_emulator}  (pacing)",
            f"  status checks            {self.poll_requests}",
            f"  faults injected          {self.faults_total}  ({self.faulted_share:.1%} of API requests)",
        ]
        for endpoint, kinds in sorted(self.faults.items()):
            detail = ", ".join(f"{kind} {count}" for kind, count in sorted(kinds.items()))
            lines.append(f"    {endpoint:<22} {detail}")
        lines += [
            f"  results in input order   {'yes' if self.in_input_order else 'NO'}",
            f"  wall time                {self.wall_seconds:.1f} s",
            f"  verdict                  {'PASS' if self.passed else 'FAIL'}",
        ]
        lines += [f"    ! {problem}" for problem in self.problems[:50]]
        if len(self.problems) > 50:
            lines.append(f"    ! ... {len(self.problems) - 50} more")
        return "\n".join(lines)


@dataclass(frozen=True)
class Expected:
    """What must happen to one image: delivered, or this typed error; and how many tasks kie may hold."""

    outcome: str
    tasks: int
    why: str


def expected_create_outcome(faults: Sequence[Mapping[str, Any]], *, max_attempts: int) -> tuple[str | None, int, str]:
    """
    Replay one image's create attempts against the retry rules.

    ``faults`` are the faults applied to this image's creates, in order (``kind`` plus params).
    Returns ``(error class or None if a create went through, tasks kie holds for it, why)``.
    Raises ``ValueError`` for a fault the soak has no rule for, so it can never pass by accident.
    """
    for fault in faults:
        kind = fault["kind"]
        label = f"{kind} {fault.get('code') or fault.get('status') or ''}".strip()
        code = fault.get("code") if kind == "code" else fault.get("status") if kind == "http" else None
        if kind == "slow":
            return None, 1, "slow answer, still in time"
        if kind == "drop_after_accept":
            return OUTCOME_UNKNOWN, 1, "accepted, answer lost"
        if kind in _AMBIGUOUS_KINDS:
            return OUTCOME_UNKNOWN, 0, label
        if not isinstance(code, int):
            raise ValueError(f"the soak has no rule for create fault {fault!r}")
        if code in _RESEND_CODES:
            continue  # dropped unprocessed: resent until the task's deadline, which the soak never reaches
        if code in _REFUSED_CODES:
            return _REFUSED_CODES[code], 0, f"refused: {label}"
        if code >= 500:
            return OUTCOME_UNKNOWN, 0, label
        raise ValueError(f"the soak has no rule for create fault {fault!r}")
    return None, 1, "created" + (f" after {len(faults)} resend(s)" if faults else "")


def build_requests(config: SoakConfig) -> tuple[list[dict[str, Any]], list[str | None]]:
    """The batch's requests (unique prompts, seeded markers and generation times) and each one's marker error."""
    rng = random.Random(f"soak-prompts:{config.seed}")
    requests: list[dict[str, Any]] = []
    marker_errors: list[str | None] = []
    for index in range(config.images):
        # kie's generation times are reported at ~10-50 s; a skewed spread around ~20 s.
        seconds = rng.triangular(8.0, 60.0, 18.0) * config.time_scale
        marker, error = "", None
        draw = rng.random()
        for candidate, (share, marker_error) in MARKERS.items():
            if draw < share:
                marker, error = candidate, marker_error
                break
            draw -= share
        prompt = f"soak image {index:05d}: a lighthouse at dusk {marker} [emulator:slow={seconds:.3f}]"
        requests.append({"prompt": prompt, "aspect_ratio": rng.choice(["1:1", "16:9", "3:4"])})
        marker_errors.append(error)
    return requests, marker_errors


def _connection(base_url: str, config: SoakConfig) -> str:
    scale = config.time_scale
    return json.dumps(
        {
            "conn_type": "kontext",
            "host": base_url,
            "password": API_KEY,
            "extra": {
                "max_attempts": config.max_attempts,
                "backoff_initial": 1.0 * scale,
                "backoff_max": 30.0 * scale,
                "read_timeout": config.read_timeout,
                "connect_timeout": 5,
                "upload_base_url": base_url,
            },
        }
    )


def _run_batch(config: SoakConfig, requests: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Execute the batch operator the way Airflow does, on the worker and (deferred) in the triggerer."""
    from airflow_provider_kontext._compat import TaskDeferred
    from airflow_provider_kontext._protocol.defaults import KIE_CREATES_PER_WINDOW, KIE_WINDOW_SECONDS
    from airflow_provider_kontext.operators.batch import KontextBatchGenerateOperator

    def operator() -> KontextBatchGenerateOperator:
        return KontextBatchGenerateOperator(
            task_id="batch",
            requests=requests,
            kontext_conn_id=CONN_ID,
            fail_on_any_failure=False,
            deferrable=config.mode == "deferred",
            poll_interval=max(5.0 * config.time_scale, 0.05),
            timeout=600.0,
            max_creates_per_window=KIE_CREATES_PER_WINDOW,
            rate_window_seconds=KIE_WINDOW_SECONDS * config.time_scale,
        )

    # The one stand-in: a task instance and a state store, not a whole running Airflow task.
    context = task_context(
        FakeTaskInstance(dag_id="kontext_soak", run_id="soak__1", task_id="batch"), state_store=DictStateStore()
    )
    try:
        results: list[dict[str, Any]] = operator().execute(context)
        return results
    except TaskDeferred as deferred:
        trigger = deferred.trigger

        async def triggerer() -> dict[str, Any]:
            events = [event async for event in trigger.run()]
            if len(events) != 1:
                raise AssertionError(f"the trigger fired {len(events)} events, not one")
            payload: dict[str, Any] = events[0].payload
            return payload

        event = asyncio.run(triggerer())
        resumed: list[dict[str, Any]] = getattr(operator(), deferred.method_name)(
            context, event, **(deferred.kwargs or {})
        )
        return resumed


def _actual_outcome(result: Mapping[str, Any]) -> str:
    from airflow_provider_kontext._protocol.record import TaskRecord
    from airflow_provider_kontext.results import NOT_CREATED_STATUS

    if result.get("status") == NOT_CREATED_STATUS:
        return str(result.get("error_class"))
    failure = TaskRecord.from_dict(dict(result)).failure()
    return DELIVERED if failure is None and result.get("result_image_url") else type(failure).__name__


def run_soak(config: SoakConfig, emulator: EmulatorServer | None = None) -> SoakReport:
    """
    Run one soak and check it; never raises for a failed expectation (see ``report.problems``).

    ``emulator`` lets a caller reuse a running server; it is reset and reconfigured here.
    """
    from airflow_provider_kontext.emulator import EmulatorConfig, EmulatorServer

    scale = config.time_scale
    emulator_config: dict[str, Any] = {
        "generation_seconds": 20.0 * scale,
        "record_info_null_seconds": 0.5 * scale,
        "rate_limit_creates": 20,
        "rate_limit_window_seconds": 10.0 * scale,
        "image_long_side": 64,
        "credits": 1e9,
    }
    owned = emulator is None
    server = emulator or EmulatorServer(EmulatorConfig(api_key=API_KEY, **emulator_config))
    if owned:
        server.start()
    else:
        server.reset(api_key=API_KEY, **emulator_config)
    previous = os.environ.get(_conn_env())
    os.environ[_conn_env()] = _connection(server.base_url, config)
    try:
        requests, marker_errors = build_requests(config)
        server.inject_random_faults(config.fault_rate, config.seed, endpoints=["generate", "record-info"])
        report = SoakReport(config=config, images=len(requests))
        started = time.monotonic()
        try:
            results = _run_batch(config, requests)
        except Exception as err:  # the batch itself must not fail: that is a finding, not a crash
            report.problems.append(f"the batch raised {type(err).__name__}: {err}")
            results = []
        report.wall_seconds = time.monotonic() - started
        _check(report, server, requests, marker_errors, results)
        return report
    finally:
        if previous is None:
            os.environ.pop(_conn_env(), None)
        else:
            os.environ[_conn_env()] = previous
        if owned:
            server.stop()


def _conn_env() -> str:
    return f"AIRFLOW_CONN_{CONN_ID.upper()}"


def _check(
    report: SoakReport,
    server: EmulatorServer,
    requests: list[dict[str, Any]],
    marker_errors: list[str | None],
    results: list[dict[str, Any]],
) -> None:
    """Fill in the figures and list every expectation that did not hold."""
    stats = server.stats()
    applied: list[AppliedFault] = server.applied_faults()
    prompts = [str(request["prompt"]) for request in requests]
    tasks_by_prompt: dict[str, list[str]] = {}
    for task_id in server.state.task_ids():
        summary = server.state.task_summary(task_id)
        if summary is not None:
            tasks_by_prompt.setdefault(str(summary["params"]["prompt"]), []).append(task_id)
    faults_by_prompt: dict[str, list[dict[str, Any]]] = {}
    for entry in applied:
        if entry.endpoint == "generate":
            if entry.prompt is None:
                report.problems.append(f"a generate fault ({entry.kind}) names no prompt")
                continue
            faults_by_prompt.setdefault(entry.prompt, []).append({"kind": entry.kind, **entry.params})

    report.create_requests = int(stats["requests"].get("generate", 0))
    report.poll_requests = int(stats["requests"].get("record-info", 0))
    report.creates_accepted = int(stats["creates_accepted"])
    report.creates_rate_limited_by_emulator = int(stats["creates_rejected_rate_limit"])
    report.prompts_created_twice = sorted(prompt for prompt, ids in tasks_by_prompt.items() if len(ids) > 1)
    report.duplicate_creates = report.creates_accepted - len(tasks_by_prompt)
    report.faults = {endpoint: dict(kinds) for endpoint, kinds in stats["faults_applied"].items()}
    report.faults_total = len(applied)
    api_requests = int(stats["api_requests"])
    report.faulted_share = report.faults_total / api_requests if api_requests else 0.0

    if report.duplicate_creates or report.prompts_created_twice:
        report.problems.append(
            f"{report.duplicate_creates} duplicate create(s); prompts created twice: {report.prompts_created_twice[:5]}"
        )
    if report.creates_rate_limited_by_emulator:
        report.problems.append(
            f"the emulator rate-limited {report.creates_rate_limited_by_emulator} create(s): pacing is off"
        )
    unknown_prompts = set(faults_by_prompt) | set(tasks_by_prompt)
    unknown_prompts -= set(prompts)
    if unknown_prompts:
        report.problems.append(f"{len(unknown_prompts)} create(s) for prompts that were never requested")

    report.in_input_order = len(results) == len(prompts) and all(
        result.get("prompt") == prompt and _task_prompt(server, result.get("kie_task_id")) in (None, prompt)
        for result, prompt in zip(results, prompts, strict=False)
    )
    if results and not report.in_input_order:
        report.problems.append("results are not in input order (or not one per request)")

    actual_counts: Counter[str] = Counter()
    expected_counts: Counter[str] = Counter()
    for index, prompt in enumerate(prompts):
        try:
            error, tasks, why = expected_create_outcome(
                faults_by_prompt.get(prompt, []), max_attempts=report.config.max_attempts
            )
        except ValueError as err:
            report.problems.append(f"image {index}: {err}")
            continue
        if error is None and marker_errors[index] is not None:
            error, why = marker_errors[index], f"{why}; marker"
        expected = Expected(error or DELIVERED, tasks, why)
        expected_counts[expected.outcome] += 1
        held = len(tasks_by_prompt.get(prompt, []))
        if held != expected.tasks:
            report.problems.append(f"image {index}: kie holds {held} task(s), expected {expected.tasks} ({why})")
        if index >= len(results):
            continue
        actual = _actual_outcome(results[index])
        actual_counts[actual] += 1
        if actual != expected.outcome:
            report.problems.append(f"image {index}: {actual}, expected {expected.outcome} ({why})")
    report.delivered = actual_counts.pop(DELIVERED, 0)
    report.failed_by_class = dict(actual_counts)
    expected_counts.pop(DELIVERED, None)
    report.expected_failed_by_class = dict(expected_counts)


def _task_prompt(server: EmulatorServer, task_id: Any) -> str | None:
    if not isinstance(task_id, str):
        return None
    summary = server.state.task_summary(task_id)
    return str(summary["params"]["prompt"]) if summary is not None else "<unknown task>"


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: run one soak per seed, print the summaries, exit 1 if any failed."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--fault-rate", type=float, default=0.1)
    parser.add_argument("--seed", type=int, nargs="+", default=[1], help="one soak per seed")
    parser.add_argument("--time-scale", type=float, default=0.02, help="kie seconds -> soak seconds")
    parser.add_argument("--mode", choices=("deferred", "sync"), default="deferred")
    parser.add_argument("--json", action="store_true", help="print the reports as JSON")
    args = parser.parse_args(argv)
    os.environ.setdefault("AIRFLOW_HOME", tempfile.mkdtemp(prefix="kontext-soak-airflow-"))
    os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
    # Retry warnings and progress lines are expected here by the thousand; the summary is the output.
    os.environ.setdefault("AIRFLOW__LOGGING__LOGGING_LEVEL", "ERROR")
    reports = []
    for seed in args.seed:
        config = SoakConfig(
            images=args.images, fault_rate=args.fault_rate, seed=seed, time_scale=args.time_scale, mode=args.mode
        )
        report = run_soak(config)
        reports.append(report)
        if not args.json:
            print(report.render(), flush=True)
    if args.json:
        print(json.dumps([report.as_dict() for report in reports], indent=2, default=str))
    return 0 if all(report.passed for report in reports) else 1


if __name__ == "__main__":
    sys.exit(main())
