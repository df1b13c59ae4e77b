"""``confsync backfill``: a full resync of calendars, fanned out to the processors
(processors/backfill.py), and ``confsync backfill status``: how far a job has got.

The job publishes one request per calendar and exits; the processors list the calendars and
record each outcome in the store, where ``status`` reads it. With the in-process transport (the
embedded default) the processor and publisher stages run inside this command until every
calendar is done or failed: the same code, one process.
"""

from __future__ import annotations

import gc
import json
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Annotated

import typer

from confsync.contracts import MAX_WINDOW_DAYS
from confsync.errors import ConfsyncError
from confsync.store import BackfillJob, BackfillProgress, BackfillState
from processors.backfill import Selection, Summary
from stack.cli._common import JsonOption, exit_on, open_stack, settings_of

if TYPE_CHECKING:
    from confsync.ports import Store
    from stack.root import Stack

__all__ = ["app", "dry_run"]

app = typer.Typer(
    help="Resync calendars in full: one request per calendar to the processors, resumable.",
    invoke_without_command=True,
    no_args_is_help=False,
)

_POLL_S = 1.0
_IN_PROCESS_IDLE_S = 120.0  # here, a request dead-lettered would otherwise be waited for forever


@app.callback()
def backfill(  # noqa: PLR0913, PLR0917 - one parameter per option (Typer passes them by name)
    ctx: typer.Context,
    calendar: Annotated[list[str] | None, typer.Option("--calendar", help="A calendar to resync (repeatable).")] = None,
    all_calendars: Annotated[
        bool, typer.Option("--all", help="Every active (or failed) calendar in the store.")
    ] = False,
    domain: Annotated[str | None, typer.Option(help="Every active (or failed) calendar of one domain's users.")] = None,
    window_days: Annotated[
        int | None,
        typer.Option(
            help="Only events ending in the last N days (no reconciliation then).", min=1, max=MAX_WINDOW_DAYS
        ),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="List the calendars here and print the decisions; change nothing.")
    ] = False,
    job: Annotated[
        str | None, typer.Option(help="Name the job (letters, digits, . _ -), or resume the job of this id.")
    ] = None,
    new: Annotated[
        bool, typer.Option("--new", help="Start a new job even if an unfinished one asks the same.")
    ] = False,
    rate: Annotated[
        float | None, typer.Option(help="Calendars per second (default CONFSYNC_BACKFILL_REQUESTS_PER_S).", min=0.1)
    ] = None,
    wait: Annotated[
        bool, typer.Option("--wait", help="Follow the job until every calendar is done or failed.")
    ] = False,
    as_json: JsonOption = False,
    page_size: Annotated[int, typer.Option(help="Events per Calendar page (dry runs).", min=1, max=2500)] = 2500,
) -> None:
    """Full resync: every selected calendar is listed from scratch, its conferences told what they
    need, its links reconciled. A restarted job resumes where it stopped; `confsync backfill
    status` shows its progress."""
    if ctx.invoked_subcommand is not None:
        return
    chosen = [bool(calendar), all_calendars, domain is not None]
    if sum(chosen) != 1:
        raise typer.BadParameter("give one of --calendar ID (repeatable), --all or --domain D")
    selection = Selection(domain=domain, calendar_ids=tuple(calendar or ()))
    if dry_run:
        _dry_run(ctx, selection, window_days, page_size=page_size, as_json=as_json)
        return
    in_process = settings_of(ctx).transport == "memory"
    with open_stack(ctx, publishes=not in_process) as stack, _stages(stack, run=in_process):
        fan_out = stack.fan_out(per_s=rate)
        named = stack.store.get_backfill_job(job) if job else None
        if named is not None and (named.selector, named.window_days) != (selection.describe(), window_days):
            raise typer.BadParameter(
                f"job {job} resyncs {named.selector} (window {named.window_days or 'none'}): give the same selection"
            )
        started = fan_out.job(selection, window_days, job_id=job, new=new)
        if started.paged_all and not as_json:
            typer.echo(f"backfill {started.job_id}: requesting its pending calendars again")
        elif started.requested and not as_json:
            typer.echo(f"resuming backfill {started.job_id} after {started.cursor}")
        finished = _publishing(lambda: fan_out.run(started, selection), quiet=as_json)
        idle = _IN_PROCESS_IDLE_S if in_process else None
        progress = _follow(stack.store, finished, quiet=as_json, idle_limit_s=idle) if wait or in_process else None
        _report(stack.store, finished, progress, as_json=as_json)
    if progress is not None and progress.pending:
        typer.echo(
            f"confsync: {progress.pending} calendar(s) still pending after {_IN_PROCESS_IDLE_S:.0f} s without "
            f"progress; `confsync backfill --job {finished.job_id} ...` requests them again",
            err=True,
        )
    if progress is not None and (progress.failed or progress.pending):
        raise typer.Exit(code=1)


@app.command("status")
def status(
    ctx: typer.Context,
    job: Annotated[str | None, typer.Option(help="The job (default: the newest).")] = None,
    follow: Annotated[bool, typer.Option("--follow", help="Keep watching until the job has finished.")] = False,
    failed: Annotated[int, typer.Option(help="How many failed calendars to list with their cause.", min=0)] = 20,
    as_json: JsonOption = False,
) -> None:
    """How far a backfill job has got: calendars done, failed (with the cause) and pending."""
    with open_stack(ctx) as stack:
        store = stack.store
        found = store.get_backfill_job(job) if job else next(iter(store.backfill_jobs(1)), None)
        if found is None:
            typer.echo(f"confsync: {'no backfill job ' + job if job else 'no backfill has been run'}", err=True)
            raise typer.Exit(code=1)
        progress = _follow(store, found, quiet=as_json) if follow else store.backfill_progress(found.job_id)
        found = store.get_backfill_job(found.job_id) or found
        _report(store, found, progress, as_json=as_json, failures=failed)


def _dry_run(
    ctx: typer.Context, selection: Selection, window_days: int | None, *, page_size: int, as_json: bool
) -> None:
    stopped = "backfill stopped: {}"
    with open_stack(ctx) as stack, exit_on(ConfsyncError, code=1, message=stopped):
        summary = dry_run(stack, selection, window_days, page_size=page_size)
    if as_json:
        typer.echo(json.dumps(summary.to_json(with_decisions=True), indent=2))
    else:
        for decision in summary.decisions:
            typer.echo(f"{decision.action:<7} {decision.calendar_id} {decision.event_id}  ({decision.why})")
        typer.echo(_summary_line(summary) + " (dry run: nothing changed)")
    for calendar_id, cause in summary.failures.items():
        typer.echo(f"confsync: {calendar_id} not backfilled: {cause}", err=True)
    if summary.failures:
        raise typer.Exit(code=1)


def dry_run(stack: Stack, selection: Selection, window_days: int | None, *, page_size: int = 2500) -> Summary:
    """What ``confsync backfill --dry-run`` does once its stack is open: each selected calendar
    listed and classified here; nothing changes."""
    # What start-up made lives as long as the command: frozen, the collector's full passes (which a
    # listing's thousands of events set off) no longer walk it.
    gc.freeze()
    ids = [cid for page in selection.pages(stack.store, None, 500) for cid in page]
    return stack.backfill(page_size=page_size, dry_run=True).run(ids, window_days=window_days)


def _summary_line(summary: Summary) -> str:
    return (
        f"{summary.calendars} calendar(s): {summary.events_read} events read, {summary.updates} updates, "
        f"{summary.deletes} deletes, {summary.unchanged} unchanged, {summary.reconciled} reconciled "
        f"({summary.orphans} never saved on their event), {summary.errors} errors"
    )


@contextmanager
def _stages(stack: Stack, *, run: bool) -> Iterator[None]:
    """With the in-process transport, the processor and publisher stages, here, for the job."""
    if not run:
        yield
        return
    settings, transport = stack.settings, stack.transport
    workers = [
        transport.worker(settings.sub_calendar_changes, stack.worker, settings.topic_calendar_changes_dead),
        transport.worker(settings.sub_conference_commands, stack.applier, settings.topic_conference_commands_dead),
    ]
    try:
        yield
        _settled(stack.store, settings.shutdown_deadline_s * 3)
    finally:
        for worker in workers:
            worker.stop(settings.shutdown_deadline_s)


def _settled(store: Store, timeout_s: float) -> None:
    """Wait (at most ``timeout_s``) until the publisher has settled every command the listings
    made; a delete waiting out its grace stays in the outbox, for lag repair to send when due."""
    deadline = time.monotonic() + timeout_s
    horizon = datetime.now(UTC) + timedelta(days=365)
    while time.monotonic() < deadline:
        if not [entry for entry in store.outbox_due(horizon) if not entry.deferred]:
            return
        time.sleep(_POLL_S / 5)


def _publishing(publish: Callable[[], BackfillJob], *, quiet: bool) -> BackfillJob:
    """Publish the job's requests, with a spinner on a terminal."""
    if quiet or not sys.stdout.isatty():
        return publish()
    from rich.progress import Progress  # noqa: PLC0415 - Typer's own dependency

    with Progress(transient=True) as bar:
        bar.add_task("requesting", total=None)
        return publish()


def _follow(store: Store, job: BackfillJob, *, quiet: bool, idle_limit_s: float | None = None) -> BackfillProgress:
    """Watch ``job`` until it has paged to the end and no calendar is pending (or, given
    ``idle_limit_s``, nothing has moved for that long); its last progress."""
    bar = None
    if not quiet and sys.stdout.isatty():
        from rich.progress import Progress  # noqa: PLC0415 - Typer's own dependency

        bar = Progress()
        bar.start()
    task = bar.add_task("calendars", total=None) if bar is not None else None
    last, moved = None, time.monotonic()
    try:
        while True:
            progress = store.backfill_progress(job.job_id)
            current = store.get_backfill_job(job.job_id) or job
            if progress != last:
                last, moved = progress, time.monotonic()
            elif idle_limit_s is not None and time.monotonic() - moved > idle_limit_s:
                return progress
            if bar is not None and task is not None:
                total = progress.total if current.paged_all else None
                bar.update(task, completed=progress.done + progress.failed, total=total)
            if current.paged_all and progress.pending == 0:
                return progress
            time.sleep(_POLL_S)
    finally:
        if bar is not None:
            bar.stop()


def _report(
    store: Store, job: BackfillJob, progress: BackfillProgress | None, *, as_json: bool, failures: int = 20
) -> None:
    progress = progress or store.backfill_progress(job.job_id)
    failed = store.backfill_entries(job.job_id, BackfillState.FAILED, limit=failures) if failures else []
    if as_json:
        document = {
            "job_id": job.job_id,
            "selector": job.selector,
            "window_days": job.window_days,
            "created_at": job.created_at.isoformat(),
            "requests_published": job.requested,
            "paged_all": job.paged_all,
            "done": progress.done,
            "failed": progress.failed,
            "pending": progress.pending,
            "running": progress.running,
            "failures": [{"calendar_id": e.calendar_id, "cause": e.cause} for e in failed],
        }
        typer.echo(json.dumps(document, indent=2))
        return
    paging = "all requested" if job.paged_all else f"requesting, after {job.cursor or 'the first'}"
    typer.echo(f"backfill {job.job_id} ({job.selector}), started {job.created_at:%Y-%m-%d %H:%M:%S} UTC; {paging}")
    typer.echo(
        f"{progress.done} done, {progress.failed} failed, {progress.pending} pending ({progress.running} being listed)"
    )
    for entry in failed:
        typer.echo(f"  failed  {entry.calendar_id}  {entry.cause}")
    if progress.failed > len(failed):
        typer.echo(f"  ... and {progress.failed - len(failed)} more (--failed N, or --json)")
