"""``confsync serve ROLE --processes N``: several processes on one port, each a whole
service; SIGTERM drains them all, a crashed one takes the rest down, and the in-process
transport is refused."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from google.api_core.retry import Retry
from tests_support import PROVIDER_KEY, RunningCalendar, RunningProvider
from tests_support.cli import confsync_env, run_confsync, start_confsync

from bench.proc import descendants
from confsync.serving import free_port
from confsync.settings import Secret
from confsync.store import ChannelRecord
from confsync.store.sqlite import SqliteStore

PROJECT = "confsync-test"
CHANNELS = 12


def _env(tmp_path: Path, calendar: RunningCalendar, provider: RunningProvider) -> dict[str, str]:
    return confsync_env(
        store=tmp_path / "state.sqlite",
        CONFSYNC_PROJECT_ID=PROJECT,
        CONFSYNC_LOCAL_MODE="true",
        CONFSYNC_DEV_TOKEN="dev",
        CONFSYNC_CALENDAR_API_ENDPOINT=calendar.api_endpoint,
        CONFSYNC_PROVIDER_URL=provider.url,
        CONFSYNC_PROVIDER_API_KEY=PROVIDER_KEY,
        CONFSYNC_WEBHOOK_URL="http://127.0.0.1:9/notifications",
        CONFSYNC_SHUTDOWN_DEADLINE_S="5",
    )


class Served:
    def __init__(self, process: subprocess.Popen[str], url: str) -> None:
        self.process, self.url = process, url

    def pids(self, want: int, timeout_s: float = 30.0) -> set[int]:
        """The processes answering, asked over fresh connections until ``want`` have answered.

        The public answer names no process: the kernel says which one holds each connection."""
        seen: set[int] = set()
        deadline = time.monotonic() + timeout_s
        while len(seen) < want and time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", int(self.url.rpartition(":")[2])), timeout=2) as conn:
                    conn.sendall(b"GET /healthz HTTP/1.1\r\nHost: confsync\r\n\r\n")
                    if conn.recv(1024).startswith(b"HTTP/1.1 200"):  # kept alive: the server end is still open
                        seen |= _holders(conn, [self.process.pid, *descendants(self.process.pid)])
            except OSError:
                time.sleep(0.1)
        return seen


def _holders(conn: socket.socket, pids: list[int]) -> set[int]:
    """Which of ``pids`` hold the server end of ``conn`` (its inode in /proc/net/tcp)."""
    ends = (conn.getpeername()[1], conn.getsockname()[1])
    inodes = set()
    for row in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = row.split()
        if tuple(int(address.rpartition(":")[2], 16) for address in fields[1:3]) == ends:
            inodes.add(f"socket:[{fields[9]}]")
    return {pid for pid in pids if _open_files(pid) & inodes}


def _open_files(pid: int) -> set[str]:
    found = set()
    with contextlib.suppress(OSError):  # the process, or one of its descriptors, may go while it is read
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            with contextlib.suppress(OSError):
                found.add(str(fd.readlink()))
    return found


@pytest.fixture
def served(
    tmp_path: Path, calendar_sandbox: RunningCalendar, provider_sandbox: RunningProvider, pubsub_emulator_host: str
) -> Iterator[Served]:
    from google.cloud import pubsub_v1  # noqa: PLC0415 - only these tests talk to the emulator themselves

    assert pubsub_emulator_host
    admin, subscriber = pubsub_v1.PublisherClient(), pubsub_v1.SubscriberClient()
    topic = admin.topic_path(PROJECT, "calendar-changes")
    admin.create_topic(name=topic, retry=Retry(timeout=30))
    subscription = subscriber.subscription_path(PROJECT, "count")
    subscriber.create_subscription(name=subscription, topic=topic, retry=Retry(timeout=30))
    admin.transport.close()
    subscriber.close()
    store = SqliteStore(tmp_path / "state.sqlite")
    expiration = datetime.now(UTC) + timedelta(days=1)
    for n in range(CHANNELS):
        record = ChannelRecord(f"chan-{n}", f"cal-{n}@example.com", f"res-{n}", Secret(f"tok-{n}"), expiration)
        store.add_channel(record)
    store.close()
    port = free_port()
    env = _env(tmp_path, calendar_sandbox, provider_sandbox)
    process = start_confsync(
        "serve", "ingest", "--port", str(port), "--processes", "2", env=env, stderr=subprocess.STDOUT
    )
    yield Served(process, f"http://127.0.0.1:{port}")
    if process.poll() is None:
        process.kill()
    process.communicate(timeout=30)


def _pull_all(expected: int) -> int:
    from google.cloud import pubsub_v1  # noqa: PLC0415

    subscriber = pubsub_v1.SubscriberClient()
    path = subscriber.subscription_path(PROJECT, "count")
    got = 0
    deadline = time.monotonic() + 20
    try:
        while got < expected and time.monotonic() < deadline:
            answer = subscriber.pull(subscription=path, max_messages=100, timeout=5, retry=Retry(timeout=10))
            got += len(answer.received_messages)
    finally:
        subscriber.close()
    return got


def test_two_processes_share_the_port_publish_every_notification_and_drain_on_sigterm(served: Served) -> None:
    pids = served.pids(want=2)
    assert len(pids) == 2, f"only {pids} answered: the second process does not serve the port"
    assert served.process.pid not in pids, "the parent only supervises"

    statuses = []
    for n in range(CHANNELS):  # a connection each, so both processes take some
        headers = {
            "X-Goog-Channel-ID": f"chan-{n}",
            "X-Goog-Channel-Token": f"tok-{n}",
            "X-Goog-Resource-ID": f"res-{n}",
            "X-Goog-Resource-State": "exists",
            "X-Goog-Message-Number": "7",
        }
        statuses.append(httpx.post(f"{served.url}/notifications", headers=headers, timeout=10).status_code)
    assert statuses == [200] * CHANNELS
    assert _pull_all(CHANNELS) == CHANNELS, "every 200 was published"

    served.process.send_signal(signal.SIGTERM)
    output, _ = served.process.communicate(timeout=30)
    assert served.process.returncode == 0, output
    for pid in pids:
        assert not Path(f"/proc/{pid}").exists(), f"process {pid} outlived its parent"


def test_a_crashed_process_takes_the_others_down_and_the_exit_code_says_so(served: Served) -> None:
    pids = sorted(served.pids(want=2))
    assert len(pids) == 2
    os.kill(pids[0], signal.SIGKILL)
    output, _ = served.process.communicate(timeout=30)
    assert served.process.returncode == 1, output
    assert "a process exited on its own" in output
    assert not Path(f"/proc/{pids[1]}").exists(), "the surviving process was stopped too"


def test_several_processes_are_refused_with_the_in_process_transport(tmp_path: Path) -> None:
    env = confsync_env(store=tmp_path / "s.sqlite", CONFSYNC_TRANSPORT="memory")
    done = run_confsync("serve", "all", "--processes", "2", env=env)
    assert done.returncode == 2
    assert "cannot be served by several" in done.stderr
    assert "Traceback" not in done.stderr
