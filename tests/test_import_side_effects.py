"""Importing the provider must open nothing and pull in only what parsing a DAG needs.

The DAG processor imports every DAG file again and again, and the triggerer, the scheduler and
``airflow providers list`` import provider modules too. An import that opens a socket or a
database connection would do so in each of those processes, every time; one that drags in
``requests``/``aiohttp`` or the hook makes every DAG file using an operator slower to parse.
Each check runs in a fresh interpreter so nothing already imported by the test session hides
a regression.
"""

from __future__ import annotations

import json
import os
import pkgutil
import subprocess
import sys

import pytest

import airflow_provider_kontext

ALL_MODULES = sorted(
    info.name
    for info in pkgutil.walk_packages(airflow_provider_kontext.__path__, prefix="airflow_provider_kontext.")
    if not info.name.endswith("__main__")  # runs the emulator CLI when imported
)

#: Patches every way of opening a connection (sockets, sqlite, SQLAlchemy engines), then
#: imports the modules named on the command line and prints what was attempted as JSON.
PROBE = r"""
import json, socket, sqlite3, sys

# Airflow's own start-up (configuring its ORM engine, logging) is what every DAG file pays with
# or without this provider; it runs first, unpatched. Everything after is the provider's.
import airflow.sdk
import airflow.providers.common.compat.sdk
import sqlalchemy.engine

opened = []

def refuse(what):
    def _refuse(*args, **kwargs):
        opened.append(f"{what}{args[:2]!r}")
        raise OSError(f"{what} during import")
    return _refuse

class NoSocket(socket.socket):
    def __init__(self, *args, **kwargs):
        caller = sys._getframe(1)
        # urllib3 (under requests) creates, binds and closes an AF_INET6 socket on ::1 at import
        # to learn whether the host has IPv6: no traffic, and not this provider's code.
        if caller.f_globals.get("__name__") == "urllib3.util.connection" and caller.f_code.co_name == "_has_ipv6":
            return super().__init__(*args, **kwargs)
        opened.append(f"socket.socket{args[:2]!r} from {caller.f_globals.get('__name__')}")
        raise OSError("socket during import")

socket.socket = NoSocket
socket.create_connection = refuse("socket.create_connection")
socket.socketpair = refuse("socket.socketpair")
sqlite3.connect = refuse("sqlite3.connect")
sqlalchemy.create_engine = refuse("sqlalchemy.create_engine")
sqlalchemy.engine.create_engine = refuse("sqlalchemy.engine.create_engine")
sqlalchemy.engine.Engine.connect = refuse("Engine.connect")
sqlalchemy.engine.Engine.raw_connection = refuse("Engine.raw_connection")

import importlib
errors = {}
for name in sys.argv[1:]:
    try:
        importlib.import_module(name)
    except Exception as err:
        errors[name] = repr(err)
print(json.dumps({"opened": opened, "errors": errors}))
"""

#: What a DAG file that uses the operators and the sensor must not import: the code that
#: talks to kie (and its HTTP stacks) belongs to execution, not to parsing.
PARSE_TIME_FORBIDDEN = (
    "requests",
    "aiohttp",
    "urllib3",
    "PIL",
    "airflow_provider_kontext.hooks.kontext",
    "airflow_provider_kontext.hooks.async_client",
    "airflow_provider_kontext.triggers.task",
    "airflow_provider_kontext._tasks.storage",
    "airflow_provider_kontext._protocol.envelope",
    "airflow_provider_kontext._protocol.retry",
    "airflow_provider_kontext._protocol.polling",
    "airflow_provider_kontext._tasks.waiting",
    "airflow_provider_kontext._tasks.ledger",
)

DAG_FACING_MODULES = (
    "airflow_provider_kontext.operators.generate",
    "airflow_provider_kontext.operators.batch",
    "airflow_provider_kontext.sensors.task",
    "airflow_provider_kontext.operators.review",
)


def run_python(code: str, *args: str) -> dict[str, object]:
    env = {**os.environ, "AIRFLOW__CORE__LOAD_EXAMPLES": "False"}
    out = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    result: dict[str, object] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def test_every_module_is_covered() -> None:
    # A rename must not silently empty the list the next test checks.
    assert "airflow_provider_kontext.operators.batch" in ALL_MODULES
    assert "airflow_provider_kontext.emulator.server" in ALL_MODULES
    assert len(ALL_MODULES) > 30


def test_importing_every_module_opens_no_socket_and_no_database() -> None:
    result = run_python(PROBE, *ALL_MODULES)
    assert result["errors"] == {}
    assert result["opened"] == []


def test_the_probe_does_catch_a_connection() -> None:
    # The guard itself must be able to fail: an import that connects is reported.
    code = PROBE.replace(
        "import importlib\n",
        "import importlib\nimport sqlite3 as s3\ntry:\n    s3.connect(':memory:')\nexcept OSError:\n    pass\n",
        1,
    )
    result = run_python(code, "json")
    assert result["opened"] == ["sqlite3.connect(':memory:',)"]


@pytest.mark.parametrize("module", DAG_FACING_MODULES)
def test_dag_facing_modules_do_not_import_the_execution_machinery(module: str) -> None:
    code = (
        "import json, sys, importlib\n"
        "import airflow.sdk\n"  # what every DAG file pays anyway
        "before = set(sys.modules)\n"
        f"importlib.import_module({module!r})\n"
        "print(json.dumps({'new': sorted(set(sys.modules) - before)}))\n"
    )
    new = run_python(code)["new"]
    assert isinstance(new, list)
    pulled = sorted(
        {
            forbidden
            for forbidden in PARSE_TIME_FORBIDDEN
            for name in new
            if name == forbidden or name.startswith(forbidden + ".")
        }
    )
    assert pulled == [], f"importing {module} pulled in {pulled}"


def test_constructing_a_sensor_that_starts_in_the_triggerer_imports_none_of_it() -> None:
    # Its StartTriggerArgs are built at parse time, from light modules only (Airflow 3.2+; below,
    # the same sensor starts on a worker and builds none). Constructing any task costs what
    # Airflow's own BaseOperator imports (on 3.0 its serializer, and through it aiohttp): that is
    # paid first, as every DAG file with a task pays it.
    code = (
        "import json, sys\n"
        "import airflow.sdk\n"
        "airflow.sdk.BaseOperator(task_id='any_task')\n"
        "before = set(sys.modules)\n"
        "from airflow_provider_kontext._compat import AIRFLOW_STARTS_TASKS_FROM_TRIGGERS\n"
        "from airflow_provider_kontext.sensors.task import KontextTaskSensor\n"
        "sensor = KontextTaskSensor(task_id='wait', kie_task_ids=['t1', 't2'], deferrable=True)\n"
        "assert sensor.start_from_trigger is AIRFLOW_STARTS_TASKS_FROM_TRIGGERS\n"
        "assert (sensor.start_trigger_args is not None) is AIRFLOW_STARTS_TASKS_FROM_TRIGGERS\n"
        "print(json.dumps({'new': sorted(set(sys.modules) - before)}))\n"
    )
    new = run_python(code)["new"]
    assert isinstance(new, list)
    pulled = sorted({f for f in PARSE_TIME_FORBIDDEN for name in new if name == f or name.startswith(f + ".")})
    assert pulled == [], f"constructing the sensor pulled in {pulled}"
