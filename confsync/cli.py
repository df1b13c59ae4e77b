"""The ``confsync`` command: the composition root that reads Settings and wires the stages.

This is the only module of the ``confsync`` package that may import a stage (``ingest``,
``processors``, ``publishers``, ``sandbox``). Every command has ``--help``; settings come
from the environment (``confsync config`` lists them); a bad setting is a one-line error and
exit code 2, never a traceback.
"""

from __future__ import annotations

import json
from importlib.metadata import version as _dist_version
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


def main() -> None:
    """Console-script entry point."""
    app()
