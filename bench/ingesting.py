"""Notifications/s the webhook accepts, each durably published to Pub/Sub (the emulator).

The ingest service runs as production runs it, ``confsync serve ingest --processes N``
(SQLite store, the Pub/Sub emulator started here from the jar); this process sends
Calendar-style notifications for 200 channels with an async client at a fixed concurrency
and measures throughput and latency. Every 200 answer means the CalendarChanged was
published; the bench counts the topic's messages to check.

    .venv/bin/python bench/ingesting.py [--seconds 10] [--concurrency 24] [--runs 3] [--processes 2]

One process spends about 0.45 ms of CPU per notification and, Python running one thread at
a time, tops out near 2,000/s; ``--processes 2`` (the default: this machine has two cores)
lets the service use the second core.

The emulator's JVM takes about one of the machine's two cores while it runs, so the figures
are medians of ``--runs`` runs; every run is listed too.

Target (issue 7): >= 2,000 notifications/s with p99 < 50 ms on this machine.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from proc import cpu_seconds

from confsync.serving import free_port

CHANNELS = 200
_NUMBERS = dict.fromkeys(range(CHANNELS), 1)


def serve(port: int, store_path: str, processes: int) -> subprocess.Popen[bytes]:
    """The server side: `confsync serve ingest`, configured through its environment."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONFSYNC_")}
    env.update(
        {
            "CONFSYNC_PROJECT_ID": "bench",
            "CONFSYNC_TOPIC_CALENDAR_CHANGES": "changes",
            "CONFSYNC_STORE_URL": f"sqlite:///{store_path}",
            "CONFSYNC_LOCAL_MODE": "true",
            "CONFSYNC_DEV_TOKEN": "unused",
            "CONFSYNC_WEBHOOK_URL": "http://127.0.0.1/notifications",
            "CONFSYNC_PROVIDER_URL": "http://127.0.0.1:9",
            "CONFSYNC_PROVIDER_API_KEY": "unused",
            "CONFSYNC_LOG_LEVEL": "warning",
            "CONFSYNC_LOG_FORMAT": "json",
        }
    )
    argv = ["serve", "ingest", "--port", str(port), "--processes", str(processes)]
    return subprocess.Popen([sys.executable, "-m", "stack.cli", *argv], env=env)  # noqa: S603 - our own CLI


async def load(url: str, seconds: float, concurrency: int) -> tuple[list[float], int, int]:
    """Keep-alive HTTP/1.1 over raw asyncio streams: a load generator far cheaper than the
    server it measures (httpx's async pool itself collapses near 64 connections)."""
    host, port_text = url.split("//")[1].split("/", maxsplit=1)[0].split(":")
    path = "/" + url.split("//")[1].split("/", 1)[1]
    latencies: list[float] = []
    failures = 0
    numbers = _NUMBERS  # shared by the warm-up and the run: every notification is new, none a duplicate
    stop_at = time.monotonic() + seconds

    async def worker(n: int) -> None:
        nonlocal failures
        reader, writer = await asyncio.open_connection(host, int(port_text))
        # Channels of this worker's own: two requests in flight for one channel could reach two
        # processes, and the later number, recorded first, makes the earlier one a duplicate.
        mine = itertools.cycle(range(n, CHANNELS, concurrency))
        try:
            while time.monotonic() < stop_at:
                channel = next(mine)
                numbers[channel] += 1
                request = (
                    f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Length: 0\r\n"
                    f"X-Goog-Channel-ID: chan-{channel}\r\nX-Goog-Channel-Token: token-{channel}\r\n"
                    f"X-Goog-Resource-ID: res-{channel}\r\nX-Goog-Resource-State: exists\r\n"
                    f"X-Goog-Message-Number: {numbers[channel]}\r\n\r\n"
                ).encode()
                started = time.perf_counter()
                writer.write(request)
                status_line = await reader.readline()
                length = 0
                while (line := await reader.readline()) not in (b"\r\n", b""):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                if length:
                    await reader.readexactly(length)
                if status_line.split(b" ")[1] == b"200":
                    latencies.append(time.perf_counter() - started)
                else:
                    failures += 1
        finally:
            writer.close()

    await asyncio.gather(*(worker(n) for n in range(concurrency)))
    return latencies, failures, len(latencies)


def main() -> None:  # noqa: PLR0915 - one linear script: start, seed, load, count, report
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--concurrency", type=int, default=24)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--processes", type=int, default=2, help="confsync serve ingest --processes N")
    args = parser.parse_args()
    if not 1 <= args.concurrency <= CHANNELS:
        parser.error(f"--concurrency must be 1 to {CHANNELS} (each connection sends for channels of its own)")

    from google.api_core.retry import Retry  # noqa: PLC0415
    from google.cloud import pubsub_v1  # noqa: PLC0415

    from confsync.settings import Secret, Settings  # noqa: PLC0415
    from confsync.store import ChannelRecord  # noqa: PLC0415
    from confsync.store.sqlite import SqliteStore  # noqa: PLC0415
    from stack.emulators import find_jar, pubsub_emulator  # noqa: PLC0415

    jar = find_jar(Settings.from_env().pubsub_emulator_jar)
    if jar is None:
        print(json.dumps({"benchmark": "ingest_webhook", "skipped": "Pub/Sub emulator jar not found"}))
        return
    with pubsub_emulator(jar) as emulator, tempfile.TemporaryDirectory() as tmp:
        os.environ["PUBSUB_EMULATOR_HOST"] = emulator.host
        admin, subscriber = pubsub_v1.PublisherClient(), pubsub_v1.SubscriberClient()
        topic = admin.topic_path("bench", "changes")
        admin.create_topic(name=topic, retry=Retry(timeout=30))
        subscription = subscriber.subscription_path("bench", "changes-count")
        subscriber.create_subscription(name=subscription, topic=topic, retry=Retry(timeout=30))
        work = admin.topic_path("bench", Settings().topic_channel_work)  # ingest's channel work: idle here
        admin.create_topic(name=work, retry=Retry(timeout=30))
        work_sub = subscriber.subscription_path("bench", Settings().sub_channel_work)
        subscriber.create_subscription(name=work_sub, topic=work, retry=Retry(timeout=30))
        store_path = Path(tmp) / "state.sqlite"
        store = SqliteStore(store_path)
        expiration = datetime.now(UTC) + timedelta(days=1)
        for n in range(CHANNELS):
            store.add_channel(
                ChannelRecord(f"chan-{n}", f"cal-{n}@example.com", f"res-{n}", Secret(f"token-{n}"), expiration)
            )
        store.close()
        port = free_port()
        server = serve(port, str(store_path), args.processes)
        url = f"http://127.0.0.1:{port}/notifications"
        try:
            import httpx  # noqa: PLC0415

            for _ in range(300):
                if server.poll() is not None:
                    raise SystemExit("the ingest server exited at start")
                try:
                    httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
                    break
                except httpx.TransportError:
                    time.sleep(0.05)
            pids = {"ingest": server.pid, "emulator": emulator.pid}

            def cpu_now() -> dict[str, float]:
                """CPU seconds used so far: the ingest processes, the emulator, this load generator."""
                used = {name: cpu_seconds(pid, with_descendants=True) for name, pid in pids.items()}
                return used | {"load": time.process_time()}

            warm, _, _ = asyncio.run(load(url, 4.0, args.concurrency))  # warm up, the emulator's JIT too
            expected = len(warm)
            runs = []
            for _ in range(args.runs):
                cpu_before = cpu_now()
                started = time.perf_counter()
                latencies, failures, _ = asyncio.run(load(url, args.seconds, args.concurrency))
                elapsed = time.perf_counter() - started
                cpu_after = cpu_now()
                latencies.sort()
                expected += len(latencies)
                runs.append(
                    {
                        "notifications_per_s": round(len(latencies) / elapsed),
                        "p50_ms": round(statistics.median(latencies) * 1000, 2),
                        "p99_ms": round(latencies[int(len(latencies) * 0.99)] * 1000, 2),
                        "failed": failures,
                        "cpu_ms_per_notification": {
                            name: round(1000 * (cpu_after[name] - cpu_before[name]) / max(1, len(latencies)), 3)
                            for name in cpu_before
                        },
                    }
                )
        finally:
            server.terminate()
            server.wait(timeout=20)
        published = 0
        while True:
            try:
                answer = subscriber.pull(
                    subscription=subscription, max_messages=1000, timeout=3, retry=Retry(timeout=4)
                )
            except Exception:  # noqa: BLE001 - the emulator answers DeadlineExceeded when empty
                break
            if not answer.received_messages:
                break
            published += len(answer.received_messages)
            subscriber.acknowledge(subscription=subscription, ack_ids=[m.ack_id for m in answer.received_messages])
        subscriber.close()
        admin.transport.close()
    rate = statistics.median(run["notifications_per_s"] for run in runs)
    p99 = statistics.median(run["p99_ms"] for run in runs)
    print(
        json.dumps(
            {
                "benchmark": "ingest_webhook",
                "concurrency": args.concurrency,
                "processes": args.processes,
                "notifications_per_s": rate,
                "p99_ms": p99,
                "runs": runs,
                "published_messages_counted": published,
                "published_expected": expected,
                "target_notifications_per_s": 2000,
                "target_p99_ms": 50,
                "meets_target": rate >= 2000 and p99 < 50,
            }
        )
    )


if __name__ == "__main__":
    main()
