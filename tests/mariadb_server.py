"""A throwaway MariaDB server for tests: its own datadir in a temp dir, on 127.0.0.1 and a free port.

Needs Debian's ``mariadb-server`` package (``mariadb-install-db`` and ``mariadbd``; CI's ``.ci/run`` installs
it and does not start its service). Nothing is skipped when it is missing: starting raises a RuntimeError that
says what to install. The client is ``mysqlclient`` (``MySQLdb``), which the MySQL provider brings.

The server's ``root`` user has no password and is reached over TCP from 127.0.0.1 only. When running as
root (CI), the datadir is owned by the ``mysql`` system user and the server runs as it (``--user=mysql``:
mariadbd refuses to run as root); otherwise it runs as the current user.

    with MariaDBServer() as mariadb:
        mariadb.create_database("wh")
        mariadb.execute("CREATE TABLE wh.t (id INT)")
"""

from __future__ import annotations

import atexit
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Any

INSTALL_HINT = (
    "MariaDB server binaries (mariadb-install-db, mariadbd) were not found. Install Debian's `mariadb-server` "
    "package: `apt-get install -y --no-install-recommends mariadb-server` (CI does this in .ci/run; the tests "
    "start their own server, the system service is not needed)."
)
# Where Debian puts them; /usr/sbin is often not on a non-root user's PATH.
_SEARCH_DIRS = ("/usr/sbin", "/usr/bin", "/usr/local/sbin", "/usr/local/bin", "/usr/libexec")
_START_ATTEMPTS = 3


def _find_binary(*names: str) -> str:
    for name in names:
        found = shutil.which(name) or shutil.which(name, path=os.pathsep.join(_SEARCH_DIRS))
        if found:
            return found
    raise RuntimeError(INSTALL_HINT)


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


class MariaDBServer:
    """One ``mariadbd`` child process; ``start()`` creates and starts it, ``stop()`` stops it and deletes it."""

    user = "root"
    password = ""
    system_user = "mysql"  # the owner of the datadir when running as root

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.host = host
        self.port: int | None = None
        self._as_root = os.geteuid() == 0
        self._root: Path | None = None
        self._proc: subprocess.Popen | None = None

    # ------------------------------------------------------------------ paths
    @property
    def base_dir(self) -> Path:
        if self._root is None:
            raise RuntimeError("MariaDBServer is not started")
        return self._root

    @property
    def data_dir(self) -> Path:
        return self.base_dir / "data"

    @property
    def log_file(self) -> Path:
        return self.base_dir / "server.log"

    # -------------------------------------------------------------- lifecycle
    def start(self, timeout: float = 60) -> MariaDBServer:
        if self._proc is not None:
            return self
        install_db = _find_binary("mariadb-install-db", "mysql_install_db")
        server = _find_binary("mariadbd", "mysqld")
        self._root = Path(tempfile.mkdtemp(prefix="mariadbtest-"))
        atexit.register(self.stop)
        try:
            run_as = self._run_as_args()
            install = [
                install_db,
                "--no-defaults",
                f"--datadir={self.data_dir}",
                "--auth-root-authentication-method=normal",  # root with an empty password, not unix_socket
                "--skip-test-db",
                "--skip-name-resolve",
                *run_as,
            ]
            result = subprocess.run(install, capture_output=True, text=True, check=False, timeout=180)
            if result.returncode != 0:
                raise RuntimeError(
                    f"mariadb-install-db failed (exit {result.returncode}): {' '.join(install)}\n"
                    f"{result.stdout}{result.stderr}"
                )
            for _ in range(_START_ATTEMPTS):  # the free port can be taken between picking and binding
                self.port = free_port(self.host)
                self._launch(server, run_as)
                if self._wait_until_answering(timeout):
                    return self
                self._kill()
            raise RuntimeError(f"mariadbd did not start after {_START_ATTEMPTS} attempts:\n{self._log_tail()}")
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Stop the server (if running) and delete its datadir; safe to call twice."""
        atexit.unregister(self.stop)
        self._kill()
        root, self._root = self._root, None
        if root is not None:
            shutil.rmtree(root, ignore_errors=True)

    def __enter__(self) -> MariaDBServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # ---------------------------------------------------------------- clients
    def connect(self, database: str | None = None, **kwargs: Any):
        """A ``MySQLdb`` connection as ``root`` (autocommit on unless told otherwise)."""
        import MySQLdb

        self._require_started()
        args: dict[str, Any] = {"host": self.host, "port": self.port, "user": self.user, "passwd": self.password}
        if database:
            args["database"] = database
        args.update(kwargs)
        conn = MySQLdb.connect(**args)
        conn.autocommit(True)
        return conn

    def execute(self, *statements: str, database: str | None = None) -> list[tuple]:
        """Run statements as ``root``; returns the rows of the last one."""
        conn = self.connect(database)
        try:
            cur = conn.cursor()
            for statement in statements:
                cur.execute(statement)
            return list(cur.fetchall() or [])
        finally:
            conn.close()

    def query(self, sql: str, params: tuple | list = (), *, database: str | None = None) -> list[tuple]:
        """One statement with ``%s`` parameters, as ``root``; returns its rows."""
        conn = self.connect(database)
        try:
            cur = conn.cursor()
            cur.execute(sql, params)
            return list(cur.fetchall() or [])
        finally:
            conn.close()

    def create_database(self, name: str) -> str:
        self.execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4")
        return name

    def drop_database(self, name: str) -> None:
        self.execute(f"DROP DATABASE IF EXISTS `{name}`")

    def global_status(self, name: str) -> int:
        """A server-wide counter, e.g. ``Com_insert`` (INSERT statements run since start)."""
        rows = self.execute(f"SHOW GLOBAL STATUS LIKE '{name}'")
        if not rows:
            raise KeyError(name)
        return int(rows[0][1])

    def airflow_conn_json(
        self, database: str, *, login: str | None = None, password: str | None = None, **extra: Any
    ) -> str:
        """The value of an ``AIRFLOW_CONN_<ID>`` env var for ``database`` (conn_type mysql)."""
        self._require_started()
        conn: dict[str, Any] = {
            "conn_type": "mysql",
            "host": self.host,
            "port": self.port,
            "login": login or self.user,
            "password": self.password if password is None else password,
            "schema": database,
        }
        if extra:
            conn["extra"] = extra
        return json.dumps(conn)

    # --------------------------------------------------------------- helpers
    def _require_started(self) -> None:
        if self._proc is None:
            raise RuntimeError("MariaDBServer is not started")

    def _run_as_args(self) -> list[str]:
        if not self._as_root:
            return []
        try:
            entry = pwd.getpwnam(self.system_user)
        except KeyError:
            raise RuntimeError(
                f"running as root needs the `{self.system_user}` system user; install Debian's `mariadb-server`"
            ) from None
        os.chown(self.base_dir, entry.pw_uid, entry.pw_gid)
        # The mysql user must be able to reach the temp dir (e.g. a TMPDIR under /root would not do).
        check = subprocess.run(["runuser", "-u", self.system_user, "--", "test", "-w", str(self.base_dir)], check=False)
        if check.returncode != 0:
            raise RuntimeError(
                f"the `{self.system_user}` user cannot write {self.base_dir}; point TMPDIR at a directory it can reach"
            )
        return [f"--user={self.system_user}"]

    def _launch(self, server: str, run_as: list[str]) -> None:
        args = [
            server,
            "--no-defaults",
            f"--datadir={self.data_dir}",
            f"--bind-address={self.host}",
            f"--port={self.port}",
            f"--socket={self.base_dir / 'mysqld.sock'}",
            f"--pid-file={self.base_dir / 'mysqld.pid'}",
            f"--log-error={self.log_file}",
            "--skip-name-resolve",
            "--character-set-server=utf8mb4",
            "--innodb-buffer-pool-size=64M",
            "--innodb-flush-log-at-trx-commit=0",
            "--innodb-doublewrite=0",
            "--max-connections=100",
            *run_as,
        ]
        self._proc = subprocess.Popen(
            args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True, cwd=self.base_dir
        )

    def _wait_until_answering(self, timeout: float) -> bool:
        import MySQLdb

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc is None or self._proc.poll() is not None:
                return False
            try:
                conn = MySQLdb.connect(
                    host=self.host, port=self.port, user=self.user, passwd=self.password, connect_timeout=2
                )
            except MySQLdb.OperationalError:
                time.sleep(0.1)
                continue
            conn.close()
            return True
        return False

    def _kill(self) -> None:
        """SIGTERM is mariadbd's clean shutdown; SIGKILL after 30 s."""
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()

    def _log_tail(self) -> str:
        if self._root is None or not self.log_file.exists():
            return "(no server log)"
        return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-30:])
