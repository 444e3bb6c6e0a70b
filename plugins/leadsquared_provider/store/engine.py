"""The state store's database: one engine per database and process, the schema's creation and migration, the
store's clock, and the read-only engine the resets page reads through.

A connection (``leadsquared_state``) of type ``sqlite`` (one machine) or ``postgres`` (CeleryExecutor, several
machines). SQLite runs in WAL mode, every transaction taking the write lock at ``BEGIN IMMEDIATE`` (waiting up
to a minute for it, or the connection's ``busy_timeout_seconds``), so concurrent task processes serialize
their short transactions instead of failing. The page reads SQLite through an engine of its own with plain
deferred reads (WAL readers never wait for writers); PostgreSQL through the store's engine.
"""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from sqlalchemy import Float, cast, func, select, update

from leadsquared_provider.settings import DEFAULT_STATE_CONN_ID
from leadsquared_provider.store import schema as t

if TYPE_CHECKING:
    from sqlalchemy import Table
    from sqlalchemy.engine import Engine

SQLITE_BUSY_SECONDS = 60.0  # the default wait for SQLite's write lock (extra busy_timeout_seconds)
IN_CHUNK = 500  # ids per ``IN (...)`` list

_engines: dict[str, Engine] = {}
_schema_ready: set[str] = set()
_engines_lock = threading.Lock()
_read_engines: dict[str, Engine] = {}
_read_lock = threading.Lock()


class StateStoreError(RuntimeError):
    """The state store cannot be used (bad connection, newer schema)."""


class StoreUnavailable(RuntimeError):
    """The state store holds nothing yet (no run planned) or cannot be opened; the message says which."""


def engine_for(conn_id: str) -> tuple[Engine, str]:
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


def state_is_machine_local(conn_id: str) -> bool:
    """Whether the state store connection is an SQLite file, which only one machine's processes share."""
    from airflow.sdk import BaseHook

    return BaseHook.get_connection(conn_id).conn_type == "sqlite"


def store_now(dialect: str) -> Any:
    """The store's clock as a SQL expression (seconds since the epoch): claims live and expire by it."""
    if dialect == "postgresql":
        return cast(func.extract("epoch", func.clock_timestamp()), Float)
    # SQLite is one machine's file: its clock is that machine's, the same for every process using it.
    return (func.julianday("now") - 2440587.5) * 86400.0


def dialect_insert(dialect: str, table: Table) -> Any:
    """The dialect's INSERT, which has ``on_conflict_do_nothing``/``on_conflict_do_update``."""
    from sqlalchemy.dialects import postgresql, sqlite

    return (postgresql if dialect == "postgresql" else sqlite).insert(table)


def upsert(dialect: str, table: Table, values: dict[str, Any], keys: tuple[str, ...]) -> Any:
    """INSERT ``values``, or UPDATE every other column of the row that has the same ``keys``."""
    stmt = dialect_insert(dialect, table).values(**values)
    return stmt.on_conflict_do_update(
        index_elements=list(keys), set_={name: stmt.excluded[name] for name in values if name not in keys}
    )


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


class StoreBase:
    """The store's connection: its engine, dialect and transactions, with the schema checked on entry.

    Each part of :class:`~leadsquared_provider.store.StateStore` (runs, claims, audit) builds on it.
    """

    def __init__(self, conn_id: str = DEFAULT_STATE_CONN_ID) -> None:
        self.conn_id = conn_id
        self._engine: Engine | None = None
        self._cache_key = ""

    def __enter__(self) -> StoreBase:
        self.ensure_schema()
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            self._engine, self._cache_key = engine_for(self.conn_id)
        return self._engine

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def _begin(self) -> Any:
        """A write transaction (on SQLite, holding the write lock from its start)."""
        return self.engine.begin()

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


def sqlite_read_engine(path: str | Path) -> Engine:
    """An engine that only reads the SQLite file at ``path`` (never creates it), one per file and process."""
    from sqlalchemy import create_engine, event

    key = str(Path(path).resolve())
    with _read_lock:
        engine = _read_engines.get(key)
        if engine is None:
            uri = f"file:{quote(key)}?mode=rw"  # rw, not ro: a WAL reader needs the -shm file; never created

            def connect() -> sqlite3.Connection:
                return sqlite3.connect(uri, uri=True, timeout=10, check_same_thread=False)

            engine = create_engine("sqlite://", creator=connect)

            @event.listens_for(engine, "connect")
            def _read_only(dbapi_conn: Any, _record: Any) -> None:
                dbapi_conn.execute("PRAGMA query_only = ON")

            _read_engines[key] = engine
        return engine


def read_engine(conn_id: str) -> Engine:
    """The engine that reads the state store of connection ``conn_id`` (sqlite or postgres), never creating it.

    :raises StoreUnavailable: an SQLite store with no file path, or whose file does not exist yet.
    """
    from airflow.sdk import BaseHook

    conn = BaseHook.get_connection(conn_id)
    if conn.conn_type == "sqlite":
        if not conn.host:
            raise StoreUnavailable(f"state store connection {conn_id!r} (sqlite) has no file path as host")
        if not Path(conn.host).exists():
            raise StoreUnavailable(f"the state store {conn.host} does not exist yet: no run has been planned")
        return sqlite_read_engine(conn.host)
    return engine_for(conn_id)[0]
