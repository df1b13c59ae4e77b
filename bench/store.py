"""Compare-and-set throughput of each Store backend: sync-token CAS and apply-if-newer.

SQLite runs on a file in a temporary directory (WAL, synchronous=NORMAL, as in production
use); Firestore runs against its emulator, started from the jar on this machine (skipped,
and said so, when the jar is missing). Single-threaded: each CAS reads the version and
writes against it, as a processor does. Prints one JSON object.

    .venv/bin/python bench/store.py [--ops 20000] [--firestore-ops 300]

Target (issue 5): SQLite >= 5,000 token CAS/s single-threaded.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from confsync.ports import Store
from confsync.settings import Settings
from confsync.store import AppliedVersion
from confsync.store.sqlite import SqliteStore
from stack.emulators import find_jar, firestore_emulator

TARGET = 5000


def measure(operation: Callable[[int], None], count: int) -> dict[str, float]:
    latencies = []
    started = time.perf_counter()
    for n in range(count):
        begin = time.perf_counter()
        operation(n)
        latencies.append(time.perf_counter() - begin)
    elapsed = time.perf_counter() - started
    latencies.sort()
    return {
        "ops": count,
        "ops_per_s": round(count / elapsed),
        "p50_ms": round(statistics.median(latencies) * 1000, 3),
        "p99_ms": round(latencies[int(count * 0.99)] * 1000, 3),
    }


def bench(store: Store, count: int) -> dict[str, object]:
    calendar = f"bench-{uuid.uuid4().hex[:6]}@example.com"
    store.ensure_calendar(calendar)
    t0 = datetime(2026, 11, 24, tzinfo=UTC)

    def token_cas(n: int) -> None:
        state = store.get_calendar(calendar)
        if state is None or not store.save_sync_token(
            calendar, f"tok-{n}", expected_version=state.token_version, at=t0
        ):
            raise RuntimeError("an uncontended CAS lost")

    def apply(n: int) -> None:
        store.apply_if_newer(AppliedVersion(f"cnf_{n % 100}", t0 + timedelta(microseconds=n), "fp"))

    return {"token_cas": measure(token_cas, count), "apply_if_newer": measure(apply, count)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ops", type=int, default=20_000)
    parser.add_argument("--firestore-ops", type=int, default=300)
    args = parser.parse_args()

    result: dict[str, object] = {"benchmark": "store_cas", "target_sqlite_token_cas_per_s": TARGET}
    with tempfile.TemporaryDirectory() as tmp:
        sqlite = SqliteStore(Path(tmp) / "state.sqlite")
        result["sqlite"] = bench(sqlite, args.ops)
        sqlite.close()
    sqlite_rate = result["sqlite"]["token_cas"]["ops_per_s"]  # type: ignore[index]
    result["meets_target"] = sqlite_rate >= TARGET

    jar = find_jar(Settings.from_env().firestore_emulator_jar)
    if jar is None:
        result["firestore"] = "skipped: Firestore emulator jar not found"
    else:
        with firestore_emulator(jar, "confsync-bench") as emulator:
            os.environ["FIRESTORE_EMULATOR_HOST"] = emulator.host
            from google.cloud import firestore  # noqa: PLC0415 - after the emulator host is set

            from confsync.store.firestore import FirestoreStore  # noqa: PLC0415

            store = FirestoreStore(firestore.Client(project="confsync-bench"))
            result["firestore_emulator"] = bench(store, args.firestore_ops)
            store.close()
    print(json.dumps(result))


if __name__ == "__main__":
    main()
