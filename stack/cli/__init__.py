"""The ``confsync`` command: one module per command group, each taking its parts from a
``stack.root.Stack``.

Every command has ``--help``; settings come from the environment (``confsync config`` lists
them); a bad setting is a one-line error and exit code 2, never a traceback. The stages load
only when a command needs them, so ``--help`` and ``config`` answer at once.
"""

from __future__ import annotations

from importlib.metadata import version as _dist_version
from typing import Annotated

import structlog
import typer

from confsync.errors import ConfigError
from confsync.logs import configure_logging
from confsync.settings import Settings
from stack.cli import backfill, channels, deadletter, pubsub, retention, sandbox, serve, users
from stack.cli._common import exit_on
from stack.cli.config import config_command, settings_dict
from stack.cli.local import demo_command, local_command
from stack.cli.recovery import repair_lag_command
from stack.cli.status import status_command

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
    with exit_on(ConfigError, code=2, message="configuration error: {}"):
        settings = Settings.from_env()
    configure_logging(settings)
    log.debug("settings loaded", command=ctx.invoked_subcommand, settings=settings_dict(settings))
    ctx.obj = settings


app.command("config")(config_command)
app.add_typer(sandbox.app, name="sandbox")
app.add_typer(pubsub.app, name="pubsub")
app.add_typer(channels.app, name="channels")
app.add_typer(serve.app, name="serve")
app.command("local")(local_command)
app.command("demo")(demo_command)
app.command("repair-lag")(repair_lag_command)
app.add_typer(backfill.app, name="backfill")
app.command("status")(status_command)
app.add_typer(deadletter.app, name="deadletter")
app.add_typer(retention.app, name="retention")
app.add_typer(users.app, name="users")


def main() -> None:
    """Console-script entry point."""
    app()
