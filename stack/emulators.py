"""Start, reset and stop Google's Pub/Sub and Firestore emulators from their jars.

Used by the test fixtures and by ``confsync local``. Each emulator runs as a plain
``java`` child (never through ``gcloud``, which leaves the java process orphaned on SIGTERM)
in its own process group on a free loopback port, and is stopped by PID: SIGTERM, then
SIGKILL after a grace period. Readiness is ``GET /`` answering ``Ok``.

- Pub/Sub: https://cloud.google.com/pubsub/docs/emulator (``POST /reset`` wipes it).
- Firestore: https://cloud.google.com/firestore/docs/emulator (``DELETE
  /emulator/v1/projects/P/databases/(default)/documents`` wipes a project's documents).
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO, Self

from confsync.serving import free_port

__all__ = [
    "Emulator",
    "EmulatorError",
    "find_jar",
    "firestore_emulator",
    "pubsub_emulator",
]

_FIRESTORE_MAIN = "com.google.cloud.datastore.emulator.firestore.CloudFirestore"


class EmulatorError(RuntimeError):
    """An emulator could not be started, reached or reset."""


class _PortTaken(EmulatorError):
    """The port chosen was bound by another process before the emulator could bind it."""


def find_jar(pattern: str) -> Path | None:
    """The newest jar matching ``pattern`` (Settings' *_emulator_jar), or None when it or java is missing."""
    if shutil.which("java") is None:
        return None
    matches = sorted(glob.glob(pattern))  # noqa: PTH207 - an absolute pattern; Path.glob takes relative ones
    return Path(matches[-1]) if matches else None


@dataclass
class Emulator:
    """One running emulator process. Use as a context manager, or call start() and stop()."""

    name: str
    command: list[str]
    port: int
    reset_request: tuple[str, str]  # (method, path)
    start_timeout_s: float = 60.0
    ready_text: str | None = None  # printed once it listens; {port} stands for the port
    _process: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)
    _log: IO[bytes] | None = field(default=None, init=False, repr=False)

    @property
    def host(self) -> str:
        """``127.0.0.1:PORT``, the form the *_EMULATOR_HOST variables take (no scheme)."""
        return f"127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    def start(self) -> Self:
        """Start it and wait until it answers; a port taken meanwhile (free_port() cannot
        reserve it) is replaced by another free one, twice at most."""
        for attempt in range(3):
            try:
                return self._start_once()
            except _PortTaken:
                if attempt == 2:
                    raise EmulatorError(f"{self.name}: port {self.port} and two others were taken") from None
                old = f"--port={self.port}"
                self.port = free_port()
                self.command = [f"--port={self.port}" if part == old else part for part in self.command]
        raise AssertionError  # pragma: no cover - the loop returns or raises

    def _start_once(self) -> Self:
        self._log = tempfile.TemporaryFile(prefix=f"{self.name}-")  # noqa: SIM115 - closed in stop()
        self._process = subprocess.Popen(  # noqa: S603 - a fixed java command line
            self.command, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True
        )
        deadline = time.monotonic() + self.start_timeout_s
        while time.monotonic() < deadline:
            if (code := self._process.poll()) is not None:
                output = self.output()
                self.stop()
                raise EmulatorError(f"{self.name} exited at start (code {code}); output:\n{output}")
            if "Address already in use" in self.output():  # java keeps running; someone else answers
                self.stop()
                raise _PortTaken
            if self._started() and self._answers_ok():
                return self
            time.sleep(0.1)
        output = self.output()
        self.stop()
        raise EmulatorError(f"{self.name} not ready after {self.start_timeout_s:.0f}s; output:\n{output}")

    def _started(self) -> bool:
        """Our process says it listens (where it says so): another process on the port would
        answer ``Ok`` too."""
        return self.ready_text is None or self.ready_text.format(port=self.port) in self.output()

    def _answers_ok(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://{self.host}/", timeout=1) as answer:
                return bool(answer.read().strip() == b"Ok")
        except (urllib.error.URLError, OSError):
            return False

    def reset(self) -> None:
        """Wipe every topic, subscription or document the emulator holds."""
        method, path = self.reset_request
        request = urllib.request.Request(f"http://{self.host}{path}", method=method, data=b"")
        try:
            with urllib.request.urlopen(request, timeout=30):  # noqa: S310 - loopback
                pass
        except (urllib.error.URLError, OSError) as err:
            raise EmulatorError(f"{self.name} reset failed: {err}") from err

    def output(self) -> str:
        """What the emulator printed so far (for error messages)."""
        if self._log is None or self._log.closed:
            return ""
        self._log.seek(0)
        return self._log.read().decode("utf-8", "replace")[-4000:]

    def stop(self, grace_s: float = 10.0) -> None:
        """SIGTERM the process group, SIGKILL it after ``grace_s``; safe to call twice."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            _signal_group(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=grace_s)
            except subprocess.TimeoutExpired:
                _signal_group(process.pid, signal.SIGKILL)
                process.wait(timeout=grace_s)
        if self._log is not None:
            self._log.close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def _signal_group(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, sig)


def pubsub_emulator(jar: Path, port: int | None = None) -> Emulator:
    """An (unstarted) Pub/Sub emulator on ``port`` or a free one."""
    port = port or free_port()
    command = ["java", "-jar", str(jar), "--host=127.0.0.1", f"--port={port}"]
    return Emulator("pubsub-emulator", command, port, ("POST", "/reset"), ready_text="listening on {port}")


def firestore_emulator(jar: Path, project_id: str, port: int | None = None) -> Emulator:
    """An (unstarted) Firestore emulator (native mode) on ``port`` or a free one."""
    port = port or free_port()
    command = [
        "java",
        "-Duser.language=en",
        "-cp",
        str(jar),
        _FIRESTORE_MAIN,
        "--host=127.0.0.1",
        f"--port={port}",
        f"--project_id={project_id}",
    ]
    reset = ("DELETE", f"/emulator/v1/projects/{project_id}/databases/(default)/documents")
    return Emulator("firestore-emulator", command, port, reset)
