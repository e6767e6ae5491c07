"""The triggerer imports a trigger's module on its event loop: ours must not stall that loop.

Both checks run in a fresh interpreter, since in this one the modules are long imported. The
stall is measured in the loop thread's own CPU time (``time.thread_time``), not wall time, so
a busy machine cannot fail the test and a slow import cannot hide behind a fast one.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

#: CPU the loop thread may spend in one step; importing aiohttp alone takes ~0.5 s.
MAX_LOOP_STALL_SECONDS = 0.15


def run_fresh(code: str) -> str:
    env = {**os.environ, "AIRFLOW_CONN_KONTEXT_IMPORT_PROBE": json.dumps({"conn_type": "kontext", "host": "x"})}
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, env=env, timeout=120, check=False
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout.strip().splitlines()[-1]


def test_importing_the_trigger_module_does_not_import_aiohttp() -> None:
    out = run_fresh(
        """
        import sys
        import airflow.triggers.base
        assert "aiohttp" not in sys.modules, "Airflow itself imported aiohttp; the check would be moot"
        import airflow_provider_kontext.triggers.task
        print(sorted(m for m in sys.modules if m == "aiohttp" or m.endswith("async_client")))
        """
    )
    assert out == "[]"


def test_first_import_and_run_do_not_block_the_loop() -> None:
    out = run_fresh(
        """
        import asyncio, importlib, json, time
        import airflow.triggers.base  # a triggerer has Airflow loaded before any trigger

        async def main():
            stalls = []
            done = asyncio.Event()

            async def probe():
                while not done.is_set():
                    cpu = time.thread_time()
                    await asyncio.sleep(0.005)
                    stalls.append(time.thread_time() - cpu)

            probe_task = asyncio.ensure_future(probe())
            await asyncio.sleep(0.05)
            # What the triggerer does: import the classpath on the loop, then run the trigger.
            module = importlib.import_module("airflow_provider_kontext.triggers.task")
            await asyncio.sleep(0.02)
            trigger = module.KontextTaskTrigger("kontext_import_probe", ["t1"], end_time=time.time() + 60)
            events = [event.payload async for event in trigger.run()]
            done.set()
            await probe_task
            print(json.dumps({"stall": max(stalls), "status": events[0]["status"]}))

        asyncio.run(main())
        """
    )
    result = json.loads(out)
    # The connection has no API key, so the wait ends in an error event, after the client import.
    assert result["status"] == "error"
    assert result["stall"] < MAX_LOOP_STALL_SECONDS, result
