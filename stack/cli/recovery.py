"""``confsync repair-lag``: recovery, the republishing of what was lost or is stuck (ingest/lag.py).
A full resync is ``confsync backfill`` (stack/cli/backfill.py)."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from stack.cli._common import JsonOption, open_stack, parse_duration

__all__ = ["repair_lag_command"]


def repair_lag_command(
    ctx: typer.Context,
    older_than: Annotated[
        str | None, typer.Option(help="Lag that counts (90s, 5m); default CONFSYNC_LAG_REPAIR_AFTER_S.")
    ] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Report the lagging calendars; publish nothing.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Publish again what was lost or is stuck: calendars notified but not synced since, and
    commands no publisher has settled (ingest/lag.py)."""
    window = parse_duration(older_than) if older_than else None
    with open_stack(ctx, publishes=not dry_run) as stack:
        report = stack.lag_repair(window).run_once(dry_run=dry_run)
    if as_json:
        typer.echo(json.dumps(report.to_json()))
        return
    verb = "would re-announce" if dry_run else "re-announced"
    lag = "" if report.oldest_lag_s is None else f" (oldest {report.oldest_lag_s:.0f}s behind)"
    typer.echo(f"{report.lagging} calendar(s) lagging{lag}; {verb} {len(report.republished)}")
    typer.echo(f"{report.commands_republished} unsettled command(s) overdue; {verb} them")
    for calendar_id in report.republished:
        typer.echo(f"  {calendar_id}")
