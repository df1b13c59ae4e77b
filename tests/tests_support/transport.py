"""The transport test harness: one shape for the Pub/Sub emulator and the in-process broker."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from confsync.transport.base import Handler, Message

__all__ = ["MAX_ATTEMPTS", "Harness", "Recorder", "Worker", "wait_until"]

MAX_ATTEMPTS = 5  # Pub/Sub's smallest allowed max_delivery_attempts


class Worker(Protocol):
    def stop(self, deadline_s: float = ...) -> bool: ...


@dataclass
class Harness:
    """A topic, its worker subscription and its dead-letter topic, on one transport."""

    kind: str
    publish: Callable[[bytes, str, dict[str, str]], str]
    start_worker: Callable[[Handler], Worker]
    dead_letters: Callable[[int, float], list[Message]]
    drain: Callable[[float], list[bytes]]  # synchronous pull (and ack) of what is waiting
    workers: list[Worker] = field(default_factory=list)

    def worker(self, handler: Handler) -> Worker:
        worker = self.start_worker(handler)
        self.workers.append(worker)
        return worker


def wait_until(predicate: Callable[[], bool], timeout: float = 30.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


@dataclass
class Recorder:
    """A handler that records what it saw and can be told how to fail."""

    seen: list[Message] = field(default_factory=list)
    fail: Callable[[Message], None] | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self, message: Message) -> None:
        with self.lock:
            self.seen.append(message)
        if self.fail is not None:
            self.fail(message)

    def datas(self) -> list[bytes]:
        with self.lock:
            return [message.data for message in self.seen]
