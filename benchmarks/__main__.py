"""Run every benchmark and write the results table: ``bash benchmarks/run [--quick] [--only NAME ...]``.

Each ``bench_*.py`` runs in its own interpreter (clean RSS, imports and event loop). The table
goes to stdout and, unless ``--quick``/``--only`` is given, between the result markers of
``benchmarks/README.md`` with the machine, the date and the commit.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
START = "<!-- results:start -->"
END = "<!-- results:end -->"


def discover() -> list[str]:
    """Benchmark module names, in file-name order (``bench_1_...`` sorts before ``bench_2_...``)."""
    return sorted(p.stem for p in HERE.glob("bench_*.py"))


def run_one(name: str, quick: bool) -> tuple[list[dict[str, object]], str | None]:
    """Run one benchmark module in a subprocess; its figures, or an error text."""
    with tempfile.TemporaryDirectory(prefix="kontext-bench-") as tmp:
        out = Path(tmp) / "figures.json"
        cmd = [sys.executable, "-m", f"benchmarks.{name}", "--json", str(out)]
        if quick:
            cmd.append("--quick")
        print(f"[bench] {name} ...", flush=True)
        proc = subprocess.run(cmd, cwd=ROOT, check=False)
        if proc.returncode != 0 or not out.exists():
            return [], f"{name} exited with {proc.returncode}"
        return json.loads(out.read_text()), None


def fmt(value: object) -> str:
    if isinstance(value, float):
        if value == 0 or 0.01 <= abs(value) < 100_000:
            return f"{value:.3g}" if abs(value) < 100 else f"{value:,.0f}"
        return f"{value:.3g}"
    return str(value)


def table(figures: list[dict[str, object]]) -> str:
    lines = [
        "| Benchmark | Metric | Ours | Reference | Reference value | Ratio | Goal | Met |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for f in figures:
        unit = f" {f['unit']}" if f.get("unit") else ""
        lines.append(
            f"| {f['benchmark']} | {f['metric']} | {fmt(f['ours'])}{unit} | {f['reference']} | "
            f"{fmt(f['reference_value'])}{unit} | {fmt(f['ratio'])} | {f['goal']} | "
            f"{'yes' if f['passed'] else '**no**'} |"
        )
    notes = [f"- {f['benchmark']}, {f['metric']}: {f['note']}" for f in figures if f.get("note")]
    return "\n".join(lines + (["", *notes] if notes else []))


def header() -> str:
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=False
    ).stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain"], cwd=ROOT, capture_output=True, text=True, check=False)
    if dirty.stdout.strip():
        commit += " (+ uncommitted changes)"
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import airflow

    return (
        f"Machine: {cpu}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"Airflow {airflow.__version__}, {platform.system()} {platform.release()}.  \n"
        f"Date: {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC. Commit: `{commit}`."
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes; does not update the README")
    parser.add_argument("--only", nargs="+", default=None, help="run only these bench modules (name or number)")
    args = parser.parse_args()
    names = discover()
    if args.only:
        names = [n for n in names if any(n == o or n.startswith(f"bench_{o}") or o in n for o in args.only)]
    head = header()  # the commit measured, read before the run (not whatever HEAD is when it ends)
    figures: list[dict[str, object]] = []
    errors: list[str] = []
    for name in names:
        got, error = run_one(name, args.quick)
        figures += got
        if error:
            errors.append(error)
    text = head + "\n\n" + table(figures)
    print("\n" + text)
    if errors:
        print("\n[bench] failed: " + "; ".join(errors), file=sys.stderr)
    if not args.quick and not args.only:
        readme = HERE / "README.md"
        content = readme.read_text(encoding="utf-8")
        before, rest = content.split(START, 1)
        _, after = rest.split(END, 1)
        readme.write_text(f"{before}{START}\n{text}\n{END}{after}", encoding="utf-8")
        print(f"\n[bench] wrote {readme.relative_to(ROOT)}")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
