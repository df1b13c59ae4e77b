"""``confsync backfill`` and ``confsync repair-lag``: recovery, a full resync of calendars
(processors/backfill.py) and the republishing of what was lost or is stuck (ingest/lag.py)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from confsync.errors import ConfsyncError
from confsync.store import CalendarStatus
from stack.cli._common import JsonOption, exit_on, open_stack, parse_duration

__all__ = ["backfill_command", "repair_lag_command"]


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
    if bool(calendar) == all_calendars:
        raise typer.BadParameter("give --calendar ID (repeatable) or --all, not both and not neither")
    stopped = "backfill stopped: {} (rerun with the same --checkpoint to resume)"
    with open_stack(ctx, publishes=not dry_run) as stack, exit_on(ConfsyncError, code=1, message=stopped):
        store = stack.store
        ids = [c.calendar_id for c in store.list_calendars(CalendarStatus.ACTIVE)] if all_calendars else calendar
        job = stack.backfill(checkpoint=checkpoint, page_size=page_size, dry_run=dry_run)
        if sys.stdout.isatty() and not as_json:
            from rich.progress import Progress  # noqa: PLC0415 - Typer's own dependency

            with Progress() as progress:
                task = progress.add_task("events read", total=None)
                job.on_progress = lambda _calendar, count: progress.advance(task, count)
                summary = job.run(list(ids or []), window_days=window_days)
        else:
            summary = job.run(list(ids or []), window_days=window_days)
    if as_json:
        typer.echo(json.dumps(summary.to_json(with_decisions=dry_run), indent=2))
        return
    for decision in summary.decisions:
        typer.echo(f"{decision.action:<7} {decision.calendar_id} {decision.event_id}  ({decision.why})")
    typer.echo(
        f"{summary.calendars} calendar(s): {summary.events_read} events read, {summary.updates} updates, "
        f"{summary.deletes} deletes, {summary.unchanged} unchanged, {summary.reconciled} reconciled "
        f"({summary.orphans} never saved on their event), {summary.errors} errors"
        f"{' (dry run: nothing changed)' if dry_run else ''}"
    )
