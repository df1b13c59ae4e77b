"""``confsync serve ROLE --processes N``: N copies of one service sharing its port.

A service's Python code runs on one core at a time (the GIL), so one process's throughput
does not grow with the machine's cores (bench/ingesting.py measures the webhook's). N
processes, each a whole ``run_service`` of its own (own clients, own pull workers), listen on
one port with SO_REUSEPORT, and the kernel spreads connections among them.

The parent forks the children before it has built anything (no threads, no gRPC channels
to inherit), then only waits: SIGTERM or SIGINT is passed on to every child, which drains as
one service does. A child that exits on its own (a crash) takes the others down with it, so
the platform restarts the whole container instead of running it short-handed. Only the first
child runs the ingest's lag-repair loop: N loops would announce each lagging calendar N times.

Exit status: 0 when every child drained cleanly, 2 if one refused its configuration, 3 if
one did not drain within the deadline, 1 for any other failure.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import signal
import sys
import traceback
from collections.abc import Iterator
from dataclasses import replace
from types import FrameType

import structlog

from confsync.errors import ConfigError
from confsync.serving import bound_socket
from confsync.settings import Settings
from stack.services import Role, check_config, run_service

__all__ = ["serve_processes"]

log = structlog.get_logger(__name__)

EXIT_CONFIG = 2
EXIT_UNCLEAN = 3


def serve_processes(settings: Settings, role: Role, *, host: str, port: int, processes: int) -> int:
    """Serve ``role`` in ``processes`` processes on one port until signalled; the exit status."""
    if processes < 1:
        raise ConfigError(f"--processes must be at least 1, got {processes}")
    if settings.local_mode and not _is_loopback(host):
        raise ConfigError(
            f"local mode turns authentication off: serve it on 127.0.0.1, ::1 or localhost, not {host!r}",
            variable="CONFSYNC_LOCAL_MODE",
        )
    if processes == 1:
        return 0 if run_service(settings, role, host=host, port=port) else EXIT_UNCLEAN
    if settings.transport == "memory":
        raise ConfigError(
            "the in-process transport lives in one process: it cannot be served by several",
            variable="CONFSYNC_TRANSPORT",
        )
    check_config(settings, role)  # once, here, rather than N times in the children
    children = _Children()
    # Caught before the first fork: a SIGTERM while children are being started stops the
    # ones already running instead of killing the parent and orphaning them.
    previous = {sig: signal.signal(sig, children.on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        with _reserved(host, port) as shared_port:
            for index in range(processes):
                if children.signalled:
                    break
                children.running.add(_fork(_child_settings(settings, index), role, host, shared_port))
            log.info("serving in processes", role=role.value, port=shared_port, pids=sorted(children.running))
            return children.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _is_loopback(host: str) -> bool:
    """Only this machine can connect: a name is trusted only if it is ``localhost``."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _child_settings(settings: Settings, index: int) -> Settings:
    return settings if index == 0 else replace(settings, lag_repair_interval_s=0)


@contextlib.contextmanager
def _reserved(host: str, port: int) -> Iterator[int]:
    """Hold the port (bound, never listening: the kernel routes no connection to it) for the
    children's lifetime, and learn which one port 0 picked."""
    with bound_socket(host, port, reuse_port=True) as sock:
        yield int(sock.getsockname()[1])


def _fork(settings: Settings, role: Role, host: str, port: int) -> int:
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid:
        return pid
    for sig in (signal.SIGTERM, signal.SIGINT):  # not the parent's: run_service catches them itself
        signal.signal(sig, signal.SIG_DFL)
    status = 1
    try:
        status = 0 if run_service(settings, role, host=host, port=port, reuse_port=True) else EXIT_UNCLEAN
    except ConfigError as err:
        print(f"confsync: configuration error: {err}", file=sys.stderr)  # noqa: T201 - as the CLI says it
        status = EXIT_CONFIG
    except BaseException:  # noqa: BLE001 - a child reports whatever ended it, then exits
        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status)  # never return into the parent's CLI code


class _Children:
    """The parent's view of its children: signals are passed on; a child's own exit stops the rest."""

    def __init__(self) -> None:
        self.running: set[int] = set()
        self.signalled = False
        self.crashed = False

    def on_signal(self, signum: int, _frame: FrameType | None) -> None:
        self.signalled = True
        name = signal.Signals(signum).name
        log.info("signal received, stopping every process", signal=name, pids=sorted(self.running))
        self._signal_all()

    def _signal_all(self) -> None:
        for pid in self.running:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)

    def wait(self) -> int:
        """Wait for every child; the worst exit status among them."""
        statuses: list[int] = []
        while self.running:
            pid, wait_status = os.waitpid(-1, 0)
            if pid not in self.running:
                continue
            self.running.discard(pid)
            statuses.append(os.waitstatus_to_exitcode(wait_status))
            if not self.signalled and not self.crashed:
                self.crashed = True
                log.error("a process exited on its own: stopping the others", pid=pid, status=statuses[-1])
                self._signal_all()
        return _worst(statuses, crashed=self.crashed)


def _worst(statuses: list[int], *, crashed: bool) -> int:
    if all(status == 0 for status in statuses):
        return 1 if crashed else 0
    for wanted in (EXIT_CONFIG, EXIT_UNCLEAN):
        if wanted in statuses:
            return wanted
    return 1
