"""``confsync retention sweep``: forget the links and applied versions past retention (ingest/retention.py)."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from stack.cli._common import JsonOption, open_stack, settings_of

__all__ = ["app"]

app = typer.Typer(
    help="What confsync keeps about ended events (CONFSYNC_RETAIN_DAYS) and removing what has expired.",
    no_args_is_help=True,
)


@app.command("sweep")
def retention_sweep(
    ctx: typer.Context,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Count what has expired; delete nothing.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Delete the links and applied versions of events that ended (or conferences deleted) more
    than CONFSYNC_RETAIN_DAYS ago. The ingest service does this on its own every
    CONFSYNC_LAG_REPAIR_INTERVAL_S; on Firestore a TTL policy does it and this has nothing to do."""
    with open_stack(ctx) as stack:
        purged = stack.retention_sweep().run_once(dry_run=dry_run)
    if as_json:
        typer.echo(json.dumps({"links": purged.links, "applied": purged.applied, "by_ttl": purged.by_ttl}))
        return
    if purged.by_ttl:
        typer.echo("the store deletes expired records itself (Firestore's TTL policy on expires_at): nothing to sweep")
        return
    verb = "would remove" if dry_run else "removed"
    days = settings_of(ctx).retain_days
    typer.echo(f"{verb} {purged.links} link(s) and {purged.applied} applied version(s) expired ({days} days kept)")
