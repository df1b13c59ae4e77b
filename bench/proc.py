"""What /proc says about a process tree: CPU used and descendants (Linux), for the benchmarks
and the tests that watch a process's children.

The host's speed moves from hour to hour; CPU per operation moves much less, so the
benchmarks report it beside their throughput.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["cpu_seconds", "descendants"]


def cpu_seconds(pid: int | None, *, with_descendants: bool = False) -> float:
    """User plus system CPU ``pid`` has used (and its live descendants'), in seconds; 0 if gone."""
    if pid is None:
        return 0.0
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return 0.0
    own = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    if not with_descendants:
        return own
    return own + sum(cpu_seconds(child) for child in descendants(pid))


def descendants(pid: int) -> list[int]:
    """Every live process below ``pid``, children before grandchildren."""
    found: list[int] = []
    frontier = [pid]
    while frontier:
        parent = frontier.pop(0)
        for task in Path(f"/proc/{parent}/task").glob("*"):
            try:
                children = [int(child) for child in (task / "children").read_text().split()]
            except OSError:
                continue
            found += children
            frontier += children
    return found
