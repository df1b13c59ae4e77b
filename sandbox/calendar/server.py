"""``confsync sandbox calendar``: build a Calendar sandbox from options and serve it with uvicorn."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import structlog

from confsync.serving import serve_forever
from sandbox.calendar.app import CalendarSandbox, create_app
from sandbox.calendar.model import CalendarModel
from sandbox.calendar.persist import SqlitePersistence
from sandbox.clock import Clock
from sandbox.identity import Authenticator

__all__ = ["build_sandbox", "serve_calendar"]

log = structlog.get_logger(__name__)


def build_sandbox(  # noqa: PLR0913 - the command's options, named
    *,
    db: Path | None = None,
    owner: str = "owner@sandbox.test",
    auth_tokens: Mapping[str, str] | None = None,
    require_auth: bool = False,
    authenticator: Authenticator | None = None,
    token_ttl_s: int = 3600,
) -> CalendarSandbox:
    """A sandbox in memory, or loaded from (and writing through to) the SQLite file ``db``.

    Auth is on with ``require_auth`` or when ``auth_tokens`` are given; ``authenticator`` says
    whom a bearer token names (default: an access token the sandbox's own OAuth server issued,
    then the static ``auth_tokens``; see sandbox/calendar/serving.py)."""
    clock = Clock()
    persistence = None if db is None else SqlitePersistence(db)
    model = CalendarModel(clock, default_owner=owner, persistence=persistence)
    if persistence is not None:
        model.load(*persistence.load())
        model.load_access(*persistence.load_access())
    return CalendarSandbox(
        model=model,
        clock=clock,
        auth_tokens=dict(auth_tokens or {}),
        require_auth=require_auth,
        authenticator=authenticator,
        token_ttl_s=token_ttl_s,
    )


def serve_calendar(  # noqa: PLR0913 - the command's options, named
    *,
    host: str,
    port: int,
    db: Path | None,
    owner: str,
    auth_tokens: Mapping[str, str],
    require_auth: bool = False,
    token_ttl_s: int = 3600,
) -> None:
    sandbox = build_sandbox(
        db=db, owner=owner, auth_tokens=auth_tokens, require_auth=require_auth, token_ttl_s=token_ttl_s
    )
    log.info(
        "calendar sandbox starting",
        api_endpoint=f"http://{host}:{port}/calendar/v3/",
        db=str(db) if db else None,
        auth="bearer tokens" if sandbox.auth_on else "off",
    )
    serve_forever(create_app(sandbox), host=host, port=port)
