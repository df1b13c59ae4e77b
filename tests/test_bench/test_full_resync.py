"""bench/full_resync.py on a tiny calendar: both sides are timed over every event, and ours
makes the decisions the seeded changes call for (the bench refuses to print figures otherwise)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).parents[2] / "bench" / "full_resync.py"


def test_the_full_resync_bench_counts_every_event_on_both_sides() -> None:
    done = subprocess.run(
        [sys.executable, str(BENCH), "--events", "30", "--runs", "1"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    figures = json.loads(done.stdout)
    assert (figures["events"], figures["changed"], figures["runs_each"]) == (30, 1, 1)
    for side in ("confsync_dry_run", "gcal_sync"):
        assert len(figures[side]["events_per_s_runs"]) == 1
        assert figures[side]["events_per_s_median"] > 0
    assert figures["ratio_of_medians"] > 0
