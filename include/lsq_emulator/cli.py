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

from lsq_emulator.config import (
    DEFAULT_REDIRECT_URL,
    MISSING_LEAD_STATUSES,
    RATE_LIMIT_STYLES,
    Account,
    EmulatorConfig,
    default_accounts,
)
from lsq_emulator.emulator import Emulator
from lsq_emulator.hostile import HOSTILE_KINDS
from lsq_emulator.server import EmulatorServer
from lsq_emulator.store import load_seed_file


def _latency(text: str) -> tuple[float, float]:
    parts = [float(p) for p in text.split(",")]
    if len(parts) == 1:
        return parts[0], parts[0]
    if len(parts) != 2:
        raise argparse.ArgumentTypeError("latency is MIN,MAX or one fixed value (seconds)")
    return parts[0], parts[1]


def _pair(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name.strip() or not value.strip():
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    return name.strip(), value.strip()


def _hostile_rate(text: str) -> tuple[str, float]:
    kind, rate = _pair(text)
    try:
        return kind, float(rate)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: the fraction must be a number") from None


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
    p.add_argument("--fault-trickle", type=float, default=0.0)
    p.add_argument("--trickle-byte-seconds", type=float, default=0.5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--reset-processing-delay",
        "--reset-apply-delay",
        dest="reset_processing_delay",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="an accepted reset is performed this long after its Success answer",
    )
    p.add_argument(
        "--hostile",
        type=_hostile_rate,
        action="append",
        default=[],
        metavar="KIND=FRACTION",
        help=f"answer this fraction of Lead.Reset calls so (repeatable); KIND: {', '.join(HOSTILE_KINDS)}",
    )
    p.add_argument(
        "--hostile-lead",
        type=_pair,
        action="append",
        default=[],
        metavar="LEAD_ID=KIND",
        help="answer every Lead.Reset of this lead with KIND (repeatable)",
    )
    p.add_argument(
        "--redirect-url", default=DEFAULT_REDIRECT_URL, help="redirects point here (the call's path and query appended)"
    )
    p.add_argument(
        "--missing-lead-status",
        type=int,
        choices=MISSING_LEAD_STATUSES,
        default=400,
        help='an unknown lead gets 400 "Lead not found" or 500 "Lead does not exist"',
    )
    p.add_argument(
        "--unperformed-fraction",
        type=float,
        default=0.0,
        help="fraction of accepted resets answered Success but never performed (seeded)",
    )
    p.add_argument(
        "--unperformed-lead",
        action="append",
        default=[],
        metavar="LEAD_ID",
        help="resets of this lead are answered Success but never performed (repeatable)",
    )
    p.add_argument(
        "--failing-lead",
        action="append",
        default=[],
        metavar="LEAD_ID",
        help="Lead.Reset of this lead always answers 500 (repeatable)",
    )
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
        fault_trickle_rate=args.fault_trickle,
        trickle_byte_seconds=args.trickle_byte_seconds,
        seed=args.seed,
        reset_processing_delay_seconds=args.reset_processing_delay,
        region=args.region,
        failing_leads=tuple(args.failing_lead),
        hostile_rates=dict(args.hostile),
        hostile_leads=dict(args.hostile_lead),
        redirect_url=args.redirect_url,
        missing_lead_status=args.missing_lead_status,
        unperformed_reset_fraction=args.unperformed_fraction,
        unperformed_leads=tuple(args.unperformed_lead),
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
