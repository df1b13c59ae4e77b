"""A backfill fanned out over the Pub/Sub emulator: throughput, listings per calendar, the job's
memory, failures that stay alone, and a killed job's restart.

The Calendar sandbox (its own process) holds ``--calendars`` calendars of ``--events`` events;
the store (SQLite) knows them; ``confsync serve processor --processes N`` pulls from the
emulator; ``confsync backfill --all`` (its own process, as the Cloud Run job) publishes one
request per calendar. Scenarios, one after another on the same calendars:

- ``small``: the store knows only ``--small`` of the calendars (the job's peak RSS at that size);
- ``full``: every calendar: calendars/s and events/s from the job's start to the last calendar
  done, listings per calendar (the sandbox's journal), the job's peak RSS (VmHWM);
- ``forbidden``: 1% of the calendars answer 403 ``forbidden``: exactly those must be failed,
  with their cause, and every other one done;
- ``killed``: the job is SIGKILLed once half its requests are out and started again: it must
  resume (the same job) and no calendar may be listed twice.

    .venv/bin/python bench/backfill.py [--calendars 10000] [--events 20] [--small 2500]
                                       [--processes 2] [--rate 2000]

Targets (issue 23): listings per calendar 1.00; the job's peak RSS flat in the number of
calendars; ``forbidden`` and ``killed`` exact.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import httpx
from sandboxes import calendar_sandbox_process

from confsync.serving import free_port
from confsync.settings import Settings
from confsync.store import BackfillJob, BackfillState
from confsync.store.sqlite import SqliteStore
from processors.backfill import Selection
from stack.emulators import find_jar, pubsub_emulator

FORBIDDEN = re.compile(r"bf\d{3}00@example\.com")  # 1 in 100
_LISTING = re.compile(r"/calendars/([^/]+)/events$")


def calendar_id(n: int) -> str:
    return f"bf{n:05d}@example.com"


def seed_calendars(base: str, count: int, events: int) -> None:
    client = httpx.Client(timeout=60)  # one client: making one per request costs 90 ms (its TLS context)

    def one(n: int) -> None:
        body = [
            {
                "id": f"evt{n:05d}{e:03d}",
                "summary": f"Meeting {e}",
                "start": {"dateTime": f"2026-12-{1 + e % 28:02d}T09:00:00Z"},
                "end": {"dateTime": f"2026-12-{1 + e % 28:02d}T10:00:00Z"},
            }
            for e in range(events)
        ]
        answer = client.post(f"{base}/_sandbox/calendars/{calendar_id(n)}/bulk-insert", json={"events": body})
        answer.raise_for_status()

    with client, ThreadPoolExecutor(2) as pool:
        list(pool.map(one, range(count)))


def confsync(*args: str) -> list[str]:
    return [sys.executable, "-m", "stack.cli", *args]


def peak_rss_mb(pid: int) -> float | None:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    line = next((line for line in status.splitlines() if line.startswith("VmHWM:")), None)
    return None if line is None else round(int(line.split()[1]) / 1024, 1)  # None: exited (a zombie)


def run_job(env: dict[str, str], rate: int, *, new: bool, kill_when: Any = None) -> float | None:
    """``confsync backfill --all``; its peak RSS in MB (None if it was killed before it could be read)."""
    args = ["backfill", "--all", "--rate", str(rate), "--json", *(["--new"] if new else [])]
    job = subprocess.Popen(confsync(*args), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # noqa: S603 - our own CLI
    peak = None
    while job.poll() is None:
        peak = peak_rss_mb(job.pid) or peak
        if kill_when is not None and kill_when():
            job.send_signal(signal.SIGKILL)
            job.communicate(timeout=20)
            return peak
        time.sleep(0.02)
    out, err = job.communicate()
    if job.returncode != 0:
        raise RuntimeError(f"backfill failed ({job.returncode}): {err.decode()[-2000:]}")
    json.loads(out)
    return peak


def newest(store: SqliteStore) -> BackfillJob:
    (job,) = store.backfill_jobs(1)
    return job


def wait_done(store: SqliteStore, job_id: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        job = store.get_backfill_job(job_id)
        if job is not None and job.paged_all and store.backfill_progress(job_id).pending == 0:
            return
        time.sleep(0.2)
    raise TimeoutError(f"backfill {job_id} not finished after {timeout_s} s")


def listings(base: str, since: int) -> tuple[Counter[str], int]:
    """Listings per calendar in the sandbox's journal after entry ``since``; the journal's length."""
    journal = httpx.get(f"{base}/_sandbox/requests", timeout=120).json()
    counted: Counter[str] = Counter()
    for entry in journal[since:]:
        match = _LISTING.search(unquote(entry["path"]))
        if entry["method"] == "GET" and match:
            counted[match.group(1)] += 1
    return counted, len(journal)


def scenario(  # noqa: PLR0913, PLR0917 - the scenario's whole setup
    name: str, base: str, store: SqliteStore, env: dict[str, str], expected: list[str], args: argparse.Namespace
) -> dict[str, Any]:
    httpx.delete(f"{base}/_sandbox/faults", timeout=10).raise_for_status()
    if name == "forbidden":
        rule = {"method": "GET", "path": r"bf\d{3}00(@|%40)example\.com/events", "status": 403, "reason": "forbidden"}
        httpx.post(f"{base}/_sandbox/faults", json=rule, timeout=10).raise_for_status()
    _, since = listings(base, 0)
    started = time.monotonic()
    killed = None
    if name == "killed":
        before = {job.job_id for job in store.backfill_jobs(100)}

        def half_out() -> bool:
            jobs = [job for job in store.backfill_jobs(1) if job.job_id not in before]
            return bool(jobs) and jobs[0].requested >= len(expected) // 2

        peak = run_job(env, max(args.rate // 10, 1), new=True, kill_when=half_out)  # slow enough to catch midway
        killed = newest(store)
        peak = max(peak or 0, run_job(env, args.rate, new=False) or 0)
    else:
        peak = run_job(env, args.rate, new=True)
    job = newest(store)
    wait_done(store, job.job_id, timeout_s=3600)
    elapsed = time.monotonic() - started
    counted, _ = listings(base, since)
    progress = store.backfill_progress(job.job_id)
    failed = store.backfill_entries(job.job_id, BackfillState.FAILED, limit=len(expected))
    result: dict[str, Any] = {
        "calendars": len(expected),
        "seconds": round(elapsed, 1),
        "calendars_per_s": round(len(expected) / elapsed, 1),
        "events_per_s": round(len(expected) * args.events / elapsed, 1),
        "listings_per_calendar": round(sum(counted.values()) / len(expected), 3),
        "calendars_listed_twice": sum(1 for count in counted.values() if count > 1),
        "calendars_never_listed": sum(1 for cid in expected if cid not in counted),
        "job_peak_rss_mb": peak,
        "done": progress.done,
        "failed": progress.failed,
        "pending": progress.pending,
    }
    if name == "forbidden":
        should_fail = {cid for cid in expected if FORBIDDEN.fullmatch(cid)}
        result["failed_exactly_the_forbidden"] = {entry.calendar_id for entry in failed} == should_fail
        result["a_cause"] = failed[0].cause if failed else None
    if killed is not None:
        result["requests_out_when_killed"] = killed.requested
        result["resumed_the_same_job"] = job.job_id == killed.job_id
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calendars", type=int, default=10_000)
    parser.add_argument("--events", type=int, default=20)
    parser.add_argument("--small", type=int, default=2_500)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--rate", type=int, default=2_000, help="requests per second the job may publish")
    parser.add_argument("--scenarios", nargs="+", default=["small", "full", "forbidden", "killed"])
    args = parser.parse_args()
    jar = find_jar(Settings.from_env().pubsub_emulator_jar)
    if jar is None:
        raise SystemExit("no Pub/Sub emulator jar on this machine")
    with (
        pubsub_emulator(jar) as emulator,
        calendar_sandbox_process() as base,
        tempfile.TemporaryDirectory() as tmp,
    ):
        store = SqliteStore(Path(tmp) / "state.sqlite")
        seeding = time.monotonic()
        seed_calendars(base, args.calendars, args.events)
        seeded_s = time.monotonic() - seeding
        env = {key: value for key, value in os.environ.items() if not key.startswith("CONFSYNC_")}
        env |= {
            "PUBSUB_EMULATOR_HOST": emulator.host,
            "CONFSYNC_TRANSPORT": "pubsub",
            "CONFSYNC_PROJECT_ID": f"bench-{uuid.uuid4().hex[:8]}",
            "CONFSYNC_CALENDAR_API_ENDPOINT": f"{base}/calendar/v3/",
            "CONFSYNC_STORE_URL": f"sqlite:///{tmp}/state.sqlite",
            "CONFSYNC_LOG_LEVEL": "warning",
            "CONFSYNC_PUBSUB_ORDERED_SUBSCRIPTIONS": "false",  # as the local stack runs the emulator
            "CONFSYNC_PUBSUB_PULL": "unary",
        }
        subprocess.run(confsync("pubsub", "bootstrap"), env=env, check=True, capture_output=True)  # noqa: S603
        port = free_port()
        processors = subprocess.Popen(  # noqa: S603 - our own CLI
            confsync("serve", "processor", "--processes", str(args.processes), "--port", str(port)), env=env
        )
        results: dict[str, Any] = {}
        try:
            everyone = [calendar_id(n) for n in range(args.calendars)]
            known = 0
            for name in args.scenarios:
                size = args.small if name == "small" else args.calendars
                for cid in everyone[known:size]:
                    store.ensure_calendar(cid)
                known = max(known, size)
                # A calendar that lost access (the forbidden ones, once failed) waits for its user.
                expected = [state.calendar_id for state in store.list_calendars() if Selection().picks(state)]
                results[name] = scenario(name, base, store, env, expected, args)
                print(json.dumps({name: results[name]}), file=sys.stderr)
        finally:
            processors.send_signal(signal.SIGTERM)
            processors.wait(timeout=60)
            store.close()
    print(
        json.dumps(
            {
                "benchmark": "backfill_fan_out",
                "transport": "pubsub emulator",
                "processor_processes": args.processes,
                "events_per_calendar": args.events,
                "seeding_s": round(seeded_s, 1),
                **results,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
