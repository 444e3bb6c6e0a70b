"""Serve an :class:`Emulator` with uvicorn on a background thread (127.0.0.1, free port when 0)."""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import uvicorn

from lsq_emulator.app import create_app
from lsq_emulator.config import EmulatorConfig
from lsq_emulator.emulator import Emulator

START_TIMEOUT = 10.0
STOP_TIMEOUT = 10.0


class _DroppedConnectionFilter(logging.Filter):
    """Hides uvicorn's error line for the connections the emulator drops on purpose."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "returned without completing response" not in record.getMessage()


def _quiet_uvicorn() -> None:
    error_logger = logging.getLogger("uvicorn.error")
    if not any(isinstance(f, _DroppedConnectionFilter) for f in error_logger.filters):
        error_logger.addFilter(_DroppedConnectionFilter())


class EmulatorServer:
    """One uvicorn server on its own thread and event loop; access log off (it would log query strings)."""

    def __init__(self, emulator: Emulator, host: str = "127.0.0.1", port: int = 0) -> None:
        self.emulator = emulator
        self.host = host
        self.port = port
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._socket: socket.socket | None = None

    def start(self) -> str:
        """Bind, start serving and return the base URL once the server accepts connections."""
        _quiet_uvicorn()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self.port))
        sock.listen(128)
        self._socket = sock
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(
            create_app(self.emulator),
            http="h11",
            loop="asyncio",
            lifespan="off",
            access_log=False,
            log_config=None,
            log_level="warning",
            timeout_graceful_shutdown=2,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [sock]}, name=f"lsq-emulator-{self.port}", daemon=True
        )
        self.emulator.stopping.clear()
        self._thread.start()
        deadline = time.monotonic() + START_TIMEOUT
        while not self._server.started:
            if not self._thread.is_alive():
                self.stop()
                raise RuntimeError("the emulator's server thread died while starting")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the emulator did not start within {START_TIMEOUT} s")
            time.sleep(0.01)
        self.emulator.base_url = f"http://{self.host}:{self.port}"
        return self.emulator.base_url

    def stop(self) -> None:
        """Cut hanging calls short, stop the server and wait for its thread."""
        self.emulator.stopping.set()
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(STOP_TIMEOUT)
            if self._thread.is_alive() and self._server is not None:
                self._server.force_exit = True
                self._thread.join(STOP_TIMEOUT)
        if self._socket is not None:
            self._socket.close()


@contextmanager
def run_emulator(
    config: EmulatorConfig | None = None,
    leads: Iterable[dict[str, Any]] = (),
    port: int = 0,
    host: str = "127.0.0.1",
) -> Iterator[Emulator]:
    """Serve a new emulator for the ``with`` block; yields it with ``base_url`` set."""
    emulator = Emulator(config, leads)
    server = EmulatorServer(emulator, host, port)
    server.start()
    try:
        yield emulator
    finally:
        server.stop()
