"""The ``confsync`` command: the composition root that reads Settings and wires the stages.

This is the only module of the ``confsync`` package that may import a stage (``ingest``,
``processors``, ``publishers``, ``sandbox``). Every command has ``--help``; settings come
from the environment (``confsync config`` lists them); a bad setting is a one-line error and
exit code 2, never a traceback.
"""

from __future__ import annotations

import json
from importlib.metadata import version as _dist_version
from pathlib import Path
from typing import Annotated

import structlog
import typer

from confsync.errors import ConfigError
from confsync.logs import configure_logging
from confsync.settings import Settings

__all__ = ["app", "main"]

log = structlog.get_logger(__name__)

app = typer.Typer(
    name="confsync",
    help="Keep a video-conferencing service in step with Google Calendar.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


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
    try:
        settings = Settings.from_env()
    except ConfigError as err:
        typer.echo(f"confsync: configuration error: {err}", err=True)
        raise typer.Exit(code=2) from err
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
) -> None:
    """Create confsync's topics and subscriptions where missing; report what was created or found.

    Safe to run again: existing topics and subscriptions are left exactly as they are.
    Uses CONFSYNC_PROJECT_ID, and PUBSUB_EMULATOR_HOST when set.
    """
    from google.api_core import exceptions as google_exceptions  # noqa: PLC0415 - heavy; only here

    from confsync.transport.pubsub import bootstrap  # noqa: PLC0415
    from confsync.transport.topology import topology  # noqa: PLC0415

    settings: Settings = ctx.obj
    target = f"emulator at {settings.pubsub_emulator_host}" if settings.pubsub_emulator_host else "Google Cloud"
    typer.echo(f"Pub/Sub project {settings.project_id} ({target})")
    try:
        report = bootstrap(settings, topology(settings), push_endpoint=push_endpoint)
    except google_exceptions.GoogleAPIError as err:
        typer.echo(f"confsync: Pub/Sub refused or did not answer: {err}", err=True)
        raise typer.Exit(code=1) from err
    for line in report.created:
        typer.echo(f"  created {line}")
    for line in report.found:
        typer.echo(f"  found   {line}")
    typer.echo(f"{len(report.created)} created, {len(report.found)} already there")


def main() -> None:
    """Console-script entry point."""
    app()
