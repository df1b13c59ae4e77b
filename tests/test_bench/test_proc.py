"""The benchmarks' CPU accounting: a service's CPU includes the processes it forked."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

from bench.proc import cpu_seconds, descendants

# A parent that starts a child which burns CPU for a moment, then both sleep.
_CHILD = """
import time
end = time.process_time() + 0.4
while time.process_time() < end:
    pass
print("burnt", flush=True)
time.sleep(30)
"""
_PARENT = f"""
import subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c", {_CHILD!r}], stdout=sys.stdout)
time.sleep(30)
"""


def test_cpu_of_a_process_tree_counts_its_descendants_and_not_its_neighbours() -> None:
    parent = subprocess.Popen([sys.executable, "-c", _PARENT], stdout=subprocess.PIPE, text=True)
    children: list[int] = []
    try:
        assert parent.stdout is not None
        assert parent.stdout.readline().strip() == "burnt"
        children = descendants(parent.pid)
        assert len(children) == 1
        assert cpu_seconds(children[0]) >= 0.35
        assert cpu_seconds(parent.pid) < 0.3, "the parent itself only started a child"
        assert cpu_seconds(parent.pid, with_descendants=True) >= 0.35 + cpu_seconds(parent.pid) - 0.02
    finally:
        for pid in children:
            os.kill(pid, signal.SIGKILL)
        parent.kill()
        parent.communicate()
    assert cpu_seconds(parent.pid) == 0.0, "a process that is gone counts nothing"
