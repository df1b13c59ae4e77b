"""Run workers until SIGTERM or SIGINT, then drain them: what a Cloud Run instance or a
terminal session needs. On the signal every worker stops pulling at once, then gets until
the deadline to finish what it holds; the call returns whether all of them finished."""

from __future__ import annotations

import signal
import threading
from collections.abc import Sequence
from types import FrameType
from typing import Protocol

import structlog

__all__ = ["Stoppable", "run_until_signalled"]

log = structlog.get_logger(__name__)

_WAKE_S = 0.2


class Stoppable(Protocol):
    def stop(self, deadline_s: float) -> bool: ...


def run_until_signalled(
    workers: Sequence[Stoppable], *, deadline_s: float, stop: threading.Event | None = None
) -> bool:
    """Block until SIGTERM/SIGINT (or ``stop`` is set), then stop every worker within the deadline."""
    stop = stop or threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info("signal received, draining", signal=signal.Signals(signum).name, deadline_s=deadline_s)
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        # Wake up now and then: a signal the kernel hands to another thread only sets a flag,
        # and Python runs the handler when the main thread next runs bytecode. A wait with no
        # timeout would sleep through SIGTERM (seen under load with the unary-pull worker).
        while not stop.wait(_WAKE_S):
            pass
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    results = [worker.stop(deadline_s) for worker in workers]  # each stop() honours the deadline itself
    clean = all(results)
    log.info("all workers stopped", clean=clean)
    return clean
