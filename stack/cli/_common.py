"""What every command shares: its settings and stack, its errors as one line and an exit code."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from confsync.errors import ConfigError, ConfsyncError
from confsync.settings import Settings

if TYPE_CHECKING:
    from stack.root import Stack

__all__ = ["JsonOption", "StateDirOption", "exit_on", "open_stack", "parse_duration", "settings_of"]

JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")]
StateDirOption = Annotated[
    Path | None, typer.Option(help="Keep databases and logs here (default: a temporary dir, removed at exit).")
]


@contextmanager
def exit_on(*errors: type[Exception], code: int, message: str = "{}") -> Iterator[None]:
    """One of ``errors`` inside becomes one line on stderr (``message`` around it) and exit ``code``."""
    try:
        yield
    except errors as err:
        typer.echo(f"confsync: {message.format(err)}", err=True)
        raise typer.Exit(code=code) from err


def settings_of(ctx: typer.Context) -> Settings:
    settings: Settings = ctx.obj
    return settings


@contextmanager
def open_stack(ctx: typer.Context, *, publishes: bool = False) -> Iterator[Stack]:
    """The command's stack, closed after it; a bad setting exits 2, any other confsync error 1.

    ``publishes``: the command sends messages, which the in-process transport would keep in
    this process, where no service reads them."""
    from stack.root import Stack  # noqa: PLC0415 - the stages load only when a command needs them

    settings = settings_of(ctx)
    with exit_on(ConfigError, code=2, message="configuration error: {}"):
        if publishes and settings.transport == "memory":
            raise ConfigError(
                "this command publishes to Pub/Sub; the in-process transport lives inside `confsync serve all`",
                variable="CONFSYNC_TRANSPORT",
            )
    with (
        Stack(settings) as stack,
        exit_on(ConfsyncError, code=1),
        exit_on(ConfigError, code=2, message="configuration error: {}"),
    ):
        yield stack


def parse_duration(text: str) -> timedelta:
    """'90s', '45m', '24h', '7d' or plain seconds."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    number, unit = (text[:-1], text[-1]) if text and text[-1] in units else (text, "s")
    if not number.isdigit():
        raise typer.BadParameter(f"expected a duration such as 90s, 45m, 24h or 7d, got {text!r}")
    return timedelta(seconds=int(number) * units[unit])
