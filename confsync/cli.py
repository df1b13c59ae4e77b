"""The ``confsync`` command: the composition root that reads Settings and wires the stages.

This is the only module of the ``confsync`` package that may import a stage (``ingest``,
``processors``, ``publishers``, ``sandbox``). Every command has ``--help``; settings come
from the environment (``confsync config`` lists them); a bad setting is a one-line error and
exit code 2, never a traceback.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from importlib.metadata import version as _dist_version
from pathlib import Path
from typing import Annotated, Any

import structlog
import typer

from confsync.errors import ConfigError
from confsync.logs import configure_logging
from confsync.settings import Settings
from confsync.store.records import PENDING_RESOURCE_ID

__all__ = ["app", "main"]

log = structlog.get_logger(__name__)

app = typer.Typer(
    name="confsync",
    help="Keep a video-conferencing service in step with Google Calendar.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@contextmanager
def _exit_on(*errors: type[Exception], code: int, message: str = "{}") -> Iterator[None]:
    """One of ``errors`` inside becomes one line on stderr (``message`` around it) and exit ``code``."""
    try:
        yield
    except errors as err:
        typer.echo(f"confsync: {message.format(err)}", err=True)
        raise typer.Exit(code=code) from err


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"confsync {_dist_version('confsync')}")
        raise typer.Exit


@app.callback()
def _root(
    ctx: typer.Context,
    version: Annotated[  # noqa: ARG001 - handled by its eager callback
        bool,
        typer.Option("--version", callback=_print_version, is_eager=True, help="Print the version and exit."),
    ] = False,
) -> None:
    """Keep a video-conferencing service in step with Google Calendar.

    Settings are read from CONFSYNC_* environment variables; `confsync config` lists them.
    """
    with _exit_on(ConfigError, code=2, message="configuration error: {}"):
        settings = Settings.from_env()
    configure_logging(settings)
    log.debug("settings loaded", command=ctx.invoked_subcommand, settings=_settings_dict(settings))
    ctx.obj = settings


def _settings_dict(settings: Settings) -> dict[str, str]:
    return {info.env: info.shown for info in settings.describe()}


@app.command("config")
def config_command(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object instead of a table.")] = False,
) -> None:
    """Print the effective settings (secrets masked) with where each comes from."""
    settings: Settings = ctx.obj
    if as_json:
        typer.echo(json.dumps(_settings_dict(settings), indent=2))
        return
    infos = list(settings.describe())
    width = max(len(info.env) for info in infos)
    for info in infos:
        origin = "from environment" if info.from_environment else "default"
        typer.echo(f"{info.env:<{width}}  {info.shown}  [{origin}]")
        typer.echo(f"{'':<{width}}  {info.help}")


sandbox_app = typer.Typer(
    help="Local stand-ins, over real HTTP, for the services confsync cannot reach from here.",
    no_args_is_help=True,
)
app.add_typer(sandbox_app, name="sandbox")


def _token_pairs(values: list[str]) -> dict[str, str]:
    pairs: dict[str, str] = {}
    for value in values:
        token, sep, email = value.partition("=")
        if not sep or not token or "@" not in email:
            raise typer.BadParameter(f"expected TOKEN=EMAIL, got {value!r}", param_hint="--auth-token")
        pairs[token] = email
    return pairs


@sandbox_app.command("calendar")
def sandbox_calendar(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on (0 picks a free one).", min=0, max=65535)] = 8090,
    db: Annotated[
        Path | None, typer.Option(help="SQLite file that keeps the state across restarts (default: memory only).")
    ] = None,
    owner: Annotated[str, typer.Option(help="Whose calendar `primary` is when no auth token says.")] = (
        "owner@sandbox.test"
    ),
    auth_token: Annotated[
        list[str] | None,
        typer.Option(help="TOKEN=EMAIL: require bearer tokens; repeat for more users (default: no auth)."),
    ] = None,
) -> None:
    """Serve a Google Calendar API v3 sandbox under /calendar/v3/ (admin under /_sandbox/)."""
    from sandbox.calendar.server import serve_calendar  # noqa: PLC0415 - stages load only when asked for

    serve_calendar(host=host, port=port, db=db, owner=owner, auth_tokens=_token_pairs(auth_token or []))


@sandbox_app.command("provider")
def sandbox_provider(
    ctx: typer.Context,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.", min=0, max=65535)] = 8091,
    db: Annotated[
        Path | None, typer.Option(help="SQLite file that keeps conferences across restarts (default: memory only).")
    ] = None,
    api_key: Annotated[
        str | None,
        typer.Option(help="The API key clients must send as a bearer token (default: CONFSYNC_PROVIDER_API_KEY)."),
    ] = None,
) -> None:
    """Serve a conferencing API sandbox (the REST contract in confsync.provider; spec at /openapi.json)."""
    from sandbox.provider.server import serve_provider  # noqa: PLC0415 - stages load only when asked for

    settings: Settings = ctx.obj
    key = api_key or (settings.provider_api_key.reveal() if settings.provider_api_key else None)
    if not key:
        raise typer.BadParameter("give --api-key or set CONFSYNC_PROVIDER_API_KEY", param_hint="--api-key")
    serve_provider(host=host, port=port, db=db, api_key=key)


pubsub_app = typer.Typer(help="Google Cloud Pub/Sub (or its emulator): topics and subscriptions.", no_args_is_help=True)
app.add_typer(pubsub_app, name="pubsub")


@pubsub_app.command("bootstrap")
def pubsub_bootstrap(
    ctx: typer.Context,
    push_endpoint: Annotated[
        str | None,
        typer.Option(help="Base URL of the services: worker subscriptions then push to URL/pubsub/TOPIC."),
    ] = None,
    print_terraform_vars: Annotated[
        bool,
        typer.Option(
            "--print-terraform-vars",
            help="Create nothing: print the names and policies as infra/terraform's `pubsub` variable "
            "(JSON for a .tfvars.json file).",
        ),
    ] = False,
) -> None:
    """Create confsync's topics and subscriptions where missing; report what was created or found.

    Safe to run again: existing topics and subscriptions are left exactly as they are.
    Uses CONFSYNC_PROJECT_ID, and PUBSUB_EMULATOR_HOST when set.
    """
    from confsync.transport.topology import terraform_vars, topology  # noqa: PLC0415

    settings: Settings = ctx.obj
    if print_terraform_vars:
        typer.echo(json.dumps(terraform_vars(settings), indent=2))
        return

    from google.api_core import exceptions as google_exceptions  # noqa: PLC0415 - heavy; only here

    from confsync.transport.pubsub import bootstrap  # noqa: PLC0415

    target = f"emulator at {settings.pubsub_emulator_host}" if settings.pubsub_emulator_host else "Google Cloud"
    typer.echo(f"Pub/Sub project {settings.project_id} ({target})")
    with _exit_on(google_exceptions.GoogleAPIError, code=1, message="Pub/Sub refused or did not answer: {}"):
        report = bootstrap(settings, topology(settings), push_endpoint=push_endpoint)
    for line in report.created:
        typer.echo(f"  created {line}")
    for line in report.found:
        typer.echo(f"  found   {line}")
    typer.echo(f"{len(report.created)} created, {len(report.found)} already there")


channels_app = typer.Typer(help="Calendar watch channels: open, renew, stop and list them.", no_args_is_help=True)
app.add_typer(channels_app, name="channels")


def parse_duration(text: str) -> timedelta:
    """'90s', '45m', '24h', '7d' or plain seconds."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    number, unit = (text[:-1], text[-1]) if text and text[-1] in units else (text, "s")
    if not number.isdigit():
        raise typer.BadParameter(f"expected a duration such as 90s, 45m, 24h or 7d, got {text!r}")
    return timedelta(seconds=int(number) * units[unit])


def _channel_manager(settings: Settings, *, with_publisher: bool = False) -> Any:
    from confsync.calendar import CalendarClients  # noqa: PLC0415 - loaded only for these commands
    from confsync.store import open_store  # noqa: PLC0415
    from ingest.channels import ChannelManager  # noqa: PLC0415

    if not settings.webhook_url:
        typer.echo("confsync: CONFSYNC_WEBHOOK_URL is required to open watch channels", err=True)
        raise typer.Exit(code=2)
    publisher = None
    if with_publisher:
        from confsync.transport.pubsub import LazyPubSubPublisher  # noqa: PLC0415

        publisher = LazyPubSubPublisher(settings)
    clients = CalendarClients.from_settings(settings)  # the configured credentials, as the services use
    return ChannelManager(
        open_store(settings.store_url),
        clients.for_subject(None),
        calendar_for=clients.for_subject,
        webhook_url=settings.webhook_url,
        ttl_s=settings.channel_ttl_s,
        publisher=publisher,
        changes_topic=settings.topic_calendar_changes,
    )


def _run_channels(work: Callable[[], None]) -> None:
    from confsync.errors import ConfsyncError  # noqa: PLC0415

    with _exit_on(ConfsyncError, code=1):
        work()


@channels_app.command("ensure")
def channels_ensure(
    ctx: typer.Context, calendar_id: Annotated[str, typer.Argument(help="The calendar to watch.")]
) -> None:
    """Watch a calendar: open a channel unless it already has a live one."""

    def work() -> None:
        channel = _channel_manager(ctx.obj).ensure(calendar_id)
        typer.echo(f"{channel.channel_id}  {channel.calendar_id}  expires {channel.expiration.isoformat()}")

    _run_channels(work)


@channels_app.command("renew")
def channels_renew(
    ctx: typer.Context,
    before: Annotated[str, typer.Option(help="Renew channels expiring within this window (90m, 24h, 2d).")] = "24h",
    unwatched: Annotated[
        bool,
        typer.Option(
            "--unwatched", help="Also open a channel for every active calendar with links that has none (scans all)."
        ),
    ] = False,
) -> None:
    """Reconcile calendars whose channels expire soon (or whose watch failed): one live channel
    each afterwards, the new one opened before the old stops; surplus channels are stopped."""
    window = parse_duration(before)

    def work() -> None:
        channels = _channel_manager(ctx.obj, with_publisher=True)
        report = channels.renew(window)
        if unwatched:
            report.extend(channels.watch_unwatched())
        typer.echo(
            f"renewed {len(report.renewed)}, gone {len(report.gone)}, "
            f"disconnected {len(report.disconnected)}, failed {len(report.failed)}, "
            f"busy {len(report.busy)}, surplus stopped {len(report.stopped)}"
        )
        for calendar_id in report.gone:
            typer.echo(f"  gone: {calendar_id}")
        if report.failed:
            raise typer.Exit(code=1)

    _run_channels(work)


@channels_app.command("stop")
def channels_stop(
    ctx: typer.Context,
    calendar_id: Annotated[str | None, typer.Argument(help="Stop every live channel of this calendar.")] = None,
    channel: Annotated[str | None, typer.Option("--channel", help="Stop this one channel instead.")] = None,
) -> None:
    """Stop watching: one channel, or all of a calendar's."""
    if (calendar_id is None) == (channel is None):
        raise typer.BadParameter("give a CALENDAR_ID or --channel ID, not both and not neither")

    def work() -> None:
        stopped = _channel_manager(ctx.obj).stop(calendar_id=calendar_id, channel_id=channel)
        typer.echo(f"stopped {len(stopped)} channel(s)")
        for channel_id in stopped:
            typer.echo(f"  {channel_id}")

    _run_channels(work)


@channels_app.command("list")
def channels_list(
    ctx: typer.Context,
    expiring_within: Annotated[str, typer.Option(help="Only channels expiring within this window.")] = "3650d",
    as_json: Annotated[bool, typer.Option("--json", help="One JSON list instead of a table.")] = False,
) -> None:
    """List live channels, soonest to expire first (tokens are never shown)."""
    window = parse_duration(expiring_within)

    def work() -> None:
        channels = _channel_manager(ctx.obj).expiring_within(window)
        rows = [
            {
                "channel_id": c.channel_id,
                "calendar_id": c.calendar_id,
                "expiration": c.expiration.isoformat(),
                "confirmed": c.resource_id != PENDING_RESOURCE_ID,  # False: watch failed or under way
            }
            for c in channels
        ]
        if as_json:
            typer.echo(json.dumps(rows, indent=2))
            return
        for row in rows:
            note = "" if row["confirmed"] else "  (not confirmed by Google: retried by the next pass)"
            typer.echo(f"{row['channel_id']}  {row['calendar_id']}  expires {row['expiration']}{note}")
        typer.echo(f"{len(rows)} channel(s)")

    _run_channels(work)


serve_app = typer.Typer(help="Run a confsync service until SIGTERM (then drain in-flight work).", no_args_is_help=True)
app.add_typer(serve_app, name="serve")


_ROLE_HELP = {
    "ingest": "Calendar's watch notifications, the add-on API and the channel routes (8080).",
    "processor": "CalendarChanged -> sync -> classify -> ConferenceCommand (8082).",
    "publisher": "ConferenceCommand -> the conferencing API: retries, idempotency, dead letters (8083).",
    "all": "ingest, processor and publisher in one process (the only role the memory transport allows).",
}
_DEFAULT_PORTS = {"ingest": 8080, "processor": 8082, "publisher": 8083, "all": 8080}


def _serve(  # noqa: PLR0913 - the serve options, named
    settings: Settings, role: str, *, push: bool, host: str, port: int | None, processes: int = 1
) -> None:
    from dataclasses import replace  # noqa: PLC0415

    from stack.processes import serve_processes  # noqa: PLC0415 - stages load only when asked for
    from stack.services import Role  # noqa: PLC0415

    if push:
        settings = replace(settings, delivery="push")
    chosen = _DEFAULT_PORTS[role] if port is None else port
    with _exit_on(ConfigError, code=2, message="configuration error: {}"):
        status = serve_processes(settings, Role(role), host=host, port=chosen, processes=processes)
    if status:
        raise typer.Exit(code=status)


PushOption = Annotated[
    bool, typer.Option("--push", help="Serve push routes instead of pulling (default: CONFSYNC_DELIVERY).")
]
HostOption = Annotated[str, typer.Option(help="Address to listen on (0.0.0.0 in a container).")]
PortOption = Annotated[int | None, typer.Option(help="Port to listen on (0 picks a free one).", min=0, max=65535)]
ProcessesOption = Annotated[
    int,
    typer.Option(
        help="Serve with this many processes sharing the port (one per CPU, say): "
        "one Python process uses one core at a time. Not with CONFSYNC_TRANSPORT=memory.",
        min=1,
        max=64,
    ),
]
_DRAIN = (
    "Serves /healthz and /readyz. On SIGTERM it stops taking work and drains in-flight messages within "
    "CONFSYNC_SHUTDOWN_DEADLINE_S (exit code 3 if they did not finish)."
)


def _add_serve_command(role: str) -> None:
    """``confsync serve ROLE``; every role but ingest may serve push routes instead of pulling."""

    def pulled_or_pushed(
        ctx: typer.Context,
        push: PushOption = False,
        host: HostOption = "127.0.0.1",
        port: PortOption = None,
        processes: ProcessesOption = 1,
    ) -> None:
        _serve(ctx.obj, role, push=push, host=host, port=port, processes=processes)

    def webhook_only(
        ctx: typer.Context, host: HostOption = "127.0.0.1", port: PortOption = None, processes: ProcessesOption = 1
    ) -> None:
        _serve(ctx.obj, role, push=False, host=host, port=port, processes=processes)

    serve_app.command(role, help=f"{_ROLE_HELP[role]} {_DRAIN}")(webhook_only if role == "ingest" else pulled_or_pushed)


for _role in _ROLE_HELP:
    _add_serve_command(_role)


TransportOption = Annotated[
    str | None,
    typer.Option(
        help="pubsub (the Pub/Sub emulator) or memory (in-process). Default: pubsub when the emulator jar is here."
    ),
]


StateDirOption = Annotated[
    Path | None, typer.Option(help="Keep databases and logs here (default: a temporary dir, removed at exit).")
]


def _transport_choice(value: str | None) -> Any:
    if value not in (None, "pubsub", "memory"):
        raise typer.BadParameter(f"expected pubsub or memory, got {value!r}", param_hint="--transport")
    return value


@app.command("local")
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

    Prints one JSON object (also written to --ready-file) with the Calendar API endpoint, the
    conferencing API and its key, the webhook and add-on API addresses and the dev token.
    Restarts a service that dies; Ctrl-C or SIGTERM stops everything it started.
    """
    import signal  # noqa: PLC0415
    import threading  # noqa: PLC0415

    from stack.local import LocalStack, StackError  # noqa: PLC0415 - stages load only when asked for

    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    stack = LocalStack(
        ctx.obj,
        transport=_transport_choice(transport),
        store_url=store,
        state_dir=state_dir,
        ready_file=ready_file,
        on_step=lambda text: typer.echo(f"  {text}", err=True),
    )
    with _exit_on(StackError, ConfigError, code=1, message="the local stack did not start: {}"):
        info = stack.start()
    try:
        typer.echo(json.dumps(info, indent=2))
        typer.echo("confsync local: ready; Ctrl-C stops everything", err=True)
        stack.supervise(stop)
    finally:
        stack.stop()


@app.command("demo")
def demo_command(
    ctx: typer.Context,
    transport: TransportOption = None,
    state_dir: StateDirOption = None,
) -> None:
    """Start the local stack and tell a story: meetings created, moved, renamed, cancelled, switched
    to Meet, a sync-token invalidation and a conferencing outage; then compare Calendar with the
    conferencing service. Exit code 0 only if they agree."""
    import sys  # noqa: PLC0415
    from dataclasses import replace  # noqa: PLC0415

    from rich.console import Console  # noqa: PLC0415 - Typer's own dependency

    from stack.demo import run_story  # noqa: PLC0415 - stages load only when asked for
    from stack.driver import StackDriver  # noqa: PLC0415
    from stack.local import LocalStack, StackError  # noqa: PLC0415

    configure_logging(replace(ctx.obj, log_level="warning"))  # the story is the output; problems still show
    console = Console(highlight=False, width=None if sys.stdout.isatty() else 120)
    started = time.monotonic()
    console.print(
        "[bold]confsync demo[/bold]: Calendar -> webhook -> Pub/Sub -> processor -> publisher -> conferencing API"
    )

    def step(text: str) -> None:
        console.print(f"[dim][{time.monotonic() - started:5.1f}s][/dim] {text}")

    stack = LocalStack(ctx.obj, transport=_transport_choice(transport), state_dir=state_dir, on_step=step)
    try:
        with console.status("starting the local stack ..."):
            info = stack.start()
        step(f"stack ready ({info['transport']} transport); logs in {info['state_dir']}/logs")
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


@app.command("repair-lag")
def repair_lag_command(
    ctx: typer.Context,
    older_than: Annotated[
        str | None, typer.Option(help="Lag that counts (90s, 5m); default CONFSYNC_LAG_REPAIR_AFTER_S.")
    ] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Report the lagging calendars; publish nothing.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object instead of text.")] = False,
) -> None:
    """Publish again what was lost or is stuck: calendars notified but not synced since, and
    commands no publisher has settled (ingest/lag.py)."""
    from datetime import timedelta  # noqa: PLC0415

    from confsync.errors import ConfsyncError  # noqa: PLC0415
    from confsync.store import open_store  # noqa: PLC0415
    from confsync.transport.pubsub import LazyPubSubPublisher  # noqa: PLC0415
    from ingest.lag import LagRepair  # noqa: PLC0415

    settings: Settings = ctx.obj
    window = parse_duration(older_than) if older_than else timedelta(seconds=settings.lag_repair_after_s)
    store, publisher = open_store(settings.store_url), LazyPubSubPublisher(settings)
    with _exit_on(ConfsyncError, code=1):
        try:
            repair = LagRepair(
                store,
                publisher,
                settings.topic_calendar_changes,
                settings.topic_conference_commands,
                settings.topic_conference_commands_dead,
                older_than=window,
                max_republishes=settings.outbox_max_republishes,
            )
            report = repair.run_once(dry_run=dry_run)
        finally:
            publisher.close()
            store.close()
    if as_json:
        typer.echo(json.dumps(report.to_json()))
        return
    verb = "would re-announce" if dry_run else "re-announced"
    lag = "" if report.oldest_lag_s is None else f" (oldest {report.oldest_lag_s:.0f}s behind)"
    typer.echo(f"{report.lagging} calendar(s) lagging{lag}; {verb} {len(report.republished)}")
    typer.echo(f"{report.commands_republished} unsettled command(s) overdue; {verb} them")
    for calendar_id in report.republished:
        typer.echo(f"  {calendar_id}")


@app.command("backfill")
def backfill_command(  # noqa: PLR0913, PLR0917 - one parameter per option (Typer passes them by name)
    ctx: typer.Context,
    calendar: Annotated[list[str] | None, typer.Option("--calendar", help="A calendar to resync (repeatable).")] = None,
    all_calendars: Annotated[bool, typer.Option("--all", help="Every active calendar in the store.")] = False,
    window_days: Annotated[
        int | None, typer.Option(help="Only events ending in the last N days (no reconciliation then).", min=1)
    ] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the decisions; change nothing.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary (and decisions) as JSON.")] = False,
    checkpoint: Annotated[
        Path | None, typer.Option(help="Checkpoint file: a rerun resumes where a killed run stopped.")
    ] = None,
    page_size: Annotated[int, typer.Option(help="Events per Calendar page.", min=1, max=2500)] = 2500,
) -> None:
    """Full resync: list calendars from scratch, publish what their conferences need, reconcile links."""
    import sys  # noqa: PLC0415

    from confsync.calendar import CalendarClients  # noqa: PLC0415
    from confsync.errors import ConfsyncError  # noqa: PLC0415
    from confsync.store import CalendarStatus, open_store  # noqa: PLC0415
    from confsync.transport.pubsub import LazyPubSubPublisher  # noqa: PLC0415
    from processors.backfill import Backfill, Checkpoints  # noqa: PLC0415

    settings: Settings = ctx.obj
    if bool(calendar) == all_calendars:
        raise typer.BadParameter("give --calendar ID (repeatable) or --all, not both and not neither")
    store = open_store(settings.store_url)
    ids = (
        [c.calendar_id for c in store.list_calendars(CalendarStatus.ACTIVE)] if all_calendars else list(calendar or [])
    )
    publisher = LazyPubSubPublisher(settings)
    clients = CalendarClients.from_settings(settings)
    job = Backfill(
        store,
        clients.for_subject(None),
        publisher,
        settings.topic_conference_commands,
        frozenset(settings.conference_solution_names),
        checkpoints=Checkpoints(checkpoint),
        requests_per_s=settings.backfill_requests_per_s,
        page_size=page_size,
        dry_run=dry_run,
        calendar_for=clients.for_subject,
        orphan_after_s=settings.orphan_after_s,
    )
    with _exit_on(ConfsyncError, code=1, message="backfill stopped: {} (rerun with the same --checkpoint to resume)"):
        try:
            if sys.stdout.isatty() and not as_json:
                from rich.progress import Progress  # noqa: PLC0415 - Typer's own dependency

                with Progress() as progress:
                    task = progress.add_task("events read", total=None)
                    job.on_progress = lambda _calendar, count: progress.advance(task, count)
                    summary = job.run(ids, window_days=window_days)
            else:
                summary = job.run(ids, window_days=window_days)
        finally:
            publisher.close()
            clients.close()
    report = {k: v for k, v in summary.__dict__.items() if k != "decisions" or dry_run}
    if as_json:
        typer.echo(json.dumps(report, indent=2))
        return
    for decision in summary.decisions:
        typer.echo(f"{decision['action']:<7} {decision['calendar_id']} {decision['event_id']}  ({decision['why']})")
    typer.echo(
        f"{summary.calendars} calendar(s): {summary.events_read} events read, {summary.updates} updates, "
        f"{summary.deletes} deletes, {summary.unchanged} unchanged, {summary.reconciled} reconciled "
        f"({summary.orphans} never saved on their event), {summary.errors} errors"
        f"{' (dry run: nothing changed)' if dry_run else ''}"
    )


deadletter_app = typer.Typer(help="Dead-lettered conference commands: inspect and replay them.", no_args_is_help=True)
app.add_typer(deadletter_app, name="deadletter")


@deadletter_app.command("list")
def deadletter_list(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON list instead of a table.")] = False,
) -> None:
    """Show dead letters (reason, provider status, attempts, age) without consuming them."""
    from publishers.deadletter import DeadLetters  # noqa: PLC0415

    letters = DeadLetters(ctx.obj)
    try:
        entries = letters.peek()
    finally:
        letters.close()
    if as_json:
        typer.echo(json.dumps([entry.to_json() for entry in entries], indent=2))
        return
    for entry in entries:
        age = "?" if entry.age_s is None else f"{entry.age_s:.0f}s"
        status = entry.status or "-"
        typer.echo(f"{entry.message_id}  {entry.error} {status}  attempts {entry.attempts or '-'}  age {age}")
        typer.echo(f"    {entry.reason}")
    typer.echo(f"{len(entries)} dead letter(s)")


@deadletter_app.command("replay")
def deadletter_replay(
    ctx: typer.Context,
    message_id: Annotated[list[str] | None, typer.Option("--id", help="Replay this dead letter (repeatable).")] = None,
    all_letters: Annotated[bool, typer.Option("--all", help="Replay every dead letter.")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show what would be replayed; change nothing.")] = False,
) -> None:
    """Republish dead letters to the command topic once their cause is fixed."""
    from confsync.transport.pubsub import PubSubPublisher  # noqa: PLC0415
    from publishers.deadletter import DeadLetters  # noqa: PLC0415

    if bool(message_id) == all_letters:
        raise typer.BadParameter("give --id ID (repeatable) or --all, not both and not neither")
    settings: Settings = ctx.obj
    letters, publisher = DeadLetters(settings), PubSubPublisher(settings)
    try:
        replayed = letters.replay(publisher, ids=None if all_letters else set(message_id or []), dry_run=dry_run)
    finally:
        publisher.close()
        letters.close()
    verb = "would replay" if dry_run else "replayed"
    typer.echo(f"{verb} {len(replayed)} dead letter(s)")
    for entry in replayed:
        typer.echo(f"  {entry.message_id}  {entry.conference_id or '?'}")


def main() -> None:
    """Console-script entry point."""
    app()
