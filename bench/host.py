"""The host's speed as a fixed loop's time, printed beside a benchmark's figures: this 2-core
host's speed moves from hour to hour, and figures from two sittings compare only through it."""

from __future__ import annotations

import time

__all__ = ["fixed_loop_ms"]

_ROUNDS = 1_000_000


def fixed_loop_ms(tries: int = 3) -> float:
    """The best of ``tries`` runs of one fixed pure-Python loop, in milliseconds (lower is faster)."""
    best = float("inf")
    for _ in range(tries):
        started = time.perf_counter()
        total = 0
        for i in range(_ROUNDS):
            total += i * i % 7
        best = min(best, time.perf_counter() - started)
    return round(best * 1000, 1)
