"""A throwaway PostgreSQL server for tests: its own cluster in a temp dir, on 127.0.0.1 and a free port.

Needs the PostgreSQL server binaries (``initdb``, ``pg_ctl``, ``postgres``): on Debian/Ubuntu,
``apt-get install postgresql`` (CI's ``.ci/run`` does this). Nothing is skipped when they are missing:
starting the server raises a RuntimeError that says what to install.

When running as root (CI), the cluster directory is owned by the ``postgres`` user and the server
commands run through ``runuser -u postgres --`` (PostgreSQL refuses to run as root); otherwise they
run as the current user.

    with PostgresServer() as pg:
        pg.create_database("app")
        psycopg2.connect(pg.dsn("app"))
"""

from __future__ import annotations

import atexit
import contextlib
import glob
import json
import os
import pwd
import re
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from types import TracebackType

SERVER_BINARIES = ("initdb", "pg_ctl", "postgres")
INSTALL_HINT = (
    "PostgreSQL server binaries (initdb, pg_ctl, postgres) were not found. "
    "Install Debian's `postgresql` package: `apt-get install -y --no-install-recommends postgresql` "
    "(CI does this in .ci/run). Looked in `pg_config --bindir`, /usr/lib/postgresql/*/bin and PATH."
)
_START_ATTEMPTS = 3


def _has_server_binaries(bindir: Path) -> bool:
    return all(os.access(bindir / name, os.X_OK) for name in SERVER_BINARIES)


def _version_key(path: str) -> tuple[int, ...]:
    version = Path(path).parent.name  # /usr/lib/postgresql/<version>/bin
    return tuple(int(part) for part in re.findall(r"\d+", version)) or (0,)


def find_bindir() -> Path:
    """The directory holding initdb/pg_ctl/postgres: ``pg_config --bindir``, else the newest
    ``/usr/lib/postgresql/*/bin``, else wherever ``initdb`` is on PATH. Raises RuntimeError if none."""
    pg_config = shutil.which("pg_config")
    if pg_config:
        try:
            out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, check=True, timeout=30)
        except (OSError, subprocess.SubprocessError):
            out = None
        # pg_config may come from libpq-dev of another major version than the installed server: check.
        if out is not None and out.stdout.strip() and _has_server_binaries(Path(out.stdout.strip())):
            return Path(out.stdout.strip())
    for candidate in sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=_version_key, reverse=True):
        if _has_server_binaries(Path(candidate)):
            return Path(candidate)
    initdb = shutil.which("initdb")
    if initdb and _has_server_binaries(Path(initdb).resolve().parent):
        return Path(initdb).resolve().parent
    if initdb and _has_server_binaries(Path(initdb).parent):
        return Path(initdb).parent
    raise RuntimeError(INSTALL_HINT)


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def unique_db_name(prefix: str = "test") -> str:
    """A fresh database name, e.g. ``test_3f2a9c1d0b7e``."""
    return f"{prefix}_{uuid.uuid4().hex[:12]}"


class PostgresServer:
    """One throwaway PostgreSQL cluster. ``start()`` creates and starts it, ``stop()`` stops and deletes it."""

    user = "postgres"

    def __init__(self, host: str = "127.0.0.1", bindir: str | Path | None = None) -> None:
        self.host = host
        self.port: int | None = None
        self._bindir = Path(bindir) if bindir else None
        self._as_root = os.geteuid() == 0
        self._root: Path | None = None
        self._started = False

    # ------------------------------------------------------------------ paths
    @property
    def bindir(self) -> Path:
        if self._bindir is None:
            self._bindir = find_bindir()
        return self._bindir

    @property
    def base_dir(self) -> Path:
        if self._root is None:
            raise RuntimeError("PostgresServer is not started")
        return self._root

    @property
    def data_dir(self) -> Path:
        return self.base_dir / "data"

    @property
    def socket_dir(self) -> Path:
        return self.base_dir / "sock"

    @property
    def log_file(self) -> Path:
        return self.base_dir / "server.log"

    # -------------------------------------------------------------- lifecycle
    def start(self) -> PostgresServer:
        if self._started:
            return self
        bindir = self.bindir  # raises the install hint before anything is created
        if self._as_root and shutil.which("runuser") is None:
            raise RuntimeError("running as root needs `runuser` (util-linux) to run PostgreSQL as `postgres`")
        self._root = Path(tempfile.mkdtemp(prefix="pgtest-"))
        atexit.register(self.stop)
        try:
            self.socket_dir.mkdir()
            if self._as_root:
                self._chown_to_postgres()
            initdb_args = ["-D", str(self.data_dir), "-U", self.user, "-A", "trust", "-E", "UTF8", "--no-locale"]
            self._run([str(bindir / "initdb"), *initdb_args, "--no-sync"], what="initdb")
            last_error: RuntimeError | None = None
            for _ in range(_START_ATTEMPTS):  # the free port can be taken between picking and binding
                self.port = free_port(self.host)
                self._write_config()
                try:
                    start_args = ["-D", str(self.data_dir), "-l", str(self.log_file), "-w", "-t", "60", "start"]
                    self._run([str(bindir / "pg_ctl"), *start_args], what="pg_ctl start")
                    self._started = True
                    break
                except RuntimeError as exc:
                    last_error = exc
            if not self._started:
                raise last_error or RuntimeError("PostgreSQL did not start")
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop the server (if running) and delete its cluster; safe to call twice."""
        atexit.unregister(self.stop)
        root, self._root = self._root, None
        if root is None:
            return
        # Also after a failed start: pg_ctl may have timed out on a server that did come up.
        if self._started or (root / "data" / "postmaster.pid").exists():
            self._started = False
            with contextlib.suppress(RuntimeError, OSError, subprocess.SubprocessError):
                stop_args = ["-D", str(root / "data"), "-m", "immediate", "-w", "-t", "60", "stop"]
                self._run([str(self.bindir / "pg_ctl"), *stop_args], what="pg_ctl stop")
        shutil.rmtree(root, ignore_errors=True)

    def outage(self, seconds: float) -> None:
        """Stop the server (every connection drops; what was committed stays: a restart, a fail-over), stay
        down ``seconds``, start it again on its port."""
        self._require_started()
        pg_ctl, data = str(self.bindir / "pg_ctl"), str(self.data_dir)
        self._run([pg_ctl, "-D", data, "-m", "fast", "-w", "-t", "60", "stop"], what="pg_ctl stop")
        time.sleep(seconds)
        self._run([pg_ctl, "-D", data, "-l", str(self.log_file), "-w", "-t", "60", "start"], what="pg_ctl start")

    def __enter__(self) -> PostgresServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # ---------------------------------------------------------------- clients
    def dsn(self, dbname: str = "postgres") -> str:
        self._require_started()
        return f"host={self.host} port={self.port} user={self.user} dbname={dbname}"

    def connect(self, dbname: str = "postgres", **kwargs):
        import psycopg2

        self._require_started()
        return psycopg2.connect(host=self.host, port=self.port, user=self.user, dbname=dbname, **kwargs)

    def create_database(self, name: str) -> str:
        from psycopg2 import sql

        conn = self.connect()
        try:
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        finally:
            conn.close()
        return name

    def drop_database(self, name: str) -> None:
        """Drop a database, ending any sessions still connected to it."""
        from psycopg2 import sql

        conn = self.connect()
        try:
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        finally:
            conn.close()

    def airflow_conn_json(self, dbname: str) -> str:
        """The value for an ``AIRFLOW_CONN_<ID>`` env var pointing at ``dbname`` (conn_type postgres)."""
        self._require_started()
        return json.dumps(
            {"conn_type": "postgres", "host": self.host, "port": self.port, "login": self.user, "schema": dbname}
        )

    # --------------------------------------------------------------- helpers
    def _require_started(self) -> None:
        if not self._started:
            raise RuntimeError("PostgresServer is not started")

    def _chown_to_postgres(self) -> None:
        try:
            entry = pwd.getpwnam(self.user)
        except KeyError:
            raise RuntimeError(
                "running as root needs the `postgres` system user; install Debian's `postgresql` package"
            ) from None
        for path in (self.base_dir, self.socket_dir):
            os.chown(path, entry.pw_uid, entry.pw_gid)
        # The postgres user must be able to reach the temp dir (e.g. TMPDIR under /root would not do).
        check = subprocess.run(["runuser", "-u", self.user, "--", "test", "-w", str(self.base_dir)], check=False)
        if check.returncode != 0:
            raise RuntimeError(
                f"the `postgres` user cannot write {self.base_dir}; point TMPDIR at a directory it can reach"
            )

    def _write_config(self) -> None:
        settings = {
            "listen_addresses": f"'{self.host}'",
            "port": str(self.port),
            "unix_socket_directories": f"'{self.socket_dir}'",
            "fsync": "off",
            "synchronous_commit": "off",
            "full_page_writes": "off",
            "max_connections": "100",
        }
        # A config include keeps rewriting the port (on a retry) simple; last setting wins in postgresql.conf.
        (self.data_dir / "pytest.conf").write_text("".join(f"{k} = {v}\n" for k, v in settings.items()))
        conf = self.data_dir / "postgresql.conf"
        text = conf.read_text()
        if "include_if_exists = 'pytest.conf'" not in text:
            conf.write_text(text + "\ninclude_if_exists = 'pytest.conf'\n")
        if self._as_root:
            entry = pwd.getpwnam(self.user)
            for path in (self.data_dir / "pytest.conf", conf):
                os.chown(path, entry.pw_uid, entry.pw_gid)

    def _run(self, cmd: list[str], *, what: str) -> None:
        if self._as_root:
            cmd = ["runuser", "-u", self.user, "--", *cmd]
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env["LC_ALL"] = "C"  # a locale the machine may lack must not break initdb
        result = subprocess.run(
            cmd, capture_output=True, text=True, env=env, cwd=self._root or None, check=False, timeout=180
        )
        if result.returncode != 0:
            log = ""
            if self._root is not None and self.log_file.exists():
                log = "\n--- server log (tail) ---\n" + "\n".join(self.log_file.read_text().splitlines()[-30:])
            raise RuntimeError(
                f"{what} failed (exit {result.returncode}): {' '.join(cmd)}\n{result.stdout}{result.stderr}{log}"
            )
