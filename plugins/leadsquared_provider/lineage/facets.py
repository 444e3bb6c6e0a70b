"""Our OpenLineage run facet, ``leadsquaredReset``: a run's window, categories and totals (never a key or a
lead id). Its JSON schema is ``schema/leadsquared-reset-run-facet.json`` in this repository."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import attr
from openlineage.client.facet_v2 import RunFacet

from leadsquared_provider.rules.run_signals import RunSignals

FACET_NAME = "leadsquaredReset"
SCHEMA_FILE = Path(__file__).parent / "schema" / "leadsquared-reset-run-facet.json"
# Where the schema is published: the file above, on the repository's main branch.
SCHEMA_URL = (
    "https://raw.githubusercontent.com/leadsquared-reset/leadsquared-reset/main/"
    "plugins/leadsquared_provider/lineage/schema/leadsquared-reset-run-facet.json#/$defs/LeadSquaredResetRunFacet"
)


@attr.define
class LeadSquaredResetRunFacet(RunFacet):
    """What a reset run did, in counts (see the schema file for each field's meaning)."""

    dryRun: bool
    window: dict[str, str | None]
    categories: dict[str, Any] = attr.field(factory=dict)
    counts: dict[str, int] = attr.field(factory=dict)
    failed: int = 0
    verification: dict[str, int] = attr.field(factory=dict)
    verificationNote: str | None = None
    rateLimitedAnswers: int = 0
    effectiveRatePerWindow: float | None = None

    @staticmethod
    def _get_schema() -> str:
        return SCHEMA_URL

    @classmethod
    def of(cls, signals: RunSignals) -> LeadSquaredResetRunFacet:
        return cls(
            dryRun=signals.dry_run,
            window=signals.window,
            categories=dict(signals.categories),
            counts=dict(signals.counts),
            failed=signals.failed,
            verification=dict(signals.verification),
            verificationNote=signals.verification_note,
            rateLimitedAnswers=signals.rate_limited_answers,
            effectiveRatePerWindow=signals.effective_rate,
        )
