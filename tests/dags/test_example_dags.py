"""Every example DAG, run with ``dag.test()`` on a real Airflow (SQLite) against the emulator.

Each runs deferrable (the trigger runs in-process) and blocking, and asserts the XCom values,
the images on disk, and that the emulator received exactly one create per image.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from airflow_provider_kontext._compat import AIRFLOW_V_3_1_PLUS, AIRFLOW_V_3_3_PLUS
from airflow_provider_kontext.emulator import EmulatorServer
from airflow_provider_kontext.triggers.task import KontextTaskTrigger
from tests.conftest import API_KEY, EXAMPLES_DIR, TEST_DAGS_DIR

pytestmark = pytest.mark.dagtest

KONTEXT_TASK_TYPES = (
    "KontextGenerateOperator",
    "KontextTaskSensor",
    "KontextBatchGenerateOperator",
    "_KontextDecoratedOperator",
    "_KontextBatchDecoratedOperator",
)


def _has_task_state_store() -> bool:
    try:
        return importlib.util.find_spec("airflow.sdk._shared.state") is not None
    except ModuleNotFoundError:  # no airflow.sdk._shared at all (Airflow 3.0)
        return False


HAS_TASK_STATE_STORE = _has_task_state_store()


def load_example(name: str, folder: str = EXAMPLES_DIR) -> Any:
    if EXAMPLES_DIR not in sys.path:
        sys.path.insert(0, EXAMPLES_DIR)
    spec = importlib.util.spec_from_file_location(f"example_{name}", Path(folder) / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def tune(dag: Any, *, deferrable: bool) -> None:
    """Fast polls for the emulator, and the requested waiting mode, on every Kontext task."""
    for task in dag.tasks:
        if getattr(task, "task_type", type(task).__name__) not in KONTEXT_TASK_TYPES:
            continue
        kwargs = getattr(task, "partial_kwargs", None)
        if kwargs is not None:  # a mapped operator
            kwargs["deferrable"] = deferrable
            kwargs["poll_interval"] = 0.2
        else:
            task.deferrable = deferrable
            task.poll_interval = 0.2
            if hasattr(task, "poke_interval"):
                task.poke_interval = 0.2


def xcoms(run_id: str) -> dict[tuple[str, int, str], Any]:
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        rows = session.query(XComModel).filter(XComModel.run_id == run_id).all()
        return {(row.task_id, row.map_index, row.key): XComModel.deserialize_value(row) for row in rows}


@pytest.fixture
def run_example(airflow_db: str, emulator: EmulatorServer, output_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("KONTEXT_OUTPUT_DIR", str(output_dir))
    deferrals: list[list[str]] = []
    original_run = KontextTaskTrigger.run

    finish_when_waited = False

    def counting_run(self: KontextTaskTrigger) -> Any:
        deferrals.append(list(self.kie_task_ids))
        if finish_when_waited:
            emulator.finish_now(*self.kie_task_ids)
        return original_run(self)

    monkeypatch.setattr(KontextTaskTrigger, "run", counting_run)

    def run(
        name: str, *, deferrable: bool, finish_when_deferred: bool = False
    ) -> tuple[Any, dict[tuple[str, int, str], Any], list[list[str]]]:
        """
        ``dag.test()`` of example ``name``; returns its module, the run's XComs and each trigger's kie ids.

        ``finish_when_deferred``: the emulator's tasks end when a trigger starts waiting for them
        (create them slow), so every deferrable wait finds its task running, however loaded the machine.
        """
        nonlocal finish_when_waited
        finish_when_waited = finish_when_deferred
        module = load_example(name)
        tune(module.dag, deferrable=deferrable)
        if not AIRFLOW_V_3_1_PLUS:
            register_dag(module.dag)
        dag_run = module.dag.test()
        assert dag_run.state == "success", f"{name} ended {dag_run.state}"
        return module, xcoms(dag_run.run_id), deferrals

    return run


def register_dag(dag: Any) -> None:
    """
    Write the DAG and its assets to the metadata DB, as the DAG processor does in a deployment.

    Airflow 3.0's ``dag.test()`` never does (3.1+ does it itself), so a task with Asset outlets
    fails there with ``AirflowInactiveAssetInInletOrOutletException``: its assets were never
    registered, let alone activated.
    """
    from airflow.dag_processing.bundles.manager import DagBundlesManager
    from airflow.models.dagbag import DagBag

    DagBundlesManager().sync_bundles_to_db()
    dag.relative_fileloc = os.path.basename(dag.fileloc)  # what DagBag sets when it parses a file
    bag = DagBag(dag_folder=os.devnull, include_examples=False, collect_dags=False)
    bag.bag_dag(dag)
    bag.sync_to_db("dags-folder", None)


def assert_image(path: str, fmt: str, size_ratio: float | None = None) -> None:
    with Image.open(path) as image:
        assert image.format == fmt
        if size_ratio is not None:
            assert abs(image.width / image.height - size_ratio) < 0.02


@pytest.mark.parametrize("deferrable", [True, False], ids=["deferrable", "blocking"])
def test_text_to_image(run_example: Any, emulator: EmulatorServer, deferrable: bool) -> None:
    _, values, deferrals = run_example("example_kontext_text_to_image", deferrable=deferrable)
    result = values[("generate", -1, "return_value")]
    assert result["status"] == "SUCCESS"
    assert result["prompt"] == "A ceramic coffee mug on a walnut desk, soft morning light"
    assert result["aspect_ratio"] == "16:9"
    assert values[("generate", -1, "kie_task_id")] == result["kie_task_id"]
    assert values[("generate", -1, "result_image_url")] == result["result_image_url"]
    assert_image(values[("save_image", -1, "return_value")], "PNG", 16 / 9)
    assert emulator.stats()["creates_accepted"] == 1
    assert len(deferrals) == (1 if deferrable else 0)
    assert API_KEY not in repr(values)


@pytest.mark.parametrize("deferrable", [True, False], ids=["deferrable", "blocking"])
def test_edit_with_sensor(run_example: Any, emulator: EmulatorServer, deferrable: bool) -> None:
    # Deferrable: each task runs until its trigger waits for it, so the sensor's first check (on
    # the worker, after save_original: seconds on 2 busy cores) always finds the edit running and
    # defers; a fixed generation time was outlasted under load.
    emulator.configure(generation_seconds=300.0 if deferrable else 2.0)
    _, values, deferrals = run_example(
        "example_kontext_edit_with_sensor", deferrable=deferrable, finish_when_deferred=deferrable
    )
    original = values[("original", -1, "return_value")]
    edit_id = values[("submit_edit", -1, "return_value")]
    assert edit_id == values[("submit_edit", -1, "kie_task_id")]
    edited = values[("wait_for_edit", -1, "return_value")]
    assert edited["kie_task_id"] == edit_id
    assert edited["input_image"] == original["result_image_url"]
    assert values[("wait_for_edit", -1, "result_image_url")] == edited["result_image_url"]
    assert values[("wait_for_edit", -1, "result_image_urls")] == [edited["result_image_url"]]
    before = Image.open(values[("save_original", -1, "return_value")]).convert("RGB")
    after = Image.open(values[("save_edit", -1, "return_value")]).convert("RGB")
    assert before.size == after.size
    assert list(before.getdata()) != list(after.getdata()), "an edit must visibly change the image"
    assert emulator.stats()["creates_accepted"] == 2
    assert len(deferrals) == (2 if deferrable else 0)


@pytest.mark.parametrize("deferrable", [True, False], ids=["deferrable", "blocking"])
def test_fan_out(run_example: Any, emulator: EmulatorServer, deferrable: bool) -> None:
    module, values, deferrals = run_example("example_kontext_fan_out", deferrable=deferrable)
    prompts = module.PROMPTS
    results = [values[("generate", index, "return_value")] for index in range(len(prompts))]
    assert [r["prompt"] for r in results] == prompts
    for index in range(len(prompts)):
        assert_image(values[("save_image", index, "return_value")], "JPEG", 1.0)
    assert emulator.stats()["creates_accepted"] == len(prompts)
    assert len(deferrals) == (len(prompts) if deferrable else 0)


@pytest.mark.parametrize("deferrable", [True, False], ids=["deferrable", "blocking"])
def test_taskflow(run_example: Any, emulator: EmulatorServer, deferrable: bool) -> None:
    module, values, deferrals = run_example("example_kontext_taskflow", deferrable=deferrable)
    shots = [values[("product_shot", index, "return_value")] for index in range(len(module.PRODUCTS))]
    assert [shot["prompt"] for shot in shots] == [
        f"Studio photo of a {product} on a white background, soft shadow" for product in module.PRODUCTS
    ]
    for index, shot in enumerate(shots):
        assert shot["status"] == "SUCCESS"
        assert shot["aspect_ratio"] == "1:1"
        # The operator's XComs, pushed by the decorated task too.
        assert values[("product_shot", index, "kie_task_id")] == shot["kie_task_id"]
        assert values[("product_shot", index, "result_image_url")] == shot["result_image_url"]
        assert_image(shot["stored_path"].removeprefix("file://"), "PNG", 1.0)
    hero = values[("hero_shot", -1, "return_value")]
    scene = values[("lifestyle_scene", -1, "return_value")]
    assert scene["input_image"] == hero["result_image_url"]
    assert scene["aspect_ratio"] == "4:3"
    banners = values[("sale_banners", -1, "return_value")]
    assert [banner["prompt"] for banner in banners] == [
        f"Wide web banner for a {product} sale, flat illustration" for product in module.PRODUCTS
    ]
    assert all(Path(banner["stored_path"].removeprefix("file://")).is_file() for banner in banners)
    assert emulator.stats()["creates_accepted"] == 3 + 1 + 1 + 3
    # One deferral per image task: three mapped shots, the hero, the scene, and one for the batch.
    assert len(deferrals) == (6 if deferrable else 0)


def test_airflow_retries_reattach_instead_of_paying_again(
    airflow_db: str, emulator: EmulatorServer, capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The images render until the second try starts: the first try always times out, however
    # fast or loaded the machine, and a retry that re-attaches finds them done.
    emulator.configure(generation_seconds=3600.0)
    from airflow_provider_kontext.operators.batch import KontextBatchGenerateOperator

    tries = 0
    original_execute = KontextBatchGenerateOperator.execute

    def execute(self: Any, context: Any) -> Any:
        nonlocal tries
        tries += 1
        if tries == 2:
            emulator.finish_now(*emulator.state.task_ids())
        return original_execute(self, context)

    monkeypatch.setattr(KontextBatchGenerateOperator, "execute", execute)
    dag = load_example("kontext_test_retry_reattach", TEST_DAGS_DIR).dag
    dag_run = dag.test()
    (ti,) = dag_run.get_task_instances()
    assert ti.try_number > 1, "the first try must have timed out for this test to mean anything"
    out, err = capfd.readouterr()
    warnings = (out + err).count("has no task-instance state store")
    # The README's version table: the store, and so re-attach, comes with Airflow 3.3.
    assert HAS_TASK_STATE_STORE == AIRFLOW_V_3_3_PLUS
    if not HAS_TASK_STATE_STORE:
        # Documented: without the store (Airflow < 3.3) every retry creates, and pays, again,
        # and each try says so in its log, once, pointing at the submit + sensor pattern.
        assert emulator.stats()["creates_accepted"] == 4 * ti.try_number
        # 3.0's dag.test() prints each task log record once or twice, depending on which log
        # handlers earlier tests in the process left installed: count in units of that factor.
        echo = 1 if AIRFLOW_V_3_1_PLUS else warnings // ti.try_number
        assert echo in (1, 2) and warnings == echo * ti.try_number, (out + err)[-3000:]
        assert "KontextTaskSensor" in out + err
        return
    assert warnings == 0
    assert dag_run.state == "success"
    assert ti.try_number == 2, "the second try re-attached to the finished images"
    results = xcoms(dag_run.run_id)[("batch", -1, "return_value")]
    assert [r["prompt"] for r in results] == [f"retry image {i}" for i in range(4)]
    assert emulator.stats()["creates_accepted"] == 4, "creates == images requested across all tries"


@pytest.mark.parametrize("deferrable", [True, False], ids=["deferrable", "blocking"])
def test_content_pipeline(run_example: Any, emulator: EmulatorServer, output_dir: Path, deferrable: bool) -> None:
    module, values, _ = run_example("example_kontext_content_pipeline", deferrable=deferrable)
    shots = values[("product_shots", -1, "return_value")]
    staged = values[("staged_shots", -1, "return_value")]
    prompts = [r["prompt"] for r in values[("read_prompts", -1, "return_value")]]
    assert [r["prompt"] for r in shots] == prompts
    assert len(staged) == 2
    for result in [*shots, *staged]:
        stored = Path(result["stored_path"].removeprefix("file://"))
        assert stored.is_file()
        assert output_dir in stored.parents
        assert_image(str(stored), "PNG" if result in shots else "JPEG")
    for original, edit in zip(shots, staged, strict=False):
        before = Image.open(original["stored_path"].removeprefix("file://")).convert("RGB")
        after = Image.open(edit["stored_path"].removeprefix("file://")).convert("RGB").resize(before.size)
        assert list(before.getdata()) != list(after.getdata())
    stats = emulator.stats()
    assert stats["creates_accepted"] == len(prompts) + 2, "one create per image, no more"
    assert stats["uploads"] == 2, "the edits upload the stored files"
    assert stats["creates_rejected_rate_limit"] == 0
    assert values[("product_shots", -1, "kie_task_ids")] == [r["kie_task_id"] for r in shots]
    from airflow.models.asset import AssetEvent
    from airflow.utils.session import create_session

    with create_session() as session:
        events = session.query(AssetEvent).order_by(AssetEvent.id).all()  # this run's come last
        extras = {event.asset.uri: event.extra for event in events if event.source_task_id}
    assert extras[module.PRODUCT_SHOTS.uri]["kontext_images"] == [r["stored_path"] for r in shots]
    assert extras[module.STAGED_SHOTS.uri]["kontext_images"] == [r["stored_path"] for r in staged]


def serve_reviews(monkeypatch: pytest.MonkeyPatch, pick: Callable[[list[str]], list[str]]) -> list[list[str]]:
    """
    Answer every review of a ``dag.test()`` run as a person in the UI would; returns each form's options
    (none on Airflow 3.0, which has no human-in-the-loop).

    The answer is written where the UI's REST route writes it (the form's ``HITLDetail`` row), and
    then reaches the task the way each Airflow delivers it:

    * 3.3 parks the task in ``awaiting_input`` and the route resumes it (``handle_event_submit``);
      ``dag.test()`` sleeps until something does, so its sleep is where the reviewer answers.
    * 3.1 and 3.2 defer to Airflow's HITL trigger, which ``dag.test()`` runs in-process; that
      process's supervisor does not serve the trigger's read of the answer ("Unhandled request",
      the triggerer serves it), so it is served here the triggerer's way, through the execution API.
    """
    forms: list[list[str]] = []
    if not AIRFLOW_V_3_1_PLUS:
        return forms

    import time

    import sqlalchemy
    from airflow.models.hitl import HITLDetail
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session
    from airflow.utils.state import TaskInstanceState

    def answer(detail: Any) -> None:
        forms.append(list(detail.options))
        detail.chosen_options = pick(list(detail.options))
        detail.responded_by = {"id": "reviewer", "name": "Reviewer"}
        detail.responded_at = datetime.now(UTC)
        detail.params_input = {}

    if AIRFLOW_V_3_3_PLUS:
        from airflow.models.trigger import handle_event_submit
        from airflow.triggers.base import TriggerEvent

        real_sleep = time.sleep

        def answer_parked() -> bool:
            with create_session() as session:
                parked = session.query(TaskInstance).filter(TaskInstance.state == TaskInstanceState.AWAITING_INPUT)
                for ti in parked.all():
                    detail = session.get(HITLDetail, ti.id)
                    if detail is None or detail.responded_at is not None:
                        continue
                    answer(detail)
                    session.flush()
                    handle_event_submit(
                        TriggerEvent(detail.as_resume_event_payload()), task_instance=ti, session=session
                    )
                    return True
            return False

        def sleep(seconds: float) -> None:
            caller = sys._getframe(1)
            waiting = (
                caller.f_code.co_name == "test" and caller.f_globals.get("__name__") == "airflow.sdk.definitions.dag"
            )
            if not (waiting and answer_parked()):
                real_sleep(seconds)

        monkeypatch.setattr(time, "sleep", sleep)
        return forms

    from airflow.jobs.triggerer_job_runner import HITLDetailResponseResult
    from airflow.sdk.execution_time.comms import GetHITLDetailResponse
    from airflow.sdk.execution_time.supervisor import InProcessTestSupervisor

    original = InProcessTestSupervisor._handle_request
    # The form's key: a UUID column from 3.2, a string one in 3.1.
    uuid_key = isinstance(HITLDetail.__table__.c.ti_id.type, sqlalchemy.Uuid)

    def handle_request(self: Any, msg: Any, log: Any, req_id: int) -> None:
        if not isinstance(msg, GetHITLDetailResponse):
            return original(self, msg, log, req_id)
        with create_session() as session:
            detail = session.get(HITLDetail, msg.ti_id if uuid_key else str(msg.ti_id))
            assert detail is not None, "the review's form must exist before its trigger asks for the answer"
            if detail.responded_at is None:
                answer(detail)
        response = self.client.hitl.get_detail_response(ti_id=msg.ti_id)
        self.send_msg(HITLDetailResponseResult.from_api_response(response=response), request_id=req_id)
        return None

    monkeypatch.setattr(InProcessTestSupervisor, "_handle_request", handle_request)
    return forms


def sent_input(emulator: EmulatorServer, result: dict[str, Any]) -> Any:
    """The ``input`` the emulator received for the Market task behind ``result``."""
    task = emulator.state.get_task(result["kie_task_id"])
    assert task is not None
    return task.params["input"]


@pytest.mark.parametrize(
    ("deferrable", "choice"),
    [(True, "Image 2"), (False, "None of these")],
    ids=["deferrable-picks-one", "blocking-rejects-all"],
)
def test_market_product_shots(
    run_example: Any, emulator: EmulatorServer, monkeypatch: pytest.MonkeyPatch, deferrable: bool, choice: str
) -> None:
    forms = serve_reviews(monkeypatch, lambda options: [choice])
    module, values, deferrals = run_example("example_kontext_market_product_shots", deferrable=deferrable)
    shots = values[("product_shots", -1, "return_value")]
    assert [shot["model"] for shot in shots] == ["flux-2/pro-text-to-image"] * 3
    assert all(shot["credits"] == 5 and not shot["credits_estimated"] for shot in shots), shots
    if AIRFLOW_V_3_1_PLUS:
        assert forms == [["Image 1", "Image 2", "Image 3", "None of these"]]
        approved = [shots[1]] if choice == "Image 2" else []
        assert values[("pick_best", -1, "return_value")] == approved
    else:  # Airflow 3.0: no human-in-the-loop, the first shot goes on unreviewed
        approved = shots[:1]
    spend = values[("report_spend", -1, "return_value")]
    stats = emulator.stats()
    if not approved:
        assert ("upscale", 0, "return_value") not in values
        assert spend == {"credits": 15, "estimated": False, "kie_tasks": 3, "published": []}
        assert stats["creates_accepted"] == 3, "a rejection spends nothing more"
        assert len(deferrals) == (1 if deferrable else 0)
        return
    upscaled = values[("upscale", 0, "return_value")]
    assert upscaled["model"] == "topaz/image-upscale"
    assert sent_input(emulator, upscaled)["image_url"] == approved[0]["result_image_url"]
    cutout = values[("remove_background", 0, "return_value")]
    assert cutout["model"] == "recraft/remove-background"
    assert sent_input(emulator, cutout)["image"] == upscaled["result_image_url"]
    stored = cutout["stored_path"]
    assert stored.startswith(f"file://{module.OUTPUT_ROOT}/market-product-shots/")
    assert_image(stored.removeprefix("file://"), "PNG")
    assert spend == {"credits": 3 * 5 + 10 + 1, "estimated": False, "kie_tasks": 5, "published": [stored]}
    assert stats["creates_accepted"] == 5, "one create per image, no more"
    assert len(deferrals) == (3 if deferrable else 0)


EXAMPLES = [
    "example_kontext_text_to_image",
    "example_kontext_edit_with_sensor",
    "example_kontext_fan_out",
    "example_kontext_content_pipeline",
    "example_kontext_taskflow",
    "example_kontext_market_product_shots",
]


def without_airflow_mask_requests(output: str) -> str:
    """
    ``output`` without Airflow's own ``dag.test()`` debug lines that carry a secret to mask.

    Documented (README, Airflow versions): ``dag.test()``'s in-process supervisor logs every
    request at debug level, and on Airflow 3.0 that output shows ``MaskSecret(value=<the key>)``:
    Airflow asking itself to mask the connection password it just read. Only ``dag.test()`` uses
    that supervisor; a deployment's task logs do not have the line. Anything else carrying the
    key still fails the scan.
    """
    kept = []
    for line in output.splitlines():
        if API_KEY in line and "Sending request" in line and f"MaskSecret(value='{API_KEY}'" in line:
            assert not AIRFLOW_V_3_1_PLUS, f"Airflow's dag.test() debug line carried the key on this version: {line}"
            continue
        kept.append(line)
    return "\n".join(kept)


def test_secret_scan(
    run_example: Any, airflow_db: str, capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every example, run with a recognisable key: it shows up in no output, log, XCom or DB row."""
    serve_reviews(monkeypatch, lambda options: options[:1])
    for name in EXAMPLES:
        _, values, _ = run_example(name, deferrable=True)
        assert API_KEY not in repr(values), name
    out, err = capfd.readouterr()
    assert "kie tasks" in out + err or "succeeded" in out + err, "the scan must see the task output"
    out, err = without_airflow_mask_requests(out), without_airflow_mask_requests(err)
    assert API_KEY not in out
    assert API_KEY not in err
    leaks = [
        str(path) for path in Path(airflow_db).rglob("*") if path.is_file() and API_KEY.encode() in path.read_bytes()
    ]
    assert not leaks, f"API key found in {leaks}"
    # Control: the same scan does see what the runs stored (XComs hold the prompts).
    assert any(
        b"A ceramic coffee mug" in path.read_bytes() for path in Path(airflow_db).rglob("*.db") if path.is_file()
    )


def test_a_refused_prompt_with_retries_costs_one_create_and_one_try(
    airflow_db: str, emulator: EmulatorServer, capfd: pytest.CaptureFixture[str]
) -> None:
    dag = load_example("kontext_test_refused_prompt", TEST_DAGS_DIR).dag
    dag_run = dag.test()
    assert dag_run.state == "failed"
    tries = {ti.task_id: (ti.state, ti.try_number) for ti in dag_run.get_task_instances()}
    out, err = capfd.readouterr()
    no_policy_warnings = (out + err).count("has no retry policies")
    if not AIRFLOW_V_3_3_PLUS:
        # The README's version table: no retry policies below 3.3, so Airflow's plain retries run
        # (the DAG's retries=1 there: two tries, two creates each), and every try says so in its log.
        assert tries == {
            "refused_deferrable": ("failed", 2),
            "refused_blocking": ("failed", 2),
            "refused_decorated": ("failed", 2),
        }
        replay_warnings = (out + err).count("resumes with this same trigger event")
        if AIRFLOW_V_3_1_PLUS:
            assert emulator.stats()["creates_accepted"] == 3 * 2
            assert no_policy_warnings == 3 * 2, (out + err)[-3000:]
            assert replay_warnings == 0
            return
        # Airflow 3.0 keeps a deferred task's resume across tries (the README's table): the retry
        # of each deferrable task resumes with the same refused event and creates nothing, and
        # both its tries say so; only the blocking task's retry starts again and pays again.
        # 3.0's dag.test() prints each task log record once or twice, depending on which
        # handlers earlier tests in the process left installed: count in units of that factor.
        assert emulator.stats()["creates_accepted"] == 2 + 1 + 1
        echo = no_policy_warnings // (2 + 1 + 1)
        assert echo in (1, 2) and no_policy_warnings == echo * (2 + 1 + 1), (out + err)[-3000:]
        assert replay_warnings == echo * (2 * 2), (out + err)[-3000:]
        return
    assert no_policy_warnings == 0
    assert tries == {
        "refused_deferrable": ("failed", 1),
        "refused_blocking": ("failed", 1),
        "refused_decorated": ("failed", 1),
        # The author's own policy wins: Airflow's normal retries, each paying for a new create.
        "refused_own_policy": ("failed", 3),
    }
    assert emulator.stats()["creates_accepted"] == 1 + 1 + 1 + 3
