"""The lead store: leads with their activities, audits, tasks and notes, and the resets accepted on them.

Not thread-safe by itself; :class:`lsq_emulator.emulator.Emulator` holds the lock around it.
"""

from __future__ import annotations

import copy
import json
import re
import time
import uuid
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

LSQ_DATE_FORMAT = "%Y-%m-%d %H:%M:%S"
RECORD_KINDS = ("activities", "audits", "tasks", "notes")
AUDIT_TYPES = frozenset({"StageChange", "OwnerChange"})
_DATE_SHAPE = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}$")
_KIND_KEY = {"activities": "ActivityEvent", "audits": "Type", "tasks": "TaskTypeId"}
PENDING, PERFORMED, UNPERFORMED = "pending", "performed", "unperformed"
RESET_STATES = (PENDING, PERFORMED, UNPERFORMED)


def parse_lsq_date(value: object) -> datetime:
    """Parse ``YYYY-MM-DD HH:MM:SS`` strictly; raise ``ValueError`` on anything else."""
    if not isinstance(value, str) or not _DATE_SHAPE.match(value):
        raise ValueError(f"{value!r} is not a date in the form YYYY-MM-DD HH:MM:SS")
    return datetime.strptime(value, LSQ_DATE_FORMAT)


def load_seed_file(path: str | Path) -> list[dict[str, Any]]:
    """Read leads from a JSON file holding ``{"leads": [...]}`` (a bare list is accepted too)."""
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    leads = data.get("leads") if isinstance(data, dict) else data
    if not isinstance(leads, list):
        raise ValueError(f'{path}: expected {{"leads": [...]}}')
    return leads


def normalize_lead(raw: dict[str, Any]) -> dict[str, Any]:
    """Check a seed lead and fill in missing record lists and record ids (stable, derived from the lead)."""
    if not isinstance(raw, dict):
        raise ValueError(f"a lead must be a JSON object, got {type(raw).__name__}")
    lead = copy.deepcopy(raw)
    lead_id = lead.get("ProspectId")
    if not isinstance(lead_id, str) or not lead_id.strip():
        raise ValueError(f"lead without a ProspectId: {raw!r:.200}")
    if lead.get("CreatedOn") is not None:
        parse_lsq_date(lead["CreatedOn"])
    for kind in RECORD_KINDS:
        records = lead.get(kind) or []
        if not isinstance(records, list):
            raise ValueError(f"lead {lead_id}: {kind} must be a list")
        for index, record in enumerate(records):
            if not isinstance(record, dict):
                raise ValueError(f"lead {lead_id}: {kind}[{index}] must be an object")
            try:
                parse_lsq_date(record.get("CreatedOn"))
            except ValueError as exc:
                raise ValueError(f"lead {lead_id}: {kind}[{index}].CreatedOn: {exc}") from None
            key = _KIND_KEY.get(kind)
            if key and key not in record:
                raise ValueError(f"lead {lead_id}: {kind}[{index}] has no {key}")
            record.setdefault("Id", str(uuid.uuid5(uuid.NAMESPACE_URL, f"{lead_id.lower()}/{kind}/{index}")))
        lead[kind] = records
    return lead


@dataclass(frozen=True)
class ResetOrder:
    """A validated Lead.Reset body: which kinds to delete and in which window (``None``: all time)."""

    prospect_id: str
    task_types: frozenset[str]
    activity_events: frozenset[int]
    audit_types: frozenset[str]
    delete_notes: bool
    from_date: datetime | None
    to_date: datetime | None


@dataclass
class AcceptedReset:
    """A reset answered Success: ``pending`` until ``due`` (monotonic), then ``performed``; or
    ``unperformed`` from the start when a fault decided it never happens."""

    seq: int
    lead_id: str
    order: ResetOrder
    accepted_at: float
    delay: float
    due: float
    state: str

    def public(self) -> dict[str, Any]:
        """What the inspection API shows: call seq, lead, state, wall-clock acceptance and due times."""
        return {
            "seq": self.seq,
            "lead_id": self.lead_id,
            "state": self.state,
            "accepted_at": self.accepted_at,
            "due_at": self.accepted_at + self.delay,
        }


class LeadStore:
    """Leads keyed by lower-cased ProspectId, plus every accepted reset and those still pending."""

    def __init__(self) -> None:
        self._leads: dict[str, dict[str, Any]] = {}
        self._resets: dict[int, AcceptedReset] = {}
        self._pending: list[AcceptedReset] = []

    def add(self, leads: list[dict[str, Any]]) -> int:
        """Add or replace leads (validated first, all or none); return how many."""
        normalized = [normalize_lead(raw) for raw in leads]
        for lead in normalized:
            self._leads[lead["ProspectId"].strip().lower()] = lead
        return len(normalized)

    def get(self, lead_id: str, now: float) -> dict[str, Any] | None:
        """The lead as it is at monotonic time ``now`` (a copy), or ``None``."""
        self.apply_due(now)
        lead = self._leads.get(lead_id.strip().lower())
        return copy.deepcopy(lead) if lead is not None else None

    def all(self, now: float) -> list[dict[str, Any]]:
        """Every lead (copies), in insertion order."""
        self.apply_due(now)
        return copy.deepcopy(list(self._leads.values()))

    def canonical_id(self, lead_id: str) -> str | None:
        """The lead's ProspectId as seeded, or ``None`` if unknown."""
        lead = self._leads.get(lead_id.strip().lower())
        return lead["ProspectId"] if lead is not None else None

    def accept(self, seq: int, order: ResetOrder, now: float, delay: float, *, performs: bool) -> AcceptedReset:
        """Record the reset accepted by call ``seq`` at monotonic ``now``; it is performed ``delay`` s later
        (at once when 0), or never when ``performs`` is false."""
        lead_id = self.canonical_id(order.prospect_id) or order.prospect_id
        state = PENDING if performs else UNPERFORMED
        reset = AcceptedReset(seq, lead_id, order, time.time(), delay, now + delay, state)
        self._resets[seq] = reset
        if performs:
            self._pending.append(reset)
            self.apply_due(now)
        return reset

    def apply_due(self, now: float) -> int:
        """Perform, in acceptance order, every pending reset whose time has come; return how many."""
        ready = [r for r in self._pending if r.due <= now]
        if not ready:
            return 0
        self._pending = [r for r in self._pending if r.due > now]
        for reset in ready:
            self._apply(reset.order)
            reset.state = PERFORMED
        return len(ready)

    def resets(self, now: float) -> list[AcceptedReset]:
        """Every accepted reset in acceptance order, due ones performed first (the objects, not copies)."""
        self.apply_due(now)
        return list(self._resets.values())

    @property
    def pending_count(self) -> int:
        """How many resets are accepted but not yet performed (unperformed ones excluded)."""
        return len(self._pending)

    def _apply(self, order: ResetOrder) -> None:
        lead = self._leads.get(order.prospect_id.strip().lower())
        if lead is None:
            return
        low, high = order.from_date, order.to_date
        if low is None and lead.get("CreatedOn"):
            low = parse_lsq_date(lead["CreatedOn"])
        task_types = {t.lower() for t in order.task_types}

        def in_window(record: dict[str, Any]) -> bool:
            moment = parse_lsq_date(record["CreatedOn"])
            return (low is None or moment >= low) and (high is None or moment <= high)

        def chosen(kind: str, record: dict[str, Any]) -> bool:
            if kind == "activities":
                return record.get("ActivityEvent") in order.activity_events
            if kind == "audits":
                return record.get("Type") in order.audit_types
            if kind == "tasks":
                return str(record.get("TaskTypeId", "")).lower() in task_types
            return order.delete_notes

        for kind in RECORD_KINDS:
            lead[kind] = [r for r in lead[kind] if not (chosen(kind, r) and in_window(r))]
