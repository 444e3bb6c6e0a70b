"""A throwaway Redis server for tests: ``redis-server`` on 127.0.0.1 and a free port, nothing saved to disk.

Needs Debian's ``redis-server`` package (CI's ``.ci/run`` installs it). Nothing is skipped when it is
missing: starting raises a RuntimeError that says what to install.

    with RedisServer() as redis:
        redis.url(0)   # redis://127.0.0.1:<port>/0
"""

from __future__ import annotations

import atexit
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

INSTALL_HINT = (
    "redis-server was not found on PATH. Install Debian's `redis-server` package: "
    "`apt-get install -y --no-install-recommends redis-server` (CI does this in .ci/run)."
)
_START_ATTEMPTS = 3


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


class RedisServer:
    """One ``redis-server`` child process; ``start()`` starts it, ``stop()`` stops it and deletes its directory."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.host = host
        self.port: int | None = None
        self._proc: subprocess.Popen | None = None
        self._dir: Path | None = None

    @property
    def log_file(self) -> Path:
        if self._dir is None:
            raise RuntimeError("RedisServer is not started")
        return self._dir / "redis.log"

    def url(self, db: int = 0) -> str:
        if self._proc is None:
            raise RuntimeError("RedisServer is not started")
        return f"redis://{self.host}:{self.port}/{db}"

    def start(self, timeout: float = 20) -> RedisServer:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError(INSTALL_HINT)
        self._dir = Path(tempfile.mkdtemp(prefix="redistest-"))
        atexit.register(self.stop)
        for _ in range(_START_ATTEMPTS):  # the free port can be taken between picking and binding
            self.port = free_port(self.host)
            args = ["--port", str(self.port), "--bind", self.host, "--save", "", "--appendonly", "no"]
            with open(self.log_file, "ab") as log:
                self._proc = subprocess.Popen(
                    [binary, *args, "--dir", str(self._dir)],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            if self._wait_until_answering(timeout):
                return self
            self._kill()
        tail = "\n".join(self.log_file.read_text(errors="replace").splitlines()[-20:])
        self.stop()
        raise RuntimeError(f"redis-server did not start after {_START_ATTEMPTS} attempts:\n{tail}")

    def _wait_until_answering(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                return False
            try:
                with socket.create_connection((self.host, self.port), timeout=1) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(64).startswith(b"+PONG"):
                        return True
            except OSError:
                pass
            time.sleep(0.1)
        return False

    def _kill(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()

    def stop(self) -> None:
        """Stop the server (if running) and delete its directory; safe to call twice."""
        atexit.unregister(self.stop)
        self._kill()
        root, self._dir = self._dir, None
        if root is not None:
            shutil.rmtree(root, ignore_errors=True)

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
