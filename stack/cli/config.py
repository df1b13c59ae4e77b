"""``confsync config``: the effective settings and where each comes from."""

from __future__ import annotations

import json

import typer

from confsync.settings import Settings
from stack.cli._common import JsonOption, settings_of

__all__ = ["config_command", "settings_dict"]


def settings_dict(settings: Settings) -> dict[str, str]:
    return {info.env: info.shown for info in settings.describe()}


def config_command(ctx: typer.Context, as_json: JsonOption = False) -> None:
    """Print the effective settings (secrets masked) with where each comes from."""
    settings = settings_of(ctx)
    if as_json:
        typer.echo(json.dumps(settings_dict(settings), indent=2))
        return
    infos = list(settings.describe())
    width = max(len(info.env) for info in infos)
    for info in infos:
        origin = "from environment" if info.from_environment else "default"
        typer.echo(f"{info.env:<{width}}  {info.shown}  [{origin}]")
        typer.echo(f"{'':<{width}}  {info.help}")
