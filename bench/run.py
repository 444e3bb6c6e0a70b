"""Benchmarks of the reset DAG; figures go to ``bench/RESULTS.md``. The command line only.

    python -m bench.run                      # every part (about 25 minutes)
    python -m bench.run --only 1,3,state     # some parts again; the others keep their last figures
    python -m bench.run --render-only        # rewrite RESULTS.md from bench/out/results.json

Parts (:data:`bench.targets.PARTS`): ``parse``, ``planning`` and ``state`` (:mod:`bench.probes`), scenarios
``1``-``4`` (:mod:`bench.scenarios`: real DAG runs under one real scheduler, started once for all of them).
Each part's figures are stored in ``bench/out/results.json`` as it ends and the Markdown is rewritten by
:mod:`bench.report`, which keeps the sections other tools write into RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from importlib.metadata import version
from pathlib import Path
from typing import Any

from bench.report import write_results
from bench.targets import DESIGN, OUT, PART_TITLES, PARTS, PROJECT, RESULTS_JSON, RESULTS_MD


def machine() -> dict[str, Any]:
    mem = next(
        (int(line.split()[1]) * 1024 for line in Path("/proc/meminfo").read_text().splitlines() if "MemTotal" in line),
        None,
    )
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor() or "?",
    )
    others = subprocess.run(["pgrep", "-c", "-f", "airflow scheduler"], capture_output=True, text=True).stdout.strip()
    return {
        "nproc": os.cpu_count(),
        "memory_bytes": mem,
        "cpu": cpu,
        "python": platform.python_version(),
        "airflow": version("apache-airflow"),
        "os": platform.platform(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "other_schedulers": int(others or 0),
    }


def _commit() -> str | None:
    """The checkout's commit (read only), ``+changes`` when its files differ from it."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=PROJECT, capture_output=True, text=True)
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=PROJECT, capture_output=True, text=True)
    except OSError:
        return None
    if head.returncode != 0:
        return None
    return head.stdout.strip() + ("+changes" if dirty.stdout.strip() else "")


def importable() -> None:
    """``devstack`` and ``lsq_emulator`` (include/) and the provider (plugins/) without ``make``'s PYTHONPATH."""
    for folder in ("plugins", "include"):
        path = str(PROJECT / folder)
        if path not in sys.path:
            sys.path.insert(0, path)


def main(argv: Sequence[str] | None = None) -> int:
    importable()
    parser = argparse.ArgumentParser(description="Benchmarks of the reset DAG; writes bench/RESULTS.md.")
    parser.add_argument("--only", default=",".join(PARTS), help=f"comma-separated parts of {', '.join(PARTS)}")
    parser.add_argument("--render-only", action="store_true", help="rewrite RESULTS.md from the stored figures")
    args = parser.parse_args(argv)
    if args.render_only:
        stored = json.loads(RESULTS_JSON.read_text())
        write_results(stored["parts"], stored["info"])
        return 0
    chosen = [p.strip() for p in args.only.split(",") if p.strip()]
    unknown = sorted(set(chosen) - set(PARTS))
    if unknown:
        parser.error(f"unknown part(s) {unknown}; choose from {', '.join(PARTS)}")
    OUT.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = json.loads(RESULTS_JSON.read_text())["parts"] if RESULTS_JSON.exists() else {}
    info = {
        "machine": machine(),
        "date": time.strftime("%Y-%m-%d %H:%M %Z"),
        "args": "" if set(chosen) == set(PARTS) else f" --only {','.join(chosen)}",
    }
    commit = _commit()
    out = OUT / time.strftime("%Y%m%d-%H%M%S")
    out.mkdir(parents=True, exist_ok=True)

    def record(part: str, measure: Callable[[], dict[str, Any]]) -> None:
        started, load = time.monotonic(), os.getloadavg()[0]
        print(f"[bench] {part}: running", flush=True)
        try:
            result = measure()
        except Exception:
            result = {"title": PART_TITLES[part], "error": traceback.format_exc(), "ok": False}
        result["date"] = time.strftime("%Y-%m-%d %H:%M")
        result["seconds"] = round(time.monotonic() - started, 1)
        result["command"] = f"python -m bench.run{info['args']}"
        result["load"] = [round(load, 1), round(os.getloadavg()[0], 1)]
        result["design"] = DESIGN
        result["commit"] = commit
        results[part] = result
        RESULTS_JSON.write_text(json.dumps({"parts": results, "info": info}, indent=1, default=str))
        write_results(results, info)
        print(f"[bench] {part}: {'ok' if result.get('ok') else 'MISS/ERROR'} in {result['seconds']} s", flush=True)

    from bench import probes

    if "parse" in chosen:
        record("parse", lambda: probes.part_parse(out))
    if "planning" in chosen:
        from bench.scenarios import PLANNING_DAY

        record("planning", lambda: probes.part_planning(out, PLANNING_DAY))
    if "state" in chosen:
        record("state", lambda: probes.part_state(out))
    scenarios = [p for p in ("1", "2", "3", "4") if p in chosen]
    if scenarios:
        from bench import scenarios as s
        from bench.session import bench_session

        with bench_session(out) as session:
            jobs: dict[str, Callable[[], dict[str, Any]]] = {
                "1": lambda: s.part_single(session, s.S1, 25, "1"),
                "2": lambda: s.part_single(session, s.S2, 100, "2"),
                "3": lambda: s.part_backfill(session),
                "4": lambda: s.part_naive(session),
            }
            for part in scenarios:
                record(part, jobs[part])
    print(f"[bench] wrote {RESULTS_MD.relative_to(PROJECT)}")
    return 1 if any("error" in results[p] for p in chosen) else 0  # a measured miss is a result, not an error


if __name__ == "__main__":
    sys.exit(main())
