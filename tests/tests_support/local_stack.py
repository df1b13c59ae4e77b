"""A running ``confsync local`` as the end-to-end tests see it: its ready file and process."""

from __future__ import annotations

import json
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from stack.local import ReadyInfo

__all__ = ["Stack"]


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
