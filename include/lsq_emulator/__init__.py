"""A local emulator of LeadSquared's Lead.Reset API (and the reads around it) as a real HTTP server.

Behaves as ``shared/leadsquared-api.md`` describes: header or query-string keys, admin-only resets,
per-account sliding-window rate limits answered as HTTP 429, 200 or 403, LeadSquared error bodies,
queued resets performed after ``reset_processing_delay_seconds`` (or never, as a seeded or per-lead
fault), seeded faults (500, hang then 504, dropped connection, HTML 502, non-JSON 200), hostile answers
(redirects, 200 bodies that are not a Success, 403 permission denied, odd error bodies; see
:mod:`lsq_emulator.hostile`), latency, and ProspectActivity.Retrieve to verify resets. Inspection
endpoints live under ``/_emulator/``.

    with run_emulator(EmulatorConfig(rate_limit=5), leads=[...]) as emu:
        requests.post(f"{emu.base_url}/v2/LeadManagement.svc/Lead.Reset", ...)
        emu.calls(); emu.stats(); emu.resets(); emu.lead(lead_id)
"""

from lsq_emulator.config import Account, EmulatorConfig, api_host
from lsq_emulator.emulator import Emulator
from lsq_emulator.hostile import HOSTILE_KINDS
from lsq_emulator.server import EmulatorServer, run_emulator
from lsq_emulator.store import load_seed_file

__all__ = [
    "HOSTILE_KINDS",
    "Account",
    "Emulator",
    "EmulatorConfig",
    "EmulatorServer",
    "api_host",
    "load_seed_file",
    "run_emulator",
]
