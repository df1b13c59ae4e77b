"""The Calendar sandbox as its own process, for the benchmarks that measure against it."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx

from confsync.serving import free_port

__all__ = ["calendar_sandbox_process"]


@contextmanager
def calendar_sandbox_process(*options: str, ready_timeout_s: float = 30.0) -> Iterator[str]:
    """``confsync sandbox calendar`` (with ``options``, such as ``--require-auth``) on a free port
    until the block ends; yields its base URL."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {**os.environ, "CONFSYNC_LOG_LEVEL": "warning"}
    sandbox = subprocess.Popen(  # noqa: S603 - our own CLI
        [sys.executable, "-m", "stack.cli", "sandbox", "calendar", "--port", str(port), *options], env=env
    )
    try:
        deadline = time.monotonic() + ready_timeout_s
        while True:
            try:
                httpx.get(f"{base}/_sandbox/channels", timeout=1)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        yield base
    finally:
        sandbox.terminate()
        sandbox.wait(timeout=20)
