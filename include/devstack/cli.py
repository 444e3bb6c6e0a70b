"""``make run`` and ``make airflow``: the demo set-up (emulator + embedded SQLite warehouse + local Airflow).

``python -m devstack.cli run``   one real DAG run end to end, then the report.
``python -m devstack.cli ui``    the same set-up left running, with the UI's login printed.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import requests

from demo.seed import demo_window, write_demo
from devstack import (
    PROJECT,
    AirflowStack,
    StackConfig,
    admin_password,
    free_port,
    prepare,
    reset_home,
    start_emulator,
    stop_process,
)

DEMO_DIR = PROJECT / ".demo"
HOME = PROJECT / ".airflow"
# Fake keys of the emulator's demo account: real keys go only into a connection (README).
DEMO_ACCESS_KEY = "u$demo-access"
DEMO_SECRET_KEY = "demo-secret"


def demo_connections(emulator_url: str, warehouse: Path) -> dict[str, dict[str, Any]]:
    return {
        "leadsquared_default": {
            "conn_type": "leadsquared",
            "host": emulator_url,
            "login": DEMO_ACCESS_KEY,
            "password": DEMO_SECRET_KEY,
            "extra": {"rate_limit": 25, "rate_window_seconds": 5, "timeout_seconds": 10, "max_retries": 5},
        },
        "warehouse_default": {"conn_type": "sqlite", "host": str(warehouse)},
    }


def _print_report(stack: AirflowStack, run_id: str, state: str, emulator_url: str) -> None:
    sys.path.insert(0, str(PROJECT / "plugins"))
    from leadsquared_provider.rules.report_text import format_report

    print(f"\nDAG run {run_id}: {state}\n")
    try:
        summary = stack.xcom(run_id, "report")
        print(format_report(summary))
    except RuntimeError:
        print("(the report task returned no summary: see its log in the UI or under .airflow/logs)")
    stats = requests.get(f"{emulator_url}/_emulator/stats", timeout=10).json()
    print(
        f"\nemulator: {stats['calls']} calls, by outcome {stats['by_outcome']}, "
        f"rate-limit rejections {sum(stats['rate_limited'].values())}"
    )


def setup(leads: int) -> tuple[AirflowStack, Any, str]:
    write_demo(DEMO_DIR, count=leads)
    reset_home(HOME)
    emulator_port = free_port()
    emulator_url = f"http://127.0.0.1:{emulator_port}"
    emulator = start_emulator(
        DEMO_DIR / "leads.json",
        emulator_port,
        DEMO_DIR / "emulator.log",
        "--rate-limit",
        "25",
        "--rate-window",
        "5",
        "--latency",
        "0.05,0.2",
    )
    stack = AirflowStack(StackConfig(home=HOME, api_port=free_port(), parallelism=6))
    prepare(stack.env, demo_connections(emulator_url, DEMO_DIR / "warehouse.db"))
    return stack, emulator, emulator_url


def run(leads: int) -> int:
    started = time.monotonic()
    stack, emulator, emulator_url = setup(leads)
    try:
        stack.start()
        stack.wait_for_dag()
        from_date, to_date = demo_window()
        run_id = stack.trigger({"from_date": from_date, "to_date": to_date}, run_id=f"demo__{int(time.time())}")
        print(f"triggered {run_id} (window {from_date} .. {to_date}); waiting for it ...", flush=True)
        state = stack.wait_for_run(run_id)
        _print_report(stack, run_id, state, emulator_url)
        print(f"\nwall time {time.monotonic() - started:.0f} s; Airflow home {HOME}")
        return 0 if state == "success" else 1
    finally:
        stack.stop()
        stop_process(emulator)


def ui(leads: int) -> int:
    stack, emulator, emulator_url = setup(leads)
    try:
        stack.start()
        stack.wait_for_dag()
        print(f"\nAirflow UI: {stack.config.api_url}  login: admin / {admin_password(HOME)}")
        print(f"emulator: {emulator_url}/_emulator/calls   (Ctrl-C stops everything)", flush=True)
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        return 0
    finally:
        stack.stop()
        stop_process(emulator)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=("run", "ui"))
    parser.add_argument("--leads", type=int, default=60)
    args = parser.parse_args()
    sys.exit(run(args.leads) if args.command == "run" else ui(args.leads))


if __name__ == "__main__":
    main()
