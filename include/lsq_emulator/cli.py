"""Command line: serve the emulator until SIGTERM/SIGINT, writing the bound port to ``--port-file``."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
from pathlib import Path
from types import FrameType

from lsq_emulator.config import RATE_LIMIT_STYLES, Account, EmulatorConfig, default_accounts
from lsq_emulator.emulator import Emulator
from lsq_emulator.server import EmulatorServer
from lsq_emulator.store import load_seed_file


def _latency(text: str) -> tuple[float, float]:
    parts = [float(p) for p in text.split(",")]
    if len(parts) == 1:
        return parts[0], parts[0]
    if len(parts) != 2:
        raise argparse.ArgumentTypeError("latency is MIN,MAX or one fixed value (seconds)")
    return parts[0], parts[1]


def build_parser() -> argparse.ArgumentParser:
    """The command's options; defaults are EmulatorConfig's."""
    p = argparse.ArgumentParser(prog="python -m lsq_emulator", description=__doc__)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0, help="0 picks a free port")
    p.add_argument("--port-file", type=Path, help="write the bound port here once listening")
    p.add_argument("--seed-file", type=Path, help='JSON file {"leads": [...]}')
    p.add_argument("--accounts-file", type=Path, help="JSON list of Account fields")
    p.add_argument("--region", default="in21")
    p.add_argument("--rate-limit", type=int, default=25)
    p.add_argument("--rate-window", type=float, default=5.0)
    p.add_argument("--rate-limit-style", choices=RATE_LIMIT_STYLES, default="429")
    p.add_argument("--latency", type=_latency, default=(0.0, 0.0), help="MIN,MAX seconds")
    p.add_argument("--fault-5xx", type=float, default=0.0)
    p.add_argument("--fault-timeout", type=float, default=0.0)
    p.add_argument("--fault-drop", type=float, default=0.0)
    p.add_argument("--fault-html", type=float, default=0.0)
    p.add_argument("--fault-non-json", type=float, default=0.0)
    p.add_argument("--rate-limit-burst", type=float, default=0.0)
    p.add_argument("--hang-seconds", type=float, default=30.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--reset-apply-delay", type=float, default=0.0)
    return p


def config_from_args(args: argparse.Namespace) -> EmulatorConfig:
    """Turn parsed options into an :class:`EmulatorConfig`."""
    accounts = default_accounts()
    if args.accounts_file:
        raw = json.loads(args.accounts_file.read_text(encoding="utf-8"))
        if not isinstance(raw, list):
            raise ValueError(f"{args.accounts_file}: expected a JSON list of accounts")
        accounts = [Account.from_dict(item) for item in raw]
    return EmulatorConfig(
        accounts=accounts,
        rate_limit=args.rate_limit,
        rate_window_seconds=args.rate_window,
        rate_limit_style=args.rate_limit_style,
        latency=args.latency,
        fault_5xx_rate=args.fault_5xx,
        fault_timeout_rate=args.fault_timeout,
        fault_drop_rate=args.fault_drop,
        fault_html_rate=args.fault_html,
        fault_non_json_200_rate=args.fault_non_json,
        rate_limit_burst_rate=args.rate_limit_burst,
        hang_seconds=args.hang_seconds,
        seed=args.seed,
        reset_apply_delay=args.reset_apply_delay,
        region=args.region,
    )


def _write_atomically(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> int:
    """Run the emulator until a signal; return the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        config = config_from_args(args)
        leads = load_seed_file(args.seed_file) if args.seed_file else []
        emulator = Emulator(config, leads)
    except (OSError, ValueError, TypeError) as exc:
        parser.error(str(exc))
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    server = EmulatorServer(emulator, args.host, args.port)
    base_url = server.start()
    try:
        if args.port_file:
            _write_atomically(args.port_file, f"{server.port}\n")
        print(base_url, flush=True)
        print(
            f"lsq_emulator: {len(leads)} lead(s), rate limit {config.rate_limit}/{config.rate_window_seconds:g}s "
            f"({config.rate_limit_style}); inspection at {base_url}/_emulator/",
            file=sys.stderr,
            flush=True,
        )
        while not stop.wait(0.5):
            pass
    finally:
        server.stop()
    return 0
