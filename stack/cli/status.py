"""``confsync status``: is a calendar in step, and if not why; or the whole installation at a
glance (ingest/status.py, which ``GET /v1/status`` answers from too). Read-only."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated

import typer

from stack.cli._common import JsonOption, open_stack

if TYPE_CHECKING:
    from ingest.status import CalendarReport, Overview

__all__ = ["status_command"]

_WIDTH = 15  # the label column


def status_command(
    ctx: typer.Context,
    calendar: Annotated[
        str | None, typer.Option("--calendar", metavar="ID", help="Show this calendar instead of the totals.")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Show whether calendars are in step: for one calendar (--calendar) its owner, state and
    cause, channel, last notification and listing, lag, links and pending commands; for all,
    calendars by state, outbox depth, dead letters, the oldest lag and channels expiring within
    a day. Reads only; an unknown calendar exits 1."""
    with open_stack(ctx) as stack:
        reader = stack.status()
        report = reader.calendar(calendar) if calendar is not None else reader.overview()
        if as_json:
            typer.echo(json.dumps(report.to_json(), indent=2))
            return
        rows = _calendar_rows(report) if calendar is not None else _overview_rows(report)  # type: ignore[arg-type]
    for label, text in rows:
        typer.echo(f"{label:<{_WIDTH}} {text}".rstrip())


def _calendar_rows(report: CalendarReport) -> list[tuple[str, str]]:
    now = report.at
    links, lag = report.links, report.lag_s
    channels = [f"{c.channel_id}  expires {_moment(c.expiration, now)}" for c in report.channels] or ["none live"]
    return [
        ("calendar", report.calendar_id),
        ("verdict", report.verdict.value.replace("_", " ")),
        ("owner", report.owner or "-"),
        ("state", report.state.value),
        ("cause", report.cause or "-"),
        *((("channel" if n == 0 else ""), text) for n, text in enumerate(channels)),
        ("last notified", _moment(report.last_notified_at, now)),
        ("last listed", _moment(report.last_synced_at, now)),
        ("lag", "none" if lag is None else f"{_span(lag)} (notified, not listed since)"),
        ("links", f"{links.live} live, {links.leaving} leaving, {links.deleted} deleted"),
        ("commands", f"{report.commands_pending} pending, {report.owner_commands_held} held for the owner"),
    ]


def _overview_rows(report: Overview) -> list[tuple[str, str]]:
    from ingest.status import DEAD_LETTERS_COUNTED_UP_TO  # noqa: PLC0415 - the stages load only when needed

    counts = report.calendars
    if report.dead_letters is None:
        dead = "unknown here (the in-process transport: GET /v1/status on the service counts them)"
    else:
        more = "+" if report.dead_letters >= DEAD_LETTERS_COUNTED_UP_TO else ""
        dead = f"{report.dead_letters}{more}"
    oldest = report.oldest_lag_s
    lag = "none" if oldest is None else f"{_span(oldest)} ({report.oldest_lagging_calendar})"
    return [
        (
            "calendars",
            f"{counts.active} active, {counts.disconnected} disconnected, {counts.gone} gone, {counts.failed} failed",
        ),
        ("outbox", f"{report.outbox_depth} command(s) not settled"),
        ("held", f"{report.commands_held} command(s) waiting for their owner's reconnect"),
        ("dead letters", dead),
        ("oldest lag", lag),
        ("channels", f"{report.channels_expiring} expiring within {_span(report.expiring_within_s)}"),
    ]


def _moment(at: datetime | None, now: datetime) -> str:
    """A time and how far it is from now: '2026-11-24T18:00:00Z (3m 5s ago)'."""
    if at is None:
        return "never"
    seconds = (at - now).total_seconds()
    distance = f"in {_span(seconds)}" if seconds > 0 else f"{_span(-seconds)} ago"
    return f"{at.astimezone(UTC).strftime('%Y-%m-%dT%H:%M:%SZ')} ({distance})"


def _span(seconds: float) -> str:
    """A duration for a person: '0.4s', '42s', '5m 3s', '3h 12m', '6d 23h'."""
    if seconds < 10:  # short lags are told to the tenth
        return f"{seconds:.1f}s"
    whole = int(seconds)
    for unit, size, smaller, small_size in (("d", 86400, "h", 3600), ("h", 3600, "m", 60), ("m", 60, "s", 1)):
        if whole >= size:
            rest = (whole % size) // small_size
            return f"{whole // size}{unit}" + (f" {rest}{smaller}" if rest else "")
    return f"{whole}s"
