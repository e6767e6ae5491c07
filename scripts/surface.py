"""How much there is to hold in one's head: the two figures of issue #12, measured the same way each time.

    .venv/bin/python scripts/surface.py            # both figures
    .venv/bin/python scripts/surface.py --names    # also list every public name

1. **Traced path**: the provider functions (defined in the package outside ``emulator/``) that
   one deferrable ``KontextGenerateOperator`` runs from ``execute`` (create, defer) through the
   real ``KontextTaskTrigger`` to ``execute_complete``, against the bundled emulator, under
   cProfile; and the modules they live in. "Cold" is the first run in a fresh process, so it
   also counts the class bodies of the modules imported lazily on the way (what issue #12's
   first figure, 123 in 17 modules, measured); "warm" is a second run, the steady state of a
   worker or triggerer.
2. **Public surface**: top-level names of public modules (no ``_`` in the module path) outside
   ``emulator/``: the module's ``__all__`` when it has one, else every top-level binding without a
   leading underscore (functions, classes, assignments, explicit ``import x as x`` re-exports).
"""

from __future__ import annotations

import ast
import asyncio
import cProfile
import json
import os
import pstats
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "airflow_provider_kontext"


def public_names() -> dict[str, list[str]]:
    names: dict[str, list[str]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(ROOT).with_suffix("")
        parts = rel.parts
        if "emulator" in parts or any(part.startswith("_") and part != "__init__" for part in parts):
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        declared: list[str] | None = None
        bound: list[str] = []
        for node in tree.body:
            targets: list[str] = []
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                targets = [node.name]
            elif isinstance(node, ast.Assign):
                targets = [t.id for t in node.targets if isinstance(t, ast.Name)]
            elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
                targets = [node.target.id]
            elif isinstance(node, ast.ImportFrom) and any(alias.asname == alias.name for alias in node.names):
                # ``from x import y as y``: an explicit re-export, a second import path for ``y``.
                targets = [alias.name for alias in node.names if alias.asname == alias.name]
            if "__all__" in targets and isinstance(node, ast.Assign | ast.AnnAssign) and node.value is not None:
                declared = [ast.literal_eval(elt) for elt in node.value.elts]  # type: ignore[attr-defined]
            bound += [t for t in targets if not t.startswith("_")]
        module = ".".join(p for p in parts if p != "__init__")
        names[module] = sorted(declared if declared is not None else set(bound))
    return names


def traced_path() -> list[tuple[list[str], set[str]]]:
    os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
    from airflow.providers.standard.operators.empty import EmptyOperator
    from airflow.sdk import DAG

    from airflow_provider_kontext._compat import TaskDeferred
    from airflow_provider_kontext.emulator import EmulatorConfig, EmulatorServer
    from airflow_provider_kontext.operators.generate import KontextGenerateOperator
    from reliability.fake_airflow import FakeTaskInstance, task_context

    with EmulatorServer(EmulatorConfig(api_key="surface-key", generation_seconds=0.3)) as emulator:
        os.environ["AIRFLOW_CONN_KONTEXT_DEFAULT"] = json.dumps(
            {"conn_type": "kontext", "host": emulator.base_url, "password": "surface-key",
             "extra": {"upload_base_url": emulator.base_url}}
        )  # fmt: skip
        context = task_context(FakeTaskInstance(dag_id="surface", run_id="run", task_id="generate"))

        def operator() -> KontextGenerateOperator:
            # With a downstream task, so the wait resumes on the worker (execute_complete) rather
            # than ending in the triggerer: the longest path, and the one the first figures measured.
            with DAG("surface", schedule=None):
                task = KontextGenerateOperator(
                    task_id="generate", prompt="a kettle", deferrable=True, poll_interval=0.2
                )
                task >> EmptyOperator(task_id="after")
            return task

        def one_run() -> None:
            try:
                operator().execute(context)  # type: ignore[arg-type]
                raise SystemExit("the operator did not defer")
            except TaskDeferred as deferred:
                task_trigger = deferred.trigger

                async def trigger() -> object:
                    async for event in task_trigger.run():
                        return event.payload
                    return None

                event = asyncio.run(trigger())
                getattr(operator(), deferred.method_name)(context, event, **(deferred.kwargs or {}))

        profiles = []
        for _ in range(2):  # cold: the first run in the process; warm: a second run, modules loaded
            profile = cProfile.Profile()
            profile.enable()
            one_run()
            profile.disable()
            profiles.append(profile)
    figures = []
    for profile in profiles:
        functions: set[str] = set()
        modules: set[str] = set()
        for filename, _line, name in pstats.Stats(profile).stats:  # type: ignore[attr-defined]
            path = Path(filename)
            if name.startswith("<") or PACKAGE not in path.parents:
                continue  # comprehensions and lambdas are part of the function that holds them
            if "emulator" not in path.relative_to(PACKAGE).parts:
                module = str(path.relative_to(ROOT))
                functions.add(f"{module}:{name}")
                modules.add(module)
        figures.append((sorted(functions), modules))
    return figures


def main() -> int:
    names = public_names()
    (cold, cold_modules), (functions, modules) = traced_path()
    total = sum(len(v) for v in names.values())
    with_all = sum(
        1 for path in PACKAGE.rglob("*.py") if "emulator" not in path.parts and "\n__all__" in path.read_text()
    )
    print(f"traced path, warm: {len(functions)} provider functions in {len(modules)} modules")
    print(
        f"traced path, cold: {len(cold)} in {len(cold_modules)} modules "
        "(the first run in a process: also the class bodies of modules imported on the way)"
    )
    print(f"public surface: {total} names in {len(names)} public modules ({with_all} files declare __all__)")
    if "--names" in sys.argv:
        for module, listed in names.items():
            print(f"  {module} ({len(listed)}): {', '.join(listed)}")
        for function in functions:
            print(f"  traced {function}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
