"""What every benchmark shares: the figure it reports, a subprocess emulator, and its entry point.

Each ``benchmarks/bench_*.py`` module defines ``run(quick: bool) -> list[Figure]`` and ends with
``if __name__ == "__main__": bench_main(run)``. The runner (``python -m benchmarks``) starts each
module in a fresh interpreter, so RSS, import times and event loops never leak between benchmarks.

A figure is always a ratio against something measured in the same run (a peer, a floor or a
limit): absolute numbers depend on the machine, ratios much less so.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

__all__ = ["API_KEY", "Figure", "bench_main", "emulator_process", "percentile"]

#: The key every benchmark's emulator accepts; not a secret.
API_KEY = "bench-key"


@dataclass(frozen=True)
class Figure:
    """One line of the results table.

    ``ratio`` is ``ours / reference_value`` (or the achieved fraction of a limit); ``goal`` is how
    the issue states the target (``"<= 0.25"``); ``passed`` says whether this run met it.
    """

    benchmark: str
    metric: str
    ours: float
    reference: str
    reference_value: float
    ratio: float
    goal: str
    passed: bool
    unit: str = ""
    note: str = ""


def percentile(values: list[float], q: float) -> float:
    """The ``q`` quantile (0..1) by nearest rank; 0.0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


@contextlib.contextmanager
def emulator_process(*args: str, http: str = "httptools") -> Iterator[str]:
    """A ``kontext-emulator`` in its own process (so its CPU is not ours); yields its base URL.

    ``args`` are extra CLI flags, e.g. ``"--generation-seconds", "2"``.
    """
    with tempfile.TemporaryDirectory(prefix="kontext-bench-") as tmp:
        ready = Path(tmp) / "ready"
        log = (Path(tmp) / "emulator.log").open("wb")
        cmd = [
            sys.executable, "-m", "airflow_provider_kontext.emulator",
            "--host", "127.0.0.1", "--port", "0", "--api-key", API_KEY, "--http", http,
            "--ready-file", str(ready), *args,
        ]  # fmt: skip
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 30
            while not ready.exists():
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"emulator did not start: {(Path(tmp) / 'emulator.log').read_text()}")
                time.sleep(0.05)
            yield ready.read_text().strip()
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            log.close()


def bench_main(run: Callable[[bool], list[Figure]]) -> None:
    """Entry point of one benchmark module: ``python -m benchmarks.bench_x [--quick] [--json F]``."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="smaller sizes, for a smoke run")
    parser.add_argument("--json", type=Path, default=None, help="write the figures here as JSON")
    args = parser.parse_args()
    os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
    figures = run(args.quick)
    for figure in figures:
        print(json.dumps(asdict(figure)))
    if args.json is not None:
        args.json.write_text(json.dumps([asdict(f) for f in figures], indent=1), encoding="utf-8")
