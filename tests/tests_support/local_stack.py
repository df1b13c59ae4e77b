"""A running ``confsync local`` as the end-to-end tests see it: its ready file and process."""

from __future__ import annotations

import json
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from confsync.ports import Store
from confsync.store import open_store
from stack.local import ReadyInfo
from tests_support.cli import confsync_argv, confsync_env

__all__ = ["Stack", "person", "running_local", "store_of", "timed"]

READY_TIMEOUT_S = 120.0


def person(name: str, domain: str = "example.com") -> str:
    """A new user's email, unique to this run (the stack is shared by the package's tests)."""
    return f"{name}-{uuid.uuid4().hex[:8]}@{domain}"


def timed(summary: str, day: int, hour: int = 10) -> dict[str, Any]:
    """A one-hour meeting on 2026-12-``day`` at ``hour``:00 Warsaw time."""
    start, end = f"2026-12-{day:02d}T{hour:02d}:00:00+01:00", f"2026-12-{day:02d}T{hour + 1:02d}:00:00+01:00"
    return {"summary": summary, "start": {"dateTime": start}, "end": {"dateTime": end}}


@dataclass
class Stack:
    info: ReadyInfo
    process: subprocess.Popen[bytes]
    ready_file: Path

    @property
    def transport(self) -> str:
        return self.info.transport

    def current(self) -> ReadyInfo:
        """The ready file now (``confsync local`` rewrites it when it restarts a child)."""
        return ReadyInfo.from_json(json.loads(self.ready_file.read_text()))

    def pid(self, service: str) -> int:
        return int(self.current().services[service].pid or 0)

    def wait_restarted(self, service: str, old_pid: int, timeout_s: float = 60.0) -> int:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                pid = self.pid(service)
            except (OSError, ValueError, KeyError):  # the file is replaced atomically, but be patient
                pid = old_pid
            if pid != old_pid:
                return pid
            time.sleep(0.2)
        raise AssertionError(f"{service} was not restarted within {timeout_s:.0f}s")


@contextmanager
def store_of(stack: Stack) -> Iterator[Store]:
    """The stack's store, opened beside its services (SQLite: many readers are fine)."""
    store = open_store(stack.info.store)
    try:
        yield store
    finally:
        store.close()


@contextmanager
def running_local(state: Path, transport: str, **env: str) -> Iterator[Stack]:
    """``confsync local --transport T`` in ``state`` until the block ends (SIGTERM), with these
    extra ``CONFSYNC_*`` settings."""
    ready = state / "ready.json"
    # The production breaker cool-down lets a run of failed trial calls during the storm test
    # outlast any bounded wait (each trial fails half the time); the behaviour is the same.
    # Pub/Sub's shortest ack deadline and lease: a killed worker's messages come back in 10 s, not 60.
    environment = confsync_env(
        CONFSYNC_SHUTDOWN_DEADLINE_S="5",
        CONFSYNC_BREAKER_COOLDOWN_S="3",
        CONFSYNC_PUBSUB_ACK_DEADLINE_S="10",
        CONFSYNC_PUBSUB_LEASE_EXTENSION_S="10",
        **env,
    )
    environment.pop("PUBSUB_EMULATOR_HOST", None)
    argv = confsync_argv("local", "--transport", transport, "--ready-file", str(ready))
    with (state / "local.log").open("wb") as log:
        process = subprocess.Popen(
            [*argv, "--state-dir", str(state)], env=environment, stdout=log, stderr=subprocess.STDOUT
        )
        try:
            deadline = time.monotonic() + READY_TIMEOUT_S
            while not ready.exists():
                if process.poll() is not None or time.monotonic() > deadline:
                    tail = (state / "local.log").read_text()[-3000:]
                    raise AssertionError(f"confsync local did not get ready:\n{tail}")
                time.sleep(0.1)
            yield Stack(ReadyInfo.from_json(json.loads(ready.read_text())), process, ready)
        finally:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
