"""A bounded journal of the API requests a sandbox answered, so tests can count calls.

Served as ``GET /_sandbox/requests``: a JSON list of what each request was and how it was
answered. It keeps the most recent ``limit`` entries; admin requests are not journaled.
"""

from __future__ import annotations

import threading
from collections import deque
from typing import Any

__all__ = ["Journal"]


class Journal:
    def __init__(self, limit: int = 200_000) -> None:
        self._entries: deque[dict[str, Any]] = deque(maxlen=limit)
        self._lock = threading.Lock()

    def record(self, entry: dict[str, Any]) -> None:
        with self._lock:
            self._entries.append(entry)

    def entries(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._entries)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
