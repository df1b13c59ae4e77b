"""``confsync sandbox provider``: serve the conferencing sandbox with uvicorn."""

from __future__ import annotations

from pathlib import Path

import structlog

from confsync.serving import serve_forever
from sandbox.provider.app import ProviderSandbox, create_app
from sandbox.provider.store import ProviderStore

__all__ = ["build_sandbox", "serve_provider"]

log = structlog.get_logger(__name__)


def build_sandbox(*, api_key: str, db: Path | None = None) -> ProviderSandbox:
    """A sandbox over the SQLite file ``db`` (kept across restarts), or in memory."""
    if db is not None:
        db.parent.mkdir(parents=True, exist_ok=True)
    return ProviderSandbox(store=ProviderStore(":memory:" if db is None else str(db)), api_key=api_key)


def serve_provider(*, host: str, port: int, db: Path | None, api_key: str) -> None:
    sandbox = build_sandbox(api_key=api_key, db=db)
    log.info("provider sandbox starting", url=f"http://{host}:{port}", db=str(db) if db else None)
    serve_forever(create_app(sandbox), host=host, port=port)
