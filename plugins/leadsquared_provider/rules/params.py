"""A run's params, declared once in :data:`PARAM_SPECS`.

The table builds the DAG's trigger form (:func:`dag_params`), the typed :class:`RunParams` and
:class:`VerifyParams`, and every range check (the operator's ``max_in_flight`` too): each param has one
default, one range and one parser (:mod:`~leadsquared_provider.rules.kinds`), and each error names it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from leadsquared_provider.exceptions import PlanError
from leadsquared_provider.rules.kinds import ParamError, finite_number, flag, listed, whole_number
from leadsquared_provider.rules.request import AUDIT_TYPES

if TYPE_CHECKING:
    from airflow.sdk import Param

T = TypeVar("T")

# The longest LeadSquared is given to carry a run's resets out; the verify sensor's timeout is read from it.
MAX_VERIFY_DELAY_SECONDS = 6 * 3600
# Between two pokes of the verify task (Airflow advises at least a minute for sensors in reschedule mode).
POKE_INTERVAL_SECONDS = 60


@dataclass(frozen=True, kw_only=True)
class ParamSpec(Generic[T]):
    """One param of the trigger form: its name, default, kind (:meth:`parse`) and form text."""

    name: str
    default: T
    title: str
    description: str | None = None

    def parse(self, raw: object) -> T:
        """``raw`` as this param's kind, in its range. :raises ParamError: naming the param."""
        raise NotImplementedError

    def schema(self) -> dict[str, Any]:
        """The JSON-schema keywords of Airflow's ``Param`` (the form's validation and widget)."""
        raise NotImplementedError

    def read(self, params: Mapping[str, Any]) -> T:
        """This param's value in ``params``; absent or null is the default."""
        raw = params.get(self.name)
        return self.default if raw is None else self.parse(raw)


@dataclass(frozen=True, kw_only=True)
class WholeParam(ParamSpec[int]):
    minimum: int | None = None
    maximum: int | None = None

    def parse(self, raw: object) -> int:
        return whole_number(self.name, raw, minimum=self.minimum, maximum=self.maximum)

    def schema(self) -> dict[str, Any]:
        return _bounded({"type": "integer"}, self.minimum, self.maximum)


@dataclass(frozen=True, kw_only=True)
class NumberParam(ParamSpec[float]):
    minimum: float | None = None
    maximum: float | None = None

    def parse(self, raw: object) -> float:
        return finite_number(self.name, raw, minimum=self.minimum, maximum=self.maximum)

    def schema(self) -> dict[str, Any]:
        return _bounded({"type": "number"}, self.minimum, self.maximum)


@dataclass(frozen=True, kw_only=True)
class FlagParam(ParamSpec[bool]):
    default: bool = False

    def parse(self, raw: object) -> bool:
        return flag(self.name, raw)

    def schema(self) -> dict[str, Any]:
        return {"type": "boolean"}


@dataclass(frozen=True, kw_only=True)
class ListParam(ParamSpec[tuple[object, ...]]):
    """A list whose items the reset scope checks (its messages name the item at fault)."""

    default: tuple[object, ...] = ()
    items: Mapping[str, Any] = field(default_factory=dict)  # the items' JSON schema, for the form

    def parse(self, raw: object) -> tuple[object, ...]:
        return () if raw == "" else tuple(listed(self.name, raw))

    def schema(self) -> dict[str, Any]:
        return {"type": "array", "items": dict(self.items)}


@dataclass(frozen=True, kw_only=True)
class TextParam(ParamSpec[str | None]):
    """Optional text, trimmed; empty is off."""

    default: str | None = None

    def parse(self, raw: object) -> str | None:
        return str(raw).strip() or None

    def schema(self) -> dict[str, Any]:
        return {"type": ["null", "string"]}


@dataclass(frozen=True, kw_only=True)
class WindowBoundParam(ParamSpec[object]):
    """A manual run's window bound, ISO-8601 with an offset; the reset scope parses it (its messages say
    what is wrong with the date), so here it only travels. Empty is absent."""

    default: object = None

    def parse(self, raw: object) -> object:
        return raw if raw != "" else None

    def schema(self) -> dict[str, Any]:
        return {"type": ["null", "string"]}


@dataclass(frozen=True, kw_only=True)
class LeadIdsParam(ParamSpec[tuple[object, ...] | None]):
    """Lead ids instead of the query: a list, or text with one id a line or comma-separated. The plan sets
    aside (and records) those that are not GUIDs."""

    default: tuple[object, ...] | None = None

    def parse(self, raw: object) -> tuple[object, ...] | None:
        ids = raw.replace(",", "\n").splitlines() if isinstance(raw, str) else listed(self.name, raw)
        return tuple(ids) or None

    def schema(self) -> dict[str, Any]:
        return {"type": ["null", "array"], "items": {"type": ["string", "null"]}}


def _bounded(schema: dict[str, Any], minimum: float | None, maximum: float | None) -> dict[str, Any]:
    return schema | {k: v for k, v in (("minimum", minimum), ("maximum", maximum)) if v is not None}


# ---- The table: every param of the trigger form, in its order -------------------------------------------
# The categories' defaults here choose nothing; a DAG gives its own (its account's) to dag_params.
ACTIVITY_EVENT_CODES = ListParam(
    name="activity_event_codes",
    items={"type": "integer"},
    title="Activity event codes",
    description="Custom activities with these event codes are deleted.",
)
TASK_TYPE_IDS = ListParam(
    name="task_type_ids",
    items={"type": "string"},
    title="Task type ids",
    description="Tasks of these task types (GUIDs) are deleted.",
)
AUDIT_TYPES_PARAM = ListParam(
    name="audit_types",
    items={"type": "string", "enum": sorted(AUDIT_TYPES)},
    title="Audit activities",
    description="Audit records of these types are deleted.",
)
DELETE_NOTES = FlagParam(name="delete_notes", title="Delete notes")
FROM_DATE = WindowBoundParam(
    name="from_date",
    title="Window start (manual runs)",
    description="ISO-8601 with an offset, e.g. 2026-05-01T00:00:00+05:30.",
)
TO_DATE = WindowBoundParam(name="to_date", title="Window end, inclusive (manual runs)")
ALLOW_ALL_TIME = FlagParam(
    name="allow_all_time", title="Allow an all-time reset", description="Needed for a manual run without a window."
)
DRY_RUN = FlagParam(name="dry_run", title="Dry run", description="Plan and report; send nothing.")
LEAD_IDS = LeadIdsParam(name="lead_ids", title="Lead ids instead of the query")
MAX_LEADS_PER_RUN = WholeParam(name="max_leads_per_run", default=10_000, minimum=1, title="Blast-radius guard")
MAX_GROWTH_FACTOR = NumberParam(
    name="max_growth_factor",
    default=10,
    minimum=1,
    title="Ask for approval over this x the usual count (median of recent runs)",
)
GROWTH_GUARD_FLOOR = WholeParam(
    name="growth_guard_floor",
    default=100,
    minimum=0,
    title="Runs with at most this many candidates skip the growth guard",
)
# A normal night (hundreds of leads) goes through; a run that would wipe the history of thousands of leads, a
# tenth of the hard refusal (max_leads_per_run), waits for a person first: a few minutes of the rate budget at
# most are at stake below it.
APPROVAL_THRESHOLD = WholeParam(
    name="approval_threshold",
    default=1000,
    minimum=0,
    title="Ask for approval over this many leads",
    description="A run that would reset more leads than this waits in the UI (Required Actions) until a "
    "person approves or rejects it. So do a tripped growth guard, an all-time window, and a window or a "
    "backfill longer than approval_max_window_days. Dry runs never ask.",
)
APPROVAL_MAX_WINDOW_DAYS = WholeParam(
    name="approval_max_window_days",
    default=7,
    minimum=1,
    title="Ask for approval when the window spans more days than this",
    description="Also a backfill: its runs ask when the backfill spans more days than this, whatever each "
    "run's own window; one answer holds for every run of the backfill.",
)
APPROVAL_TIMEOUT_MINUTES = WholeParam(
    name="approval_timeout_minutes",
    default=24 * 60,
    minimum=1,
    maximum=7 * 24 * 60,
    title="Minutes the approval waits before it counts as rejected",
    description="No answer in this time: nothing is sent, the run fails and alerts (default 24 h).",
)
APPROVAL_PREVIEW_ACTIVITIES = FlagParam(
    name="approval_preview_activities",
    title="Show the activities a few leads would lose",
    description="When the run asks for approval, read 5 of its leads' activities first (about 5 calls) "
    "and show how many the reset would delete.",
)
BATCH_SIZE = WholeParam(name="batch_size", default=200, minimum=1, title="Leads per batch")
MAX_IN_FLIGHT = WholeParam(
    name="max_in_flight",
    default=4,
    minimum=1,
    maximum=32,
    title="Requests in flight per batch",
    description="More hides latency; a killed task may repeat at most this many requests.",
)
RETRY_EARLIER_FAILURES = FlagParam(
    name="retry_earlier_failures",
    default=True,
    title="Retry leads that failed in earlier runs",
    description="Leads that failed transiently before are sent again for their original window.",
)
FAILURE_THRESHOLD = WholeParam(
    name="failure_threshold", default=0, minimum=0, title="Failed leads tolerated before the run fails"
)
# Rejected: LeadSquared refused them for good, or the id is not a GUID. Deleted or merged leads are normal,
# and on a small night's run two of them can be a third of the candidates, so a low share would cry wolf;
# when half the ids are refused, the query reads the wrong column, account or region, or stale ids: someone
# must look before the next run.
MAX_REJECTED_SHARE = NumberParam(
    name="max_rejected_share",
    default=0.5,
    minimum=0,
    maximum=1,
    title="Rejected share tolerated",
    description="The run fails when more than this share of the candidates is rejected (deleted, "
    "merged or malformed ids): a few a night are normal, half means the query reads the wrong ids.",
)
AUDIT_EXPORT_TABLE = TextParam(
    name="audit_export_table",
    title="Export the audit to this warehouse table",
    description="Off when empty. Each run's outcomes go there in one bulk write (see docs/audit-export.md).",
)
REFUSE_OVER_DAILY_QUOTA = FlagParam(
    name="refuse_over_daily_quota",
    title="Refuse a run that does not fit today's quota",
    description="With a daily quota on the connection (daily_limit x daily_share): off, the run sends "
    "what fits and defers the rest to the next run (outcome deferred); on, it sends nothing.",
)
VERIFY_SAMPLE = WholeParam(
    name="verify_sample",
    default=20,
    minimum=0,
    maximum=1000,  # 1000 reads (a lead with <= 25 activities): ~3.5 min at 25 calls / 5 s
    title="Queued leads to read back (0: no verification)",
    description="After the batches, this many of the run's queued leads (random, the same on a re-run) "
    "are read back to check that LeadSquared carried their resets out. 20 leads cost about 20 calls "
    "(one per lead with up to 25 activities), a few seconds of the rate budget, and catch a reset queue "
    "that drops 1 lead in 10 with 88 % certainty (1 - 0.9^20); one that drops them all, for sure.",
)
VERIFY_DELAY_SECONDS = WholeParam(
    name="verify_delay_seconds",
    default=300,
    minimum=0,
    maximum=MAX_VERIFY_DELAY_SECONDS,
    title="Seconds LeadSquared gets to carry the resets out",
    description="LeadSquared queues a reset and carries it out later, with no documented delay. "
    "Leads not verified yet are read again every minute until this long after the run's last reset "
    "was queued (the task waits without holding a worker slot); what still remains then is "
    "still_present. 300 s (5 min) lets a busy queue catch up, yet keeps the run short; leads "
    "verified earlier end the wait earlier.",
)
MAX_STILL_PRESENT = WholeParam(
    name="max_still_present",
    default=0,
    minimum=0,
    title="Sampled leads still holding their activities tolerated",
    description="The run fails (and alerts) when more sampled leads than this still hold activities "
    "their reset was to delete: LeadSquared accepted those resets but did not carry them out.",
)

CATEGORY_SPECS: tuple[ListParam | FlagParam, ...] = (
    ACTIVITY_EVENT_CODES,
    TASK_TYPE_IDS,
    AUDIT_TYPES_PARAM,
    DELETE_NOTES,
)
PARAM_SPECS: tuple[ParamSpec[Any], ...] = (
    *CATEGORY_SPECS,
    FROM_DATE,
    TO_DATE,
    ALLOW_ALL_TIME,
    DRY_RUN,
    LEAD_IDS,
    MAX_LEADS_PER_RUN,
    MAX_GROWTH_FACTOR,
    GROWTH_GUARD_FLOOR,
    APPROVAL_THRESHOLD,
    APPROVAL_MAX_WINDOW_DAYS,
    APPROVAL_TIMEOUT_MINUTES,
    APPROVAL_PREVIEW_ACTIVITIES,
    BATCH_SIZE,
    MAX_IN_FLIGHT,
    RETRY_EARLIER_FAILURES,
    FAILURE_THRESHOLD,
    MAX_REJECTED_SHARE,
    AUDIT_EXPORT_TABLE,
    REFUSE_OVER_DAILY_QUOTA,
    VERIFY_SAMPLE,
    VERIFY_DELAY_SECONDS,
    MAX_STILL_PRESENT,
)


def dag_params(defaults: Mapping[str, Any] | None = None) -> dict[str, Param]:
    """The DAG's trigger form: one Airflow ``Param`` per spec. ``defaults`` overrides the defaults of some
    (a DAG's categories: its account's); each is checked as the param's own value would be.

    :raises ParamError: an override is not a valid value of its param, or names no param.
    """
    from airflow.sdk import Param

    defaults = dict(defaults or {})
    unknown = sorted(set(defaults) - {spec.name for spec in PARAM_SPECS})
    if unknown:
        raise ParamError("the defaults given to dag_params", "names of params", unknown)
    form = {}
    for spec in PARAM_SPECS:
        value = spec.parse(defaults[spec.name]) if defaults.get(spec.name) is not None else spec.default
        form[spec.name] = Param(
            list(value) if isinstance(value, tuple) else value,
            description=spec.description,
            title=spec.title,
            **spec.schema(),
        )
    return form


@dataclass(frozen=True)
class VerifyParams:
    """The verify step's params: how many queued leads to read back, how long LeadSquared is given to carry
    the resets out, and how many leads may still hold their activities before the run fails."""

    sample: int = VERIFY_SAMPLE.default
    delay_seconds: int = VERIFY_DELAY_SECONDS.default
    max_still_present: int = MAX_STILL_PRESENT.default

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> VerifyParams:
        """:raises PlanError: a param is not a whole number within its bounds (the message names it)."""
        try:
            return _verify_params(params)
        except ParamError as refused:
            raise PlanError(f"param {refused}") from None


def _verify_params(params: Mapping[str, Any]) -> VerifyParams:
    return VerifyParams(
        sample=VERIFY_SAMPLE.read(params),
        delay_seconds=VERIFY_DELAY_SECONDS.read(params),
        max_still_present=MAX_STILL_PRESENT.read(params),
    )


@dataclass(frozen=True)
class RunParams:
    """The params a run's plan and report read (the DAG's trigger form)."""

    categories: dict[str, Any] = field(default_factory=dict)
    from_date: object = FROM_DATE.default
    to_date: object = TO_DATE.default
    allow_all_time: bool = ALLOW_ALL_TIME.default
    dry_run: bool = DRY_RUN.default
    lead_ids: tuple[object, ...] | None = LEAD_IDS.default
    max_leads_per_run: int = MAX_LEADS_PER_RUN.default
    max_growth_factor: float = MAX_GROWTH_FACTOR.default
    growth_guard_floor: int = GROWTH_GUARD_FLOOR.default
    approval_threshold: int = APPROVAL_THRESHOLD.default
    approval_max_window_days: int = APPROVAL_MAX_WINDOW_DAYS.default
    approval_timeout_minutes: int = APPROVAL_TIMEOUT_MINUTES.default
    approval_preview_activities: bool = APPROVAL_PREVIEW_ACTIVITIES.default
    batch_size: int = BATCH_SIZE.default
    max_in_flight: int = MAX_IN_FLIGHT.default
    retry_earlier_failures: bool = RETRY_EARLIER_FAILURES.default
    failure_threshold: int = FAILURE_THRESHOLD.default
    max_rejected_share: float = MAX_REJECTED_SHARE.default
    audit_export_table: str | None = AUDIT_EXPORT_TABLE.default
    # True: a run whose candidates do not fit in what is left of today's quota is refused; False: it sends
    # what fits and defers the rest to the next run.
    refuse_over_daily_quota: bool = REFUSE_OVER_DAILY_QUOTA.default
    verify_sample: int = VERIFY_SAMPLE.default  # reads the verification will spend of today's quota

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> RunParams:
        """Every param of ``params`` read by its spec, the verify step's too: a bad one is refused here,
        before anything is sent.

        :raises PlanError: a param is not of its kind or out of its range (the message names it).
        """
        try:
            verify = _verify_params(params)
            return cls(
                categories={spec.name: spec.read(params) for spec in CATEGORY_SPECS},
                from_date=FROM_DATE.read(params),
                to_date=TO_DATE.read(params),
                allow_all_time=ALLOW_ALL_TIME.read(params),
                dry_run=DRY_RUN.read(params),
                lead_ids=LEAD_IDS.read(params),
                max_leads_per_run=MAX_LEADS_PER_RUN.read(params),
                max_growth_factor=MAX_GROWTH_FACTOR.read(params),
                growth_guard_floor=GROWTH_GUARD_FLOOR.read(params),
                approval_threshold=APPROVAL_THRESHOLD.read(params),
                approval_max_window_days=APPROVAL_MAX_WINDOW_DAYS.read(params),
                approval_timeout_minutes=APPROVAL_TIMEOUT_MINUTES.read(params),
                approval_preview_activities=APPROVAL_PREVIEW_ACTIVITIES.read(params),
                batch_size=BATCH_SIZE.read(params),
                max_in_flight=MAX_IN_FLIGHT.read(params),
                retry_earlier_failures=RETRY_EARLIER_FAILURES.read(params),
                failure_threshold=FAILURE_THRESHOLD.read(params),
                max_rejected_share=MAX_REJECTED_SHARE.read(params),
                audit_export_table=AUDIT_EXPORT_TABLE.read(params),
                refuse_over_daily_quota=REFUSE_OVER_DAILY_QUOTA.read(params),
                verify_sample=verify.sample,
            )
        except ParamError as refused:
            raise PlanError(f"param {refused}; nothing was sent") from None
