"""The state store: runs, scopes, candidates, claims and the audit, in our own database, never the warehouse.

A connection (``leadsquared_state``) of type ``sqlite`` (one machine) or ``postgres`` (CeleryExecutor, several
machines). Written with SQLAlchemy Core (installed with Airflow): the tables are defined once in
:mod:`leadsquared_provider.store.schema`, upserts use each dialect's ``INSERT ... ON CONFLICT``, and no SQL
text is assembled at run time. Like the per-row sync state that Hightouch, Census and dlt keep in their own
store, this is written once or twice per lead; a warehouse sees at most one bulk export per run.

SQLite runs in WAL mode, every transaction taking the write lock at ``BEGIN IMMEDIATE`` (waiting up to a
minute for it, or the connection's ``busy_timeout_seconds``), so concurrent task processes serialize their
short transactions instead of failing.

Claims live by the store's clock (PostgreSQL's ``clock_timestamp()``; for SQLite, the one machine's clock),
never a worker's: a worker whose clock runs ahead cannot see a live claim as expired. An expired claim is
taken over only when it is seen expired and unchanged twice, ``grace`` seconds apart by the store's clock:
an owner whose heartbeat waited on a locked or unreachable store gets that long to land it once the store
answers again, however long the store was held.
"""

from __future__ import annotations

import itertools
import json
import statistics
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from sqlalchemy import Float, and_, case, cast, delete, exists, func, literal, or_, select, true, update

from leadsquared_provider import DEFAULT_STATE_CONN_ID
from leadsquared_provider.rules.outcomes import SETTLED_OUTCOMES, UNRESOLVED_OUTCOMES, Outcome, ResetResult, redacted
from leadsquared_provider.rules.planning import INTERVAL_RUN_TYPES
from leadsquared_provider.store import schema as t

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection, Engine

STATE_CONN_ID = DEFAULT_STATE_CONN_ID
CARRY_OVER_MAX_RUNS = 3
# A run whose report never ran is closed for carry-over once it is this old (its tasks are long gone).
STALE_RUN_SECONDS = 24 * 3600
_IN_CHUNK = 500
SQLITE_BUSY_SECONDS = 60.0  # the default wait for SQLite's write lock (extra busy_timeout_seconds)

_engines: dict[str, Engine] = {}
_schema_ready: set[str] = set()
_engines_lock = threading.Lock()


class StateStoreError(RuntimeError):
    """The state store cannot be used (bad connection, newer schema)."""


def run_key(dag_id: str, run_id: str) -> str:
    return f"{dag_id}/{run_id}"


# The growth guard compares a run with the median of this many earlier runs of the DAG.
GROWTH_BASELINE_RUNS = 5


@dataclass(frozen=True)
class RunRecord:
    run_key: str
    dag_id: str
    run_id: str
    scope: dict[str, Any]
    scope_key: str
    dry_run: bool
    candidates: int
    invalid: int
    batches: int
    batch_size: int
    carried_over: int = 0
    run_type: str | None = None  # Airflow's DagRunType value: "scheduled", "backfill", "manual", ...
    leadsquared_conn_id: str | None = None  # the account's connection (None: planned before schema 3)
    account: str | None = None  # the account's tag, learnt by the plan (None: a dry run, or before schema 3)
    deferred: int = 0  # the last staged leads, in no batch: over today's share of the daily quota

    @property
    def batched(self) -> int:
        """The staged leads that the batches cover (its own and carried over, less the deferred)."""
        return self.candidates + self.carried_over - self.deferred

    def batch(self, number: int) -> dict[str, int]:
        """The bounds of batch ``number`` among the run's staged candidates (its own and carried over)."""
        from leadsquared_provider.rules.planning import batch_bounds

        return batch_bounds(number, self.batch_size, self.batched)


@dataclass(frozen=True)
class ClaimOwner:
    """Who holds a claim: one sender (one try of one batch, in one process)."""

    owner_id: str
    run_key: str
    batch: int
    try_number: int
    hostname: str
    pid: int

    def describe(self) -> str:
        return f"run {self.run_key}, batch {self.batch}, try {self.try_number} on {self.hostname} pid {self.pid}"


class ClaimStatus(StrEnum):
    OURS = "ours"  # inserted: nobody held the lead
    TAKEN_OVER = "taken_over"  # an expired claim: its owner died, maybe mid-request
    SETTLED = "settled"  # queued or refused for good under this scope: never send again
    HELD = "held"  # a live owner holds it
    EXPIRED = "expired"  # seen expired once: taken over if still so, unchanged, ``grace`` seconds later


@dataclass(frozen=True)
class Sighting:
    """An expired claim as seen at ``seen_at`` (the store's clock): whose it was and until when."""

    owner_id: str
    expires_at: float
    seen_at: float


@dataclass(frozen=True)
class Claim:
    status: ClaimStatus
    detail: str = ""
    sighting: Sighting | None = None  # EXPIRED: pass it back to the next claim of the lead
    # Ours, and an earlier attempt at this lead and window (any run or try) got no answer that was read:
    # sending it now may repeat a reset LeadSquared already queued.
    after_unread: bool = False

    @property
    def possibly_repeats(self) -> bool:
        return self.status is ClaimStatus.TAKEN_OVER or self.after_unread


@dataclass(frozen=True)
class BatchScope:
    """What every audit row of one batch shares."""

    run_key: str
    dag_id: str
    batch: int
    scopes: Mapping[str, Mapping[str, Any]]


def _engine_for(conn_id: str) -> tuple[Engine, str]:
    """The process's engine for the connection (one pool per database), and its cache key."""
    from airflow.sdk import BaseHook
    from sqlalchemy import create_engine, event

    conn = BaseHook.get_connection(conn_id)
    cache_key = f"{conn_id}|{conn.conn_type}|{conn.host}|{conn.port}|{conn.schema}|{conn.login}"
    with _engines_lock:
        if cache_key in _engines:
            return _engines[cache_key], cache_key
        if conn.conn_type == "sqlite":
            if not conn.host:
                raise StateStoreError(f"state store connection {conn_id!r} (sqlite) needs the file path as host")
            busy = _busy_timeout(conn_id, conn.extra_dejson.get("busy_timeout_seconds", SQLITE_BUSY_SECONDS))
            engine = create_engine(f"sqlite:///{conn.host}", connect_args={"timeout": busy, "check_same_thread": False})

            @event.listens_for(engine, "connect")
            def _sqlite_connect(dbapi_conn: Any, _record: Any) -> None:
                dbapi_conn.isolation_level = None  # SQLAlchemy emits BEGIN itself (below)
                dbapi_conn.execute("PRAGMA journal_mode = WAL")
                dbapi_conn.execute(f"PRAGMA busy_timeout = {int(busy * 1000)}")

            @event.listens_for(engine, "begin")
            def _sqlite_begin(connection: Any) -> None:
                connection.exec_driver_sql("BEGIN IMMEDIATE")

        elif conn.conn_type in ("postgres", "postgresql"):
            from airflow.providers.postgres.hooks.postgres import PostgresHook

            engine = PostgresHook(postgres_conn_id=conn_id).get_sqlalchemy_engine(
                engine_kwargs={"pool_pre_ping": True, "pool_size": 2, "max_overflow": 4}
            )
        else:
            raise StateStoreError(
                f"state store connection {conn_id!r} is of type {conn.conn_type!r}: use sqlite (one machine) "
                "or postgres (several machines, CeleryExecutor)"
            )
        _engines[cache_key] = engine
        return engine, cache_key


def _busy_timeout(conn_id: str, value: Any) -> float:
    """The SQLite connection's ``busy_timeout_seconds`` extra: how long a transaction waits for the write lock."""
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        seconds = float("nan")
    if not 0.1 <= seconds <= 3600:  # also refuses nan and inf
        raise StateStoreError(
            f"state store connection {conn_id!r}: extra busy_timeout_seconds must be a number of seconds from "
            f"0.1 to 3600, got {value!r}"
        )
    return seconds


def store_now(dialect: str) -> Any:
    """The store's clock as a SQL expression (seconds since the epoch): claims live and expire by it."""
    if dialect == "postgresql":
        return cast(func.extract("epoch", func.clock_timestamp()), Float)
    # SQLite is one machine's file: its clock is that machine's, the same for every process using it.
    return (func.julianday("now") - 2440587.5) * 86400.0


def _migrate(conn: Any, found: int) -> None:
    """Bring a store of schema version ``found`` up to :data:`SCHEMA_VERSION`, one step per version."""
    from sqlalchemy import text

    if found < 2:  # the runs' type, for the growth guard's baseline (earlier runs stay NULL: any type)
        conn.execute(text(f"ALTER TABLE {t.runs.name} ADD COLUMN run_type VARCHAR(32)"))
        conn.execute(text(f"ALTER TABLE {t.audit.name} ADD COLUMN unread BOOLEAN NOT NULL DEFAULT FALSE"))
    if found < 3:  # claims settled before: final, as they were; earlier runs' connection: unknown
        conn.execute(text(f"ALTER TABLE {t.claims.name} ADD COLUMN final BOOLEAN NOT NULL DEFAULT TRUE"))
        conn.execute(text(f"ALTER TABLE {t.runs.name} ADD COLUMN leadsquared_conn_id VARCHAR(250)"))
        conn.execute(text(f"ALTER TABLE {t.runs.name} ADD COLUMN account VARCHAR(64)"))
        conn.execute(text(f"ALTER TABLE {t.runs.name} ADD COLUMN deferred INTEGER NOT NULL DEFAULT 0"))
    conn.execute(update(t.schema_version).where(t.schema_version.c.id == 1).values(version=t.SCHEMA_VERSION))


def state_is_machine_local(conn_id: str) -> bool:
    """Whether the state store connection is an SQLite file, which only one machine's processes share."""
    from airflow.sdk import BaseHook

    return BaseHook.get_connection(conn_id).conn_type == "sqlite"


def _insert(dialect: str, table: t.Table) -> Any:
    """The dialect's INSERT, which has ``on_conflict_do_nothing``/``on_conflict_do_update``."""
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    return insert(table)


def _window_end(scope: Mapping[str, Any]) -> float | None:
    """The scope's window end (exclusive: one second after its inclusive ``to_date``) in epoch seconds;
    ``None`` for a window without an end (all-time), which never closes."""
    from datetime import UTC, datetime

    to_date = scope.get("to_date")
    if not to_date:
        return None
    last = datetime.fromisoformat(str(to_date))
    return (last if last.tzinfo else last.replace(tzinfo=UTC)).timestamp() + 1


def _take_claim(conn: Connection, row: Mapping[str, Any], holder: str, *still: Any, **extra: Any) -> bool:
    """Make the lead's claim ``row`` (ours) if ``holder`` still holds it as seen (``still``); True if taken."""
    k = t.claims
    mine = {name: value for name, value in row.items() if name not in ("lead_id", "scope_key")}
    where = (k.c.lead_id == row["lead_id"], k.c.scope_key == row["scope_key"], k.c.owner_id == holder, *still)
    return conn.execute(update(k).where(*where).values(**mine, **extra)).rowcount == 1


def _owner_columns(owner: ClaimOwner) -> dict[str, Any]:
    return {
        "owner_id": owner.owner_id,
        "run_key": owner.run_key,
        "batch": owner.batch,
        "try_number": owner.try_number,
        "hostname": owner.hostname[:250],
        "pid": owner.pid,
    }


def _utc_text(iso: str | None) -> str | None:
    return iso[:19].replace("T", " ") if iso else None


def _categories(scope: Mapping[str, Any]) -> str:
    picked = {k: scope[k] for k in ("activity_event_codes", "task_type_ids", "audit_types", "delete_notes")}
    return json.dumps(picked, sort_keys=True)


class StateStore:
    """Reads and writes the state tables. Use as a context manager: ``with StateStore() as store: ...``."""

    def __init__(self, conn_id: str = STATE_CONN_ID) -> None:
        self.conn_id = conn_id
        self._engine: Engine | None = None
        self._cache_key = ""

    def __enter__(self) -> StateStore:
        self.ensure_schema()
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            self._engine, self._cache_key = _engine_for(self.conn_id)
        return self._engine

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def _begin(self) -> Any:
        return self.engine.begin()

    # -- schema -------------------------------------------------------------------------------------

    def ensure_schema(self) -> None:
        """Create the tables on first use and check the schema's version (once per process)."""
        engine = self.engine
        if self._cache_key in _schema_ready:
            return
        with engine.begin() as conn:
            if self.dialect == "postgresql":  # concurrent first runs must not race on CREATE TABLE
                conn.execute(select(func.pg_advisory_xact_lock(0x4C5351)))
            t.metadata.create_all(conn, checkfirst=True)
            found = conn.execute(select(t.schema_version.c.version).where(t.schema_version.c.id == 1)).scalar()
            if found is None:
                conn.execute(t.schema_version.insert().values(id=1, version=t.SCHEMA_VERSION))
            elif found > t.SCHEMA_VERSION:
                raise StateStoreError(
                    f"state store {self.conn_id!r} has schema version {found}, newer than this provider's "
                    f"{t.SCHEMA_VERSION}: upgrade the provider on every worker"
                )
            elif found < t.SCHEMA_VERSION:
                _migrate(conn, found)
        _schema_ready.add(self._cache_key)

    # -- planning -----------------------------------------------------------------------------------

    def save_scope(self, scope_key: str, scope: Mapping[str, Any]) -> None:
        stmt = _insert(self.dialect, t.scopes).values(scope_key=scope_key, scope_json=json.dumps(scope, sort_keys=True))
        with self._begin() as conn:
            conn.execute(stmt.on_conflict_do_nothing(index_elements=["scope_key"]))

    def load_scopes(self, scope_keys: Iterable[str]) -> dict[str, dict[str, Any]]:
        keys = sorted(set(scope_keys))
        found: dict[str, dict[str, Any]] = {}
        with self.engine.connect() as conn:
            for start in range(0, len(keys), _IN_CHUNK):
                part = keys[start : start + _IN_CHUNK]
                rows = conn.execute(select(t.scopes).where(t.scopes.c.scope_key.in_(part)))
                found.update({row.scope_key: json.loads(row.scope_json) for row in rows})
        missing = set(keys) - set(found)
        if missing:
            raise LookupError(f"scope(s) {sorted(missing)} missing from {t.scopes.name}")
        return found

    def stage_candidates(self, key: str, leads: Iterable[tuple[str, str]], chunk: int = 20_000) -> int:
        """Replace the run's staged candidates with ``(lead_id, scope_key)`` pairs numbered from 1.

        A million rows in seconds: PostgreSQL's COPY (psycopg 3), else the driver's executemany of the
        INSERT that SQLAlchemy compiles for the table (SQLAlchemy's own bulk insert is 3-10x slower here).
        """
        c = t.candidates
        rows = ((key, seq, lead_id, scope_key) for seq, (lead_id, scope_key) in enumerate(leads, start=1))
        count = 0
        with self._begin() as conn:
            conn.execute(delete(c).where(c.c.run_key == key))
            cursor = conn.connection.driver_connection.cursor()
            try:
                if self.dialect == "postgresql" and hasattr(cursor, "copy"):
                    columns = ", ".join(col.name for col in c.columns)
                    with cursor.copy(f"COPY {c.name} ({columns}) FROM STDIN") as copy:
                        for row in rows:
                            copy.write_row(row)
                            count += 1
                    return count
                statement = str(c.insert().compile(dialect=conn.dialect, compile_kwargs={"render_postcompile": True}))
                positional = conn.dialect.positional
                while part := list(itertools.islice(rows, chunk)):
                    params = part if positional else [dict(zip(c.columns.keys(), row, strict=True)) for row in part]
                    cursor.executemany(statement, params)
                    count += len(part)
            finally:
                cursor.close()
        return count

    def carry_over(self, dag_id: str, key: str, max_runs: int = CARRY_OVER_MAX_RUNS) -> list[tuple[str, str]]:
        """Leads of earlier, closed runs of the DAG left unresolved and not settled since: ``(lead, scope)``.

        Unresolved: failed, skipped, left ``sending``, held by an owner that then failed, or never reached
        (no audit row: the batch died). A lead is carried over at most ``max_runs`` times; leads settled
        under their scope (queued, or refused for good) never are. Runs still going are left alone: their
        own batches are still at work (a run is closed once its report ran, or after a day).
        """
        c, a, r, k = t.candidates, t.audit, t.runs, t.claims
        closed = or_(r.c.reported_at.is_not(None), r.c.planned_at < time.time() - STALE_RUN_SECONDS)
        unresolved = or_(a.c.outcome.is_(None), a.c.outcome.in_([str(o) for o in UNRESOLVED_OUTCOMES]))
        settled = exists().where(
            and_(k.c.lead_id == c.c.lead_id, k.c.scope_key == c.c.scope_key, k.c.settled_outcome.is_not(None))
        )
        stmt = (
            select(c.c.lead_id, c.c.scope_key)
            .select_from(
                c.join(r, r.c.run_key == c.c.run_key).outerjoin(
                    a,
                    and_(a.c.run_key == c.c.run_key, a.c.lead_id == c.c.lead_id, a.c.scope_key == c.c.scope_key),
                )
            )
            .where(
                r.c.dag_id == dag_id,
                r.c.run_key != key,
                r.c.dry_run.is_(False),
                or_(r.c.unresolved.is_(None), r.c.unresolved > 0),
                closed,
                unresolved,
                ~settled,
            )
            .group_by(c.c.lead_id, c.c.scope_key)
            # A run that deferred the lead (today's quota) does not count against the limit.
            .having(
                func.count(func.distinct(case((a.c.outcome == str(Outcome.DEFERRED), None), else_=c.c.run_key)))
                <= max_runs
            )
            .order_by(c.c.lead_id)
        )
        with self.engine.connect() as conn:
            return [(row.lead_id, row.scope_key) for row in conn.execute(stmt)]

    def save_run(self, record: RunRecord) -> None:
        values = {
            "run_key": record.run_key,
            "dag_id": record.dag_id,
            "run_id": record.run_id,
            "run_type": record.run_type,
            "leadsquared_conn_id": record.leadsquared_conn_id,
            "account": record.account,
            "deferred": record.deferred,
            "scope_json": json.dumps(record.scope, sort_keys=True),
            "scope_key": record.scope_key,
            "dry_run": record.dry_run,
            "candidates": record.candidates,
            "invalid": record.invalid,
            "batches": record.batches,
            "batch_size": record.batch_size,
            "carried_over": record.carried_over,
            "planned_at": time.time(),
            "reported_at": None,
            "unresolved": None,
        }
        stmt = _insert(self.dialect, t.runs).values(**values)
        stmt = stmt.on_conflict_do_update(
            index_elements=["run_key"], set_={k: stmt.excluded[k] for k in values if k != "run_key"}
        )
        with self._begin() as conn:
            conn.execute(stmt)

    def load_run(self, key: str) -> RunRecord:
        with self.engine.connect() as conn:
            row = conn.execute(select(t.runs).where(t.runs.c.run_key == key)).first()
        if row is None:
            raise LookupError(f"run {key!r} was never planned (no row in {t.runs.name})")
        return RunRecord(
            run_key=row.run_key,
            dag_id=row.dag_id,
            run_id=row.run_id,
            scope=json.loads(row.scope_json),
            scope_key=row.scope_key,
            dry_run=bool(row.dry_run),
            candidates=row.candidates,
            invalid=row.invalid,
            batches=row.batches,
            batch_size=row.batch_size,
            carried_over=row.carried_over,
            run_type=row.run_type,
            leadsquared_conn_id=row.leadsquared_conn_id,
            account=row.account,
            deferred=row.deferred or 0,
        )

    def growth_baseline(self, dag_id: str, key: str, *, runs: int = GROWTH_BASELINE_RUNS) -> int | None:
        """The growth guard's baseline: the median candidate count of the DAG's last ``runs`` scheduled or
        backfill runs (not dry runs, not this one), so that neither a one-lead manual fix nor an empty day
        becomes the measure of the next night; of its last runs of any type while it has none of those.
        ``None`` (no guard) without earlier runs or when the median is 0."""
        r = t.runs
        earlier = (r.c.dag_id == dag_id, r.c.run_key != key, r.c.dry_run.is_(False))
        interval = r.c.run_type.in_(INTERVAL_RUN_TYPES)
        with self.engine.connect() as conn:
            for condition in (interval, true()):
                stmt = select(r.c.candidates).where(*earlier, condition).order_by(r.c.planned_at.desc()).limit(runs)
                counts = [row.candidates for row in conn.execute(stmt)]
                if counts:
                    baseline = int(statistics.median_low(counts))
                    return baseline or None
        return None

    def candidate_slice(self, key: str, first: int, last: int) -> list[tuple[str, str]]:
        """``(lead_id, scope_key)`` of candidates ``first..last`` of the run."""
        c = t.candidates
        stmt = (
            select(c.c.lead_id, c.c.scope_key).where(c.c.run_key == key, c.c.seq.between(first, last)).order_by(c.c.seq)
        )
        with self.engine.connect() as conn:
            return [(row.lead_id, row.scope_key) for row in conn.execute(stmt)]

    def close_run(self, key: str, unresolved: int) -> None:
        """Mark the run reported: from now on, its unresolved leads are carried over by the next run."""
        with self._begin() as conn:
            conn.execute(
                update(t.runs).where(t.runs.c.run_key == key).values(reported_at=time.time(), unresolved=unresolved)
            )

    # -- claims -------------------------------------------------------------------------------------

    def settled(self, lead_ids: Sequence[str], scope_key: str, run: str | None = None) -> dict[str, str]:
        """Leads settled under ``scope_key`` for good (by any run), or by run ``run`` before the window closed:
        ``lead -> "<outcome> by run <run>"``. Not sent again."""
        k = t.claims
        found: dict[str, str] = {}
        with self.engine.connect() as conn:
            for start in range(0, len(lead_ids), _IN_CHUNK):
                part = list(lead_ids[start : start + _IN_CHUNK])
                stmt = select(k.c.lead_id, k.c.settled_outcome, k.c.run_key).where(
                    k.c.scope_key == scope_key,
                    k.c.lead_id.in_(part),
                    k.c.settled_outcome.is_not(None),
                    or_(k.c.final.is_(True), k.c.run_key == run) if run is not None else k.c.final.is_(True),
                )
                found.update({row.lead_id: f"{row.settled_outcome} by run {row.run_key}" for row in conn.execute(stmt)})
        return found

    def claim(
        self,
        owner: ClaimOwner,
        batch: BatchScope,
        lead_id: str,
        scope_key: str,
        ttl: float,
        *,
        sighting: Sighting | None = None,
        grace: float = 0.0,
    ) -> Claim:
        """Take the lead's claim under ``scope_key`` for ``owner`` (insert-or-nothing), and when it is ours,
        write the lead's ``sending`` row in the same transaction. Times are the store's clock.

        An expired claim is first answered ``EXPIRED`` with a :class:`Sighting`; it is taken over by a later
        call given that sighting, if the claim is still expired and unchanged ``grace`` seconds after it."""
        k = t.claims
        now = store_now(self.dialect)
        row = {
            "lead_id": lead_id,
            "scope_key": scope_key,
            **_owner_columns(owner),
            "claimed_at": now,
            "expires_at": now + ttl,
            "settled_outcome": None,
            "settled_at": None,
        }
        with self._begin() as conn:
            # RETURNING, not rowcount: psycopg 3 reports -1 rows for INSERT ... ON CONFLICT DO NOTHING.
            inserted = conn.execute(
                _insert(self.dialect, k)
                .values(**row)
                .on_conflict_do_nothing(index_elements=["lead_id", "scope_key"])
                .returning(k.c.owner_id)
            ).first()
            if inserted is not None:
                claim = Claim(ClaimStatus.OURS)
            else:
                held = conn.execute(
                    select(k, now.label("store_now")).where(k.c.lead_id == lead_id, k.c.scope_key == scope_key)
                ).first()
                if held is None:  # released between the two statements: try once more next time
                    return Claim(ClaimStatus.HELD, "claim released meanwhile")
                if held.settled_outcome is not None and (held.final or held.run_key == owner.run_key):
                    return Claim(ClaimStatus.SETTLED, f"{held.settled_outcome} by run {held.run_key}")
                if held.settled_outcome is not None:
                    # Reset by another run before this window closed: that reset covered what existed then.
                    if not _take_claim(conn, row, held.owner_id, k.c.final.is_(False), final=True):
                        return Claim(ClaimStatus.HELD, "claim changed meanwhile")
                    claim = Claim(
                        ClaimStatus.OURS,
                        f"{held.settled_outcome} by run {held.run_key} before the window closed: sent again",
                    )
                    return self._claimed(conn, batch, lead_id, scope_key, claim)
                holder = (
                    f"run {held.run_key}, batch {held.batch}, try {held.try_number} on {held.hostname} pid {held.pid}"
                )
                if held.owner_id == owner.owner_id:
                    claim = Claim(ClaimStatus.OURS)
                elif held.expires_at >= held.store_now:
                    return Claim(ClaimStatus.HELD, f"held by {holder}")
                elif not (
                    sighting is not None
                    and (sighting.owner_id, sighting.expires_at) == (held.owner_id, held.expires_at)
                    and held.store_now - sighting.seen_at >= grace
                ):
                    same = sighting is not None and sighting.owner_id == held.owner_id
                    seen = sighting if same and sighting.expires_at == held.expires_at else None
                    return Claim(
                        ClaimStatus.EXPIRED,
                        f"expired claim of {holder}",
                        seen or Sighting(held.owner_id, held.expires_at, held.store_now),
                    )
                else:
                    unchanged = and_(k.c.expires_at == held.expires_at, k.c.settled_outcome.is_(None))
                    if not _take_claim(conn, row, held.owner_id, unchanged):
                        return Claim(ClaimStatus.HELD, f"held by {holder}")
                    claim = Claim(ClaimStatus.TAKEN_OVER, f"expired claim of {holder} taken over")
            return self._claimed(conn, batch, lead_id, scope_key, claim)

    def _claimed(self, conn: Connection, batch: BatchScope, lead_id: str, scope_key: str, claim: Claim) -> Claim:
        """The claim is ours: note an earlier unread attempt and write the ``sending`` row."""
        a = t.audit
        unread = select(a.c.lead_id).where(a.c.lead_id == lead_id, a.c.scope_key == scope_key, a.c.unread.is_(True))
        if conn.execute(unread.limit(1)).first() is not None:
            claim = Claim(claim.status, claim.detail, after_unread=True)
        sending = ResetResult.not_sent(lead_id, Outcome.SENDING, "request in flight")
        self._write_audit(conn, batch, scope_key, sending, sends=0, repeated=claim.possibly_repeats)
        return claim

    def finish(
        self,
        owner: ClaimOwner,
        batch: BatchScope,
        scope_key: str,
        result: ResetResult,
        *,
        extra_sends: int = 0,
        repeated: bool = False,
    ) -> None:
        """Write the lead's final outcome and, in the same transaction, settle its claim (queued, refused for
        good) or release it (any other outcome: a later run may send it)."""
        k = t.claims
        mine = and_(k.c.lead_id == result.lead_id, k.c.scope_key == scope_key, k.c.owner_id == owner.owner_id)
        with self._begin() as conn:
            self._write_audit(
                conn,
                batch,
                scope_key,
                result,
                sends=result.attempts + extra_sends,
                repeated=repeated or result.possibly_repeated,
            )
            if result.outcome in SETTLED_OUTCOMES:
                now = store_now(self.dialect)
                end = _window_end(batch.scopes[scope_key])
                final = case((now >= end, True), else_=False) if end is not None else False
                settled = {"settled_outcome": str(result.outcome), "settled_at": result.finished_at, "final": final}
                if conn.execute(update(k).where(mine).values(**settled)).rowcount == 0:
                    # Our claim is gone (a store that lost its last commits in a crash): the lead is settled
                    # all the same, unless another owner holds it now (it took over an expired claim).
                    conn.execute(
                        _insert(self.dialect, k)
                        .values(
                            lead_id=result.lead_id,
                            scope_key=scope_key,
                            **_owner_columns(owner),
                            claimed_at=now,
                            expires_at=now,
                            **settled,
                        )
                        .on_conflict_do_nothing(index_elements=["lead_id", "scope_key"])
                    )
            else:
                conn.execute(delete(k).where(mine, k.c.settled_outcome.is_(None)))

    def heartbeat(self, owner: ClaimOwner, ttl: float) -> int:
        """Keep the owner's unsettled claims alive for ``ttl`` more seconds; return how many."""
        k = t.claims
        with self._begin() as conn:
            return conn.execute(
                update(k)
                .where(k.c.owner_id == owner.owner_id, k.c.settled_outcome.is_(None))
                .values(expires_at=store_now(self.dialect) + ttl)
            ).rowcount

    def record(self, batch: BatchScope, scope_key: str, result: ResetResult) -> None:
        """Write a lead that was not sent (already done, held elsewhere, dry run, skipped, invalid id)."""
        with self._begin() as conn:
            self._write_audit(conn, batch, scope_key, result, sends=0)

    def record_many(self, batch: BatchScope, items: Iterable[tuple[str, ResetResult]]) -> None:
        with self._begin() as conn:
            for scope_key, result in items:
                self._write_audit(conn, batch, scope_key, result, sends=0)

    def _write_audit(
        self,
        conn: Connection,
        batch: BatchScope,
        scope_key: str,
        result: ResetResult,
        *,
        sends: int,
        repeated: bool = False,
    ) -> None:
        """Upsert the (run, lead, scope) row. Attempts and sends add up over tries; a not-sent outcome never
        overwrites a settled one (a zombie's late ``already_done`` must not hide its twin's ``queued``)."""
        a = t.audit
        scope = batch.scopes[scope_key]
        values = {
            "run_key": batch.run_key,
            "lead_id": str(result.lead_id)[:200],
            "scope_key": scope_key,
            "dag_id": batch.dag_id,
            "batch": batch.batch,
            "from_date": _utc_text(scope.get("from_date")),
            "to_date": _utc_text(scope.get("to_date")),
            "categories": _categories(scope),
            "outcome": str(result.outcome),
            "status_code": result.status_code,
            "exception_type": redacted(result.exception_type, t.EXCEPTION_TYPE_SIZE)
            if result.exception_type is not None
            else None,
            "message": redacted(result.message, t.MESSAGE_SIZE),
            "attempts": result.attempts,
            "sends": sends,
            "possibly_repeated": bool(repeated),
            "unread": result.last_unread,
            "rate_limited": result.rate_limited_answers,
            "started_at": result.started_at,
            "finished_at": result.finished_at,
            "budget_wait": result.budget_wait_seconds,
        }
        stmt = _insert(self.dialect, a).values(**values)
        x = stmt.excluded
        keep_settled = None
        if result.outcome not in SETTLED_OUTCOMES:
            keep_settled = a.c.outcome.not_in([str(o) for o in SETTLED_OUTCOMES])
        stmt = stmt.on_conflict_do_update(
            index_elements=["run_key", "lead_id", "scope_key"],
            set_={
                "batch": x.batch,
                "outcome": x.outcome,
                "status_code": x.status_code,
                "exception_type": x.exception_type,
                "message": x.message,
                "attempts": a.c.attempts + x.attempts,
                "sends": a.c.sends + x.sends,
                "possibly_repeated": or_(a.c.possibly_repeated, x.possibly_repeated),
                "unread": or_(a.c.unread, x.unread),
                "rate_limited": a.c.rate_limited + x.rate_limited,
                "started_at": func.coalesce(a.c.started_at, x.started_at),
                "finished_at": x.finished_at,
                "budget_wait": x.budget_wait,
            },
            where=keep_settled,
        )
        conn.execute(stmt)

    # -- reading outcomes ---------------------------------------------------------------------------

    def outcome_counts(self, key: str, batch: int | None = None) -> dict[str, int]:
        a = t.audit
        stmt = select(a.c.outcome, func.count()).where(a.c.run_key == key).group_by(a.c.outcome)
        if batch is not None:
            stmt = stmt.where(a.c.batch == batch)
        with self.engine.connect() as conn:
            return {outcome: count for outcome, count in conn.execute(stmt)}

    def leads_with(
        self,
        key: str,
        outcomes: Sequence[str] | None = None,
        *,
        repeated: bool | None = None,
        limit: int = 20,
        offset: int = 0,
        batch: int | None = None,
    ) -> list[dict[str, Any]]:
        """The run's audit rows with one of ``outcomes`` (and/or possibly repeated), oldest first."""
        a = t.audit
        stmt = select(a.c.lead_id, a.c.outcome, a.c.status_code, a.c.exception_type, a.c.message, a.c.attempts).where(
            a.c.run_key == key
        )
        if outcomes is not None:
            stmt = stmt.where(a.c.outcome.in_([str(o) for o in outcomes]))
        if repeated is not None:
            stmt = stmt.where(a.c.possibly_repeated.is_(repeated))
        if batch is not None:
            stmt = stmt.where(a.c.batch == batch)
        stmt = stmt.order_by(a.c.finished_at, a.c.lead_id).limit(limit).offset(offset)
        with self.engine.connect() as conn:
            return [dict(row._mapping) for row in conn.execute(stmt)]

    def run_counts(self, key: str) -> dict[str, int]:
        """See :func:`run_counts`."""
        with self.engine.connect() as conn:
            return run_counts(conn, key)

    def repeated_count(self, key: str) -> int:
        """Leads of the run whose request may have reached LeadSquared more than once."""
        a = t.audit
        stmt = select(func.count()).where(a.c.run_key == key, a.c.possibly_repeated.is_(True))
        with self.engine.connect() as conn:
            return conn.execute(stmt).scalar() or 0

    def rate_limited_answers(self, key: str) -> int:
        a = t.audit
        with self.engine.connect() as conn:
            return conn.execute(select(func.coalesce(func.sum(a.c.rate_limited), 0)).where(a.c.run_key == key)).scalar()

    def iter_audit(self, key: str) -> Iterator[dict[str, Any]]:
        """The run's audit rows by name, ordered by lead."""
        a = t.audit
        with self.engine.connect() as conn:
            for row in conn.execute(select(a).where(a.c.run_key == key).order_by(a.c.lead_id)):
                yield dict(row._mapping)

    # -- verification (reading back whether LeadSquared carried the resets out) --------------------------

    def queued_leads(self, key: str) -> list[tuple[str, str, float | None]]:
        """``(lead_id, scope_key, queued_at)`` of the run's leads LeadSquared queued (``queued_at``: when its
        answer came, epoch seconds), ordered by lead then scope."""
        a = t.audit
        stmt = (
            select(a.c.lead_id, a.c.scope_key, a.c.finished_at)
            .where(a.c.run_key == key, a.c.outcome == literal(str(Outcome.QUEUED)))
            .order_by(a.c.lead_id, a.c.scope_key)
        )
        with self.engine.connect() as conn:
            return [(row.lead_id, row.scope_key, row.finished_at) for row in conn.execute(stmt)]

    def save_verification(self, key: str, rows: Iterable[Mapping[str, Any]]) -> int:
        """Upsert the checks of ``rows`` (``lead_id``, ``scope_key``, ``result``, ``remaining_count``,
        ``remaining_ids`` as a list, ``message``, ``checked_at``) for the run; a later check replaces an earlier."""
        v = t.verification
        written = 0
        with self._begin() as conn:
            for row in rows:
                values = {
                    "run_key": key,
                    "lead_id": str(row["lead_id"])[:64],
                    "scope_key": row["scope_key"],
                    "result": str(row["result"]),
                    "remaining_count": int(row.get("remaining_count") or 0),
                    "remaining_ids": _joined_ids(row.get("remaining_ids") or ()),
                    "message": redacted(row.get("message") or "", t.MESSAGE_SIZE),
                    "checked_at": row.get("checked_at") or time.time(),
                }
                stmt = _insert(self.dialect, v).values(**values)
                stmt = stmt.on_conflict_do_update(
                    index_elements=["run_key", "lead_id", "scope_key"],
                    set_={
                        name: stmt.excluded[name] for name in values if name not in ("run_key", "lead_id", "scope_key")
                    },
                )
                conn.execute(stmt)
                written += 1
        return written

    def verification_rows(self, key: str) -> list[dict[str, Any]]:
        """The run's verification rows by name (``remaining_ids`` back as a list), ordered by lead and scope."""
        v = t.verification
        stmt = select(v).where(v.c.run_key == key).order_by(v.c.lead_id, v.c.scope_key)
        with self.engine.connect() as conn:
            rows = [dict(row._mapping) for row in conn.execute(stmt)]
        for row in rows:
            row["remaining_ids"] = [part for part in (row["remaining_ids"] or "").split(",") if part]
        return rows


UNFINISHED = "unfinished"  # the count of a run's staged leads with no final outcome (see run_counts)


def run_counts(conn: Connection, key: str) -> dict[str, int]:
    """The run's leads per final outcome, and :data:`UNFINISHED`: staged with no final outcome yet (never
    reached, or left ``sending``: the request's answer was never recorded). One reading of the run for the
    report and the UI alike; a run never planned has none."""
    c, a = t.candidates, t.audit
    found = conn.execute(select(a.c.outcome, func.count()).where(a.c.run_key == key).group_by(a.c.outcome)).all()
    counts = {outcome: count for outcome, count in found if outcome != Outcome.SENDING}
    same = and_(a.c.run_key == c.c.run_key, a.c.lead_id == c.c.lead_id, a.c.scope_key == c.c.scope_key)
    left = conn.execute(
        select(func.count())
        .select_from(c.outerjoin(a, same))
        .where(c.c.run_key == key, or_(a.c.lead_id.is_(None), a.c.outcome == literal(str(Outcome.SENDING))))
    ).scalar()
    if left:
        counts[UNFINISHED] = left
    return counts


def _joined_ids(ids: Iterable[object]) -> str:
    """Ids comma-separated, cut to whole ids within the column's size (the count says how many there were)."""
    text = ""
    for raw in ids:
        part = str(raw).replace(",", " ").strip()[:100]
        candidate = f"{text},{part}" if text else part
        if len(candidate) > t.REMAINING_IDS_SIZE:
            break
        text = candidate
    return text
