"""``confsync users list|disconnect``: the people who connected confsync, and offboarding one."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from confsync.errors import ConfigError
from stack.cli._common import JsonOption, exit_on, open_stack

__all__ = ["app"]

app = typer.Typer(help="Users who connected confsync: list them, or disconnect one.", no_args_is_help=True)


@app.command("list")
def users_list(ctx: typer.Context, as_json: JsonOption = False) -> None:
    """Each user with their grants (Google, vendor: active, revoked or none), their calendars and held commands."""
    with open_stack(ctx) as stack:
        store = stack.store
        rows: list[dict[str, Any]] = []
        for user in store.list_users():
            grants = {grant.provider.value: grant.status.value for grant in store.list_grants(user=user.email)}
            calendars = store.calendars_of(user.email)
            rows.append(
                {
                    "email": user.email,
                    "domain": user.domain,
                    "google": grants.get("google", "none"),
                    "vendor": grants.get("vendor", "none"),
                    "calendars": {state.calendar_id: state.status.value for state in calendars},
                    "held_commands": store.count_held(user.email),
                }
            )
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    for row in rows:
        listed = ", ".join(f"{cid} ({status})" for cid, status in row["calendars"].items()) or "no calendars"
        typer.echo(f"{row['email']}  google {row['google']}  vendor {row['vendor']}  held {row['held_commands']}")
        typer.echo(f"    {listed}")
    typer.echo(f"{len(rows)} user(s)")


@app.command("disconnect")
def users_disconnect(
    ctx: typer.Context,
    email: Annotated[str, typer.Argument(help="The user's Google account email.")],
    yes: Annotated[bool, typer.Option("--yes", help="Do it without asking.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Offboard a user: stop their calendars' channels, forget their calendars and links, revoke and
    delete their tokens. Their conferences stay in their vendor account."""
    if not yes and not typer.confirm(f"Disconnect {email} from confsync?"):
        raise typer.Exit(code=1)
    with open_stack(ctx) as stack:
        accounts = stack.accounts
        with exit_on(ConfigError, code=2, message="configuration error: {}"):
            if accounts is None:
                raise ConfigError(
                    "users' accounts are off: set CONFSYNC_OAUTH_CLIENT_ID or CONFSYNC_VENDOR_CLIENT_ID",
                    variable="CONFSYNC_VENDOR_CLIENT_ID",
                )
        if stack.store.get_user(email.strip().lower()) is None:
            typer.echo(f"confsync: no user {email}", err=True)
            raise typer.Exit(code=1)
        report = accounts.disconnect(email)
    if as_json:
        typer.echo(json.dumps(report, indent=2))
        return
    typer.echo(
        f"disconnected {report['user']}: {report['calendars']} calendar(s), {report['channels_stopped']} channel(s) "
        f"stopped, {report['links_forgotten']} link(s) forgotten, {report['held_dropped']} held command(s) dropped, "
        f"{report['grants_revoked']} of {report['grants_forgotten']} grant(s) revoked at their provider"
    )
