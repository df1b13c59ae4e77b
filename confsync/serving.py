"""Run an ASGI app with uvicorn in a background thread: for tests, benchmarks and `confsync local`.

``ServedApp`` binds 127.0.0.1 on a free port (or the one given), returns once the server
accepts connections, and stops it (lifespan shutdown included) on exit. With ``reuse_port``
several processes can serve one port (``confsync serve ROLE --processes N``).
``serve_forever`` runs an app in the calling thread, as the sandboxes' commands do.
"""

from __future__ import annotations

import gc
import socket
import threading
import time
from types import TracebackType
from typing import Any, Self

import uvicorn

__all__ = ["ServedApp", "bound_socket", "free_port", "serve_forever"]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def bound_socket(host: str, port: int, *, reuse_port: bool = False) -> socket.socket:
    """A TCP socket bound to ``host:port`` (0: a free port); with ``reuse_port`` other processes
    may bind the same port, and the kernel spreads connections among those listening."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock


def serve_forever(app: Any, *, host: str, port: int) -> None:
    """Serve ``app`` with uvicorn in this thread until it is signalled to stop.

    What start-up built lives as long as the process: frozen out of the garbage collector, a
    full collection walks only what requests allocate, not every module and schema (services
    do the same: stack/services.py)."""
    gc.freeze()
    uvicorn.run(app, host=host, port=port, log_config=None, access_log=False)


class ServedApp:
    def __init__(  # noqa: PLR0913 - uvicorn options, each named
        self,
        app: Any,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        start_timeout_s: float = 20.0,
        reuse_port: bool = False,
        keep_alive_s: float = 5.0,
    ) -> None:
        self._socket = bound_socket(host, port, reuse_port=reuse_port)
        self.host = host
        self.port = int(self._socket.getsockname()[1])
        config = uvicorn.Config(app, log_config=None, access_log=False, lifespan="on")
        config.timeout_keep_alive = keep_alive_s  # type: ignore[assignment]  # typed int, used as a delay
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._run, name=f"uvicorn-{self.port}", daemon=True)
        self._start_timeout_s = start_timeout_s

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def _run(self) -> None:
        self._server.run(sockets=[self._socket])

    def start(self) -> Self:
        self._thread.start()
        deadline = time.monotonic() + self._start_timeout_s
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"server on port {self.port} did not start")
            time.sleep(0.01)
        return self

    def stop(self, timeout_s: float = 10.0) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=timeout_s)
        self._socket.close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
