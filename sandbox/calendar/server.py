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

__all__ = ["build_sandbox", "serve_calendar"]

log = structlog.get_logger(__name__)


def build_sandbox(
    *, db: Path | None = None, owner: str = "owner@sandbox.test", auth_tokens: Mapping[str, str] | None = None
) -> CalendarSandbox:
    """A sandbox in memory, or loaded from (and writing through to) the SQLite file ``db``."""
    clock = Clock()
    persistence = None if db is None else SqlitePersistence(db)
    model = CalendarModel(clock, default_owner=owner, persistence=persistence)
    if persistence is not None:
        model.load(*persistence.load())
    return CalendarSandbox(model=model, clock=clock, auth_tokens=dict(auth_tokens or {}))


def serve_calendar(*, host: str, port: int, db: Path | None, owner: str, auth_tokens: Mapping[str, str]) -> None:
    sandbox = build_sandbox(db=db, owner=owner, auth_tokens=auth_tokens)
    log.info(
        "calendar sandbox starting",
        api_endpoint=f"http://{host}:{port}/calendar/v3/",
        db=str(db) if db else None,
        auth="bearer tokens" if auth_tokens else "off",
    )
    serve_forever(create_app(sandbox), host=host, port=port)
