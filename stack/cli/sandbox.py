"""``confsync sandbox calendar|provider``: local stand-ins, over real HTTP, for the services
confsync cannot reach from here."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from stack.cli._common import settings_of

__all__ = ["app"]

app = typer.Typer(
    help="Local stand-ins, over real HTTP, for the services confsync cannot reach from here.",
    no_args_is_help=True,
)


def _token_pairs(values: list[str]) -> dict[str, str]:
    pairs: dict[str, str] = {}
    for value in values:
        token, sep, email = value.partition("=")
        if not sep or not token or "@" not in email:
            raise typer.BadParameter(f"expected TOKEN=EMAIL, got {value!r}", param_hint="--auth-token")
        pairs[token] = email
    return pairs


@app.command("calendar")
def sandbox_calendar(  # noqa: PLR0913, PLR0917 - one parameter per option (Typer passes them by name)
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on (0 picks a free one).", min=0, max=65535)] = 8090,
    db: Annotated[
        Path | None, typer.Option(help="SQLite file that keeps the state across restarts (default: memory only).")
    ] = None,
    owner: Annotated[str, typer.Option(help="Whose calendar `primary` is when no auth token says.")] = (
        "owner@sandbox.test"
    ),
    auth_token: Annotated[
        list[str] | None,
        typer.Option(help="TOKEN=EMAIL: require bearer tokens; repeat for more users (default: no auth)."),
    ] = None,
    require_auth: Annotated[
        bool,
        typer.Option(
            "--require-auth",
            help="Refuse every API call without a known bearer token (401), and check calendar ACLs.",
        ),
    ] = False,
    token_ttl: Annotated[
        int, typer.Option(help="Seconds an access token from the sandbox's OAuth server lasts.", min=1)
    ] = 3600,
) -> None:
    """Serve a Google Calendar API v3 sandbox under /calendar/v3/, Google's OAuth 2.0 and ID-token
    endpoints (/o/oauth2/v2/auth, /token, /revoke, /oauth2/v3/certs) and admin under /_sandbox/."""
    from sandbox.calendar.server import serve_calendar  # noqa: PLC0415 - the sandbox loads only when asked for

    tokens = _token_pairs(auth_token or [])
    serve_calendar(
        host=host, port=port, db=db, owner=owner, auth_tokens=tokens, require_auth=require_auth, token_ttl_s=token_ttl
    )


@app.command("provider")
def sandbox_provider(  # noqa: PLR0913, PLR0917 - one parameter per option (Typer passes them by name)
    ctx: typer.Context,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.", min=0, max=65535)] = 8091,
    db: Annotated[
        Path | None, typer.Option(help="SQLite file that keeps conferences across restarts (default: memory only).")
    ] = None,
    api_key: Annotated[
        str | None,
        typer.Option(help="The API key clients must send as a bearer token (default: CONFSYNC_PROVIDER_API_KEY)."),
    ] = None,
    token_ttl: Annotated[
        int, typer.Option(help="Seconds a user's OAuth access token lives before it is refused (401).", min=1)
    ] = 3600,
    refresh_grace: Annotated[
        float,
        typer.Option(help="Seconds a rotated refresh token still works after a refresh replaced it.", min=0),
    ] = 30.0,
) -> None:
    """Serve a conferencing API sandbox (the REST contract in confsync.provider; spec at /openapi.json)."""
    from sandbox.provider.server import serve_provider  # noqa: PLC0415 - the sandbox loads only when asked for

    settings = settings_of(ctx)
    key = api_key or (settings.provider_api_key.reveal() if settings.provider_api_key else None)
    if not key:
        raise typer.BadParameter("give --api-key or set CONFSYNC_PROVIDER_API_KEY", param_hint="--api-key")
    serve_provider(host=host, port=port, db=db, api_key=key, token_ttl_s=token_ttl, refresh_grace_s=refresh_grace)
