"""``confsync deadletter list|replay``: dead-lettered conference commands (publishers/deadletter.py)."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from stack.cli._common import JsonOption, open_stack

__all__ = ["app"]

app = typer.Typer(help="Dead-lettered conference commands: inspect and replay them.", no_args_is_help=True)


@app.command("list")
def deadletter_list(ctx: typer.Context, as_json: JsonOption = False) -> None:
    """Show dead letters (reason, provider status, attempts, age) without consuming them."""
    with open_stack(ctx) as stack:
        entries = stack.dead_letters.peek()
    if as_json:
        typer.echo(json.dumps([entry.to_json() for entry in entries], indent=2))
        return
    for entry in entries:
        age = "?" if entry.age_s is None else f"{entry.age_s:.0f}s"
        status = entry.status or "-"
        typer.echo(f"{entry.message_id}  {entry.error} {status}  attempts {entry.attempts or '-'}  age {age}")
        typer.echo(f"    {entry.reason}")
    typer.echo(f"{len(entries)} dead letter(s)")


@app.command("replay")
def deadletter_replay(
    ctx: typer.Context,
    message_id: Annotated[list[str] | None, typer.Option("--id", help="Replay this dead letter (repeatable).")] = None,
    all_letters: Annotated[bool, typer.Option("--all", help="Replay every dead letter.")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show what would be replayed; change nothing.")] = False,
) -> None:
    """Republish dead letters to the command topic once their cause is fixed."""
    if bool(message_id) == all_letters:
        raise typer.BadParameter("give --id ID (repeatable) or --all, not both and not neither")
    with open_stack(ctx, publishes=True) as stack:
        ids = None if all_letters else set(message_id or [])
        replayed = stack.dead_letters.replay(stack.publisher, ids=ids, dry_run=dry_run)
    verb = "would replay" if dry_run else "replayed"
    typer.echo(f"{verb} {len(replayed)} dead letter(s)")
    for entry in replayed:
        typer.echo(f"  {entry.message_id}  {entry.conference_id or '?'}")
