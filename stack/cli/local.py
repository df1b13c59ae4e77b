"""``confsync local`` and ``confsync demo``: the whole stack on 127.0.0.1 (stack/local.py), and
the story told over it (stack/demo.py)."""

from __future__ import annotations

import json
import signal
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Annotated, Literal

import typer

from confsync.errors import ConfigError
from confsync.logs import configure_logging
from stack.cli._common import StateDirOption, exit_on, settings_of

__all__ = ["demo_command", "local_command"]

TransportOption = Annotated[
    str | None,
    typer.Option(
        help="pubsub (the Pub/Sub emulator) or memory (in-process). Default: pubsub when the emulator jar is here."
    ),
]


def _transport_choice(value: str | None) -> Literal["pubsub", "memory"] | None:
    if value == "pubsub":
        return "pubsub"
    if value == "memory":
        return "memory"
    if value is None:
        return None
    raise typer.BadParameter(f"expected pubsub or memory, got {value!r}", param_hint="--transport")


def local_command(
    ctx: typer.Context,
    ready_file: Annotated[
        Path | None, typer.Option(help="Write the stack's addresses and keys here (JSON) once it is ready.")
    ] = None,
    transport: TransportOption = None,
    store: Annotated[str | None, typer.Option(help="Store URL (default: a SQLite file in the state dir).")] = None,
    state_dir: StateDirOption = None,
) -> None:
    """Run the whole stack on 127.0.0.1: both sandboxes, Pub/Sub (emulator) and every service.

    The sandboxes require authentication and are set up as for a real install: users alice,
    bob and carol@example.com and dave@partner.example at Google and the vendor, confsync's
    OAuth clients, and a service account with domain-wide delegation for example.com; users
    connect through ingest's /connect pages and call the add-on API with Google ID tokens.

    Prints one JSON object (also written to --ready-file, mode 0600) with the Calendar API
    endpoint, both sandboxes' base URLs, the conferencing API and its key, the webhook and
    add-on API addresses, the ID tokens' audience, each user's Calendar token and the dev
    token. Restarts a service that dies; Ctrl-C or SIGTERM stops everything it started.
    """
    from stack.local import LocalStack, StackError  # noqa: PLC0415 - the stack loads only when asked for

    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    stack = LocalStack(
        settings_of(ctx),
        transport=_transport_choice(transport),
        store_url=store,
        state_dir=state_dir,
        ready_file=ready_file,
        on_step=lambda text: typer.echo(f"  {text}", err=True),
    )
    with exit_on(StackError, ConfigError, code=1, message="the local stack did not start: {}"):
        info = stack.start()
    try:
        typer.echo(json.dumps(info.to_json(), indent=2))
        typer.echo("confsync local: ready; Ctrl-C stops everything", err=True)
        stack.supervise(stop)
    finally:
        stack.stop()


def demo_command(ctx: typer.Context, transport: TransportOption = None, state_dir: StateDirOption = None) -> None:
    """Start the local stack and tell a story: users connect, a newcomer is asked to connect first;
    meetings created, moved, renamed, cancelled, switched to Meet, a sync-token invalidation and
    a conferencing outage; then compare Calendar with the conferencing service. Exit code 0 only
    if they agree."""
    from rich.console import Console  # noqa: PLC0415 - Typer's own dependency

    from stack.demo import run_story  # noqa: PLC0415 - the stack loads only when asked for
    from stack.driver import StackDriver  # noqa: PLC0415
    from stack.local import LocalStack, StackError  # noqa: PLC0415

    settings = settings_of(ctx)
    configure_logging(replace(settings, log_level="warning"))  # the story is the output; problems still show
    console = Console(highlight=False, width=None if sys.stdout.isatty() else 120)
    started = time.monotonic()
    console.print(
        "[bold]confsync demo[/bold]: Calendar -> webhook -> Pub/Sub -> processor -> publisher -> conferencing API"
    )

    def step(text: str) -> None:
        console.print(f"[dim][{time.monotonic() - started:5.1f}s][/dim] {text}")

    stack = LocalStack(settings, transport=_transport_choice(transport), state_dir=state_dir, on_step=step)
    try:
        with console.status("starting the local stack ..."):
            info = stack.start()
        step(f"stack ready ({info.transport} transport); logs in {info.state_dir}/logs")
        driver = StackDriver(info)
        try:
            agreed = run_story(driver, console, started=started)
        finally:
            driver.close()
    except (StackError, ConfigError) as err:
        console.print(f"confsync: the local stack did not start: {err}")
        raise typer.Exit(code=1) from err
    finally:
        with console.status("stopping the local stack ..."):
            stack.stop()
    step(f"done in {time.monotonic() - started:.0f}s")
    if not agreed:
        raise typer.Exit(code=1)
