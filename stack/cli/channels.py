"""``confsync channels ensure|renew|stop|list``: Calendar watch channels (ingest/channels.py)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import TYPE_CHECKING, Annotated

import typer

from confsync.errors import ConfigError
from confsync.store.records import PENDING_RESOURCE_ID
from stack.cli._common import JsonOption, open_stack, parse_duration

if TYPE_CHECKING:
    from ingest.channels import ChannelManager
    from stack.root import Stack

__all__ = ["app"]

app = typer.Typer(help="Calendar watch channels: open, renew, stop and list them.", no_args_is_help=True)


@contextmanager
def _stack(ctx: typer.Context, *, publishes: bool = False) -> Iterator[Stack]:
    with open_stack(ctx, publishes=publishes) as stack:
        if not stack.settings.webhook_url:
            raise ConfigError(
                "the address Calendar posts to is needed to open watch channels", variable="CONFSYNC_WEBHOOK_URL"
            )
        yield stack


@contextmanager
def _channels(ctx: typer.Context) -> Iterator[ChannelManager]:
    with _stack(ctx) as stack:
        yield stack.channels


@app.command("ensure")
def channels_ensure(
    ctx: typer.Context, calendar_id: Annotated[str, typer.Argument(help="The calendar to watch.")]
) -> None:
    """Watch a calendar: open a channel unless it already has a live one."""
    with _channels(ctx) as channels:
        channel = channels.ensure(calendar_id)
    typer.echo(f"{channel.channel_id}  {channel.calendar_id}  expires {channel.expiration.isoformat()}")


@app.command("renew")
def channels_renew(
    ctx: typer.Context,
    before: Annotated[str, typer.Option(help="Renew channels expiring within this window (90m, 24h, 2d).")] = "24h",
    unwatched: Annotated[
        bool,
        typer.Option(
            "--unwatched", help="Also open a channel for every active calendar with links that has none (scans all)."
        ),
    ] = False,
    fan_out: Annotated[
        bool,
        typer.Option(
            "--fan-out",
            help="Publish the pass to the channel-work topic for the ingest service's workers, a page at a "
            "time, instead of running it here (what the scheduler's tick does).",
        ),
    ] = False,
) -> None:
    """Reconcile calendars whose channels expire soon (or whose watch failed): one live channel
    each afterwards, the new one opened before the old stops; surplus channels are stopped."""
    window = parse_duration(before)
    with _stack(ctx, publishes=True) as stack:
        if fan_out:
            _fan_out(stack, window, unwatched=unwatched)
            return
        report = stack.channels.renew(window)
        if unwatched:
            report.extend(stack.channels.watch_unwatched())
    typer.echo(
        f"renewed {len(report.renewed)}, gone {len(report.gone)}, "
        f"disconnected {len(report.disconnected)}, failed {len(report.failed)}, "
        f"busy {len(report.busy)}, surplus stopped {len(report.stopped)}"
    )
    for calendar_id in report.gone:
        typer.echo(f"  gone: {calendar_id}")
    if report.failed:
        raise typer.Exit(code=1)


def _fan_out(stack: Stack, window: timedelta, *, unwatched: bool) -> None:
    from confsync.contracts import ChannelSweep  # noqa: PLC0415 - the stages load only when a command needs them

    passes = [(ChannelSweep.RENEW, window)] + ([(ChannelSweep.WATCH, timedelta(0))] if unwatched else [])
    for sweep, before in passes:
        page = stack.channel_fanout.start(sweep, before)
        more = ", the next page queued" if page.more else ""
        typer.echo(f"{sweep.value}: {page.calendars} calendar(s) of the first page published{more}")


@app.command("stop")
def channels_stop(
    ctx: typer.Context,
    calendar_id: Annotated[str | None, typer.Argument(help="Stop every live channel of this calendar.")] = None,
    channel: Annotated[str | None, typer.Option("--channel", help="Stop this one channel instead.")] = None,
) -> None:
    """Stop watching: one channel, or all of a calendar's."""
    if (calendar_id is None) == (channel is None):
        raise typer.BadParameter("give a CALENDAR_ID or --channel ID, not both and not neither")
    with _channels(ctx) as channels:
        stopped = channels.stop(calendar_id=calendar_id, channel_id=channel)
    typer.echo(f"stopped {len(stopped)} channel(s)")
    for channel_id in stopped:
        typer.echo(f"  {channel_id}")


@app.command("list")
def channels_list(
    ctx: typer.Context,
    expiring_within: Annotated[str, typer.Option(help="Only channels expiring within this window.")] = "3650d",
    as_json: JsonOption = False,
) -> None:
    """List live channels, soonest to expire first (tokens are never shown)."""
    window = parse_duration(expiring_within)
    with _channels(ctx) as channels:
        rows = [
            {
                "channel_id": c.channel_id,
                "calendar_id": c.calendar_id,
                "expiration": c.expiration.isoformat(),
                "confirmed": c.resource_id != PENDING_RESOURCE_ID,  # False: watch failed or under way
            }
            for c in channels.expiring_within(window)
        ]
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    for row in rows:
        note = "" if row["confirmed"] else "  (not confirmed by Google: retried by the next pass)"
        typer.echo(f"{row['channel_id']}  {row['calendar_id']}  expires {row['expiration']}{note}")
    typer.echo(f"{len(rows)} channel(s)")
