"""A conferencing service that implements confsync's provider REST contract, over real HTTP.

FastAPI over SQLite (WAL): idempotent creates, Idempotency-Key replays, the stale-version
rule, 401 with an authentication URL, fault injection and a request journal. The contract
itself is documented in ``confsync.provider`` and served as OpenAPI at ``/openapi.json``.
"""

from sandbox.provider.app import ProviderSandbox, create_app
from sandbox.provider.store import ProviderStore

__all__ = ["ProviderSandbox", "ProviderStore", "create_app"]
