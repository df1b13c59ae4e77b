"""``confsync sandbox provider``: serve the conferencing sandbox with uvicorn."""

from __future__ import annotations

from pathlib import Path

import structlog

from confsync.serving import serve_forever
from sandbox.provider.app import ProviderSandbox, create_app
from sandbox.provider.store import ProviderStore

__all__ = ["build_sandbox", "serve_provider"]

log = structlog.get_logger(__name__)


def build_sandbox(
    *, api_key: str, db: Path | None = None, token_ttl_s: int = 3600, refresh_grace_s: float = 30.0
) -> ProviderSandbox:
    """A sandbox over the SQLite file ``db`` (kept across restarts), or in memory.

    ``token_ttl_s``: the life of a user's access token; ``refresh_grace_s``: how long a
    refresh token still works after a refresh replaced it. Vendor users and conference owners
    are kept in ``db``; OAuth clients, grants and tokens in memory only."""
    if db is not None:
        db.parent.mkdir(parents=True, exist_ok=True)
    return ProviderSandbox(
        store=ProviderStore(":memory:" if db is None else str(db)),
        api_key=api_key,
        token_ttl_s=token_ttl_s,
        refresh_grace_s=refresh_grace_s,
    )


def serve_provider(  # noqa: PLR0913 - one parameter per command-line option
    *,
    host: str,
    port: int,
    db: Path | None,
    api_key: str,
    token_ttl_s: int = 3600,
    refresh_grace_s: float = 30.0,
) -> None:
    sandbox = build_sandbox(api_key=api_key, db=db, token_ttl_s=token_ttl_s, refresh_grace_s=refresh_grace_s)
    log.info(
        "provider sandbox starting",
        url=f"http://{host}:{port}",
        db=str(db) if db else None,
        token_ttl_s=token_ttl_s,
        refresh_grace_s=refresh_grace_s,
    )
    serve_forever(create_app(sandbox), host=host, port=port)
