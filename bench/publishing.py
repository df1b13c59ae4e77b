"""Commands applied per second against the provider sandbox, clean and with 10% injected 503s.

The provider sandbox runs as its own process (SQLite file). N publisher instances run as
processes, as publisher instances do in production (one Python process is bound by its GIL):
each applies its own share of the commands through its own in-process transport to
CommandApplier (one retry policy, breaker, 4 worker threads), all sharing one SQLite store
(WAL) for applied versions and the outbox. Each command is a new version of one of 500
conferences. Prints one JSON object, with the publishers' CPU per command.

    .venv/bin/python bench/publishing.py [--commands 6000] [--processes 2] [--threads 4]

Target (issue 9): >= 1,000 commands/s clean. Figures move with the host by up to 2x: 958/s
(one process, 4 threads) on 2026-11-24, 425-572/s on 2026-12-03 before the changes below.

Where the CPU goes (2026-12-03, py-spy --gil on one instance): the PATCH through httpx is
two thirds of a publisher's CPU per command (httpcore and h11 more than half of it); decoding
the command, the store, the retry policy and logging the rest. Since the client calls httpx's
transport directly (not httpx.Client), a command costs the publisher 1.13-1.26 ms (1.33-2.16
before, in interleaved runs); nine runs then gave a median of 1,035 commands/s. The sandbox
answers a PATCH in 0.41-0.48 ms of CPU since its shortcut past FastAPI (0.71-0.78 before).
Two processes got 918 commands/s, three with 3 threads each 978.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from multiprocessing.queues import Queue
from pathlib import Path
from typing import Any

import httpx

from confsync.contracts import CommandKind, CommandReason, ConferenceCommand, ConferencePayload, EventTime
from confsync.logs import configure_logging
from confsync.ports import NewConference
from confsync.provider import HttpConferenceProvider
from confsync.serving import free_port
from confsync.settings import Secret, Settings
from confsync.store import OutboxEntry
from confsync.store.sqlite import SqliteStore
from confsync.transport.base import DeadLetter, Message
from confsync.transport.memory import MemoryBroker, MemoryWorker
from publishers.apply import CommandApplier
from publishers.breaker import CircuitBreaker
from publishers.retry import retry_policy

KEY = "bench-key"
CONFERENCES = 500


def run(url: str, db: Path, share: Share, start_at: float, out: Queue[dict[str, Any]]) -> None:
    """One publisher instance: its own conferences, commands and in-process transport; the
    store (SQLite, WAL) is shared with the other instances, as one store is in production."""
    configure_logging(Settings(log_level="error", log_format="json"))
    provider = HttpConferenceProvider(url, Secret(KEY), timeout_s=10, max_connections=64)
    ids = [
        provider.create(
            NewConference(calendar_id="b@example.com", event_id=f"e{n}", request_id=f"{share.label}-{n}")
        ).id
        for n in range(share.conferences)
    ]
    store = SqliteStore(db)
    settings = Settings(retry_initial_s=0.01, retry_max_s=0.2, retry_max_attempts=8)
    applier = CommandApplier(store, provider, retry_policy(settings), CircuitBreaker(threshold=1000))
    broker = MemoryBroker(queue_limit=share.commands + 10)
    for topic in ("commands", "dead"):
        broker.create_topic(topic)
    broker.create_subscription("commands-sub", "commands")
    base = datetime(2026, 11, 24, tzinfo=UTC)
    outbox: list[OutboxEntry] = []
    for n in range(share.commands):
        conference = ids[n % share.conferences]
        payload = ConferencePayload(
            start=EventTime(date="2026-12-24"), end=EventTime(date="2026-12-25"), summary=f"v{n}"
        )
        command = ConferenceCommand.create(
            kind=CommandKind.UPDATE,
            conference_id=conference,
            calendar_id="b@example.com",
            event_id=f"e{n % share.conferences}",
            event_updated=base + timedelta(seconds=n),
            reason=CommandReason.CHANGED,
            payload=payload,
        )
        broker.publish("commands", command.to_bytes(), ordering_key=conference)
        outbox.append(OutboxEntry(command.command_id, conference, command.to_bytes(), base))  # as the processor does
    store.outbox_add(outbox)
    done = threading.Event()
    handled = [0]
    lock = threading.Lock()

    def handle(message: Message) -> None:
        applier(message)
        with lock:
            handled[0] += 1
            if handled[0] >= share.commands:
                done.set()

    worker = MemoryWorker(
        broker,
        "commands-sub",
        handle,
        dead_letter=DeadLetter(broker, "dead", "commands-sub"),
        concurrency=share.threads,
    )
    time.sleep(max(0.0, start_at - time.time()))
    cpu = time.process_time()
    worker.start()
    done.wait(600)
    finished = time.time()
    cpu = time.process_time() - cpu
    worker.stop(10)
    applier.close()
    ours = {entry.command_id for entry in outbox}
    left = sum(
        1 for entry in store.outbox_due(base + timedelta(days=1), limit=10 * share.commands) if entry.command_id in ours
    )
    provider.close()
    store.close()
    out.put({"handled": handled[0], "finished": finished, "cpu_s": cpu, "outcomes": dict(applier.counts), "left": left})


@dataclass(frozen=True)
class Share:
    label: str
    commands: int
    conferences: int
    threads: int


def run_instances(url: str, db: Path, args: argparse.Namespace, label: str) -> dict[str, object]:
    commands, processes, threads = args.commands, args.processes, args.threads
    context = multiprocessing.get_context("spawn")
    out: Queue[dict[str, Any]] = context.Queue()
    start_at = time.time() + 8.0  # every instance imports, creates its conferences and fills its queue first
    instances = [
        context.Process(
            target=run,
            args=(
                url,
                db,
                Share(f"{label}{n}", commands // processes, CONFERENCES // processes, threads),
                start_at,
                out,
            ),
        )
        for n in range(processes)
    ]
    for instance in instances:
        instance.start()
    results = [out.get(timeout=900) for _ in instances]
    for instance in instances:
        instance.join()
    handled = sum(result["handled"] for result in results)
    elapsed = max(result["finished"] for result in results) - start_at
    outcomes: Counter[str] = Counter()
    for result in results:
        outcomes.update(result["outcomes"])
    return {
        "commands": handled,
        "seconds": round(elapsed, 2),
        "commands_per_s": round(handled / elapsed),
        "publisher_cpu_ms_per_command": round(1000 * sum(result["cpu_s"] for result in results) / max(1, handled), 3),
        "outcomes": dict(outcomes),
        "left_in_outbox": sum(result["left"] for result in results),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--commands", type=int, default=6000)
    parser.add_argument("--processes", type=int, default=2, help="publisher instances, each its own process")
    parser.add_argument("--threads", type=int, default=4, help="worker threads in each instance")
    args = parser.parse_args()
    configure_logging(Settings(log_level="error", log_format="json"))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory() as tmp:
        server = subprocess.Popen(  # noqa: S603 - our own CLI
            [sys.executable, "-m", "stack.cli", "sandbox", "provider", "--port", str(port),
             "--db", str(Path(tmp) / "provider.sqlite"), "--api-key", KEY],
            env={**os.environ, "CONFSYNC_LOG_LEVEL": "warning"},
        )  # fmt: skip
        try:
            for _ in range(300):
                try:
                    httpx.get(f"{url}/openapi.json", timeout=1)
                    break
                except httpx.TransportError:
                    time.sleep(0.05)
            db = Path(tmp) / "confsync.sqlite"
            SqliteStore(db).close()  # the schema, once, before the instances open it
            clean = run_instances(url, db, args, "clean")
            httpx.post(
                f"{url}/_sandbox/faults",
                json={"method": "PATCH", "path": "^/v1/", "status": 503, "probability": 0.1, "retry_after": 0},
                timeout=10,
            )
            faulty = run_instances(url, db, args, "faulty")
        finally:
            server.terminate()
            server.wait(timeout=20)
    print(
        json.dumps(
            {
                "benchmark": "publishers",
                "processes": args.processes,
                "threads": args.threads,
                "clean": clean,
                "with_10pct_503": faulty,
                "target_clean_commands_per_s": 1000,
                "meets_target": clean["commands_per_s"] >= 1000,  # type: ignore[operator]
            }
        )
    )


if __name__ == "__main__":
    main()
