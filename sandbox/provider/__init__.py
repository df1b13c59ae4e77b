"""A conferencing service that implements confsync's provider REST contract, over real HTTP.

FastAPI over SQLite (WAL): idempotent creates, Idempotency-Key replays, the stale-version
rule, 401 with an authentication URL, fault injection and a request journal. The contract
itself is documented in ``confsync.provider`` and served as OpenAPI at ``/openapi.json``.

Besides the app-wide API key, it is the vendor's side of per-user access, as a typical vendor
offers it: vendor accounts (``POST /_sandbox/users``), OAuth 2.0 clients
(``POST /_sandbox/oauth-clients``), the consent page at ``/oauth/authorize``, ``/oauth/token``
(authorization code with PKCE; refresh tokens rotated on every refresh) and ``/oauth/revoke``,
and a user disconnecting the app (``POST /_sandbox/users/{email}/revoke``). A user's access
token makes a ``/v1`` call act for that user: their own conferences only (``owner``), 401
``invalid_token`` once it expired or was revoked. Its scopes: ``conferences`` (create, change,
delete and read) or ``conferences:read`` (read only; a write is 403 ``insufficient_scope``);
asking for another scope is ``invalid_scope``. The API key is not scoped. So confsync's per-user connection to the
vendor (consent, token storage, refresh with rotation, re-consent after a revocation) is
tested end to end over HTTP against one local server instead of a mock of each step or the
real vendor. Modules: ``app`` (the /v1 API and its bearer gate), ``models`` (the spec's
bodies), ``store`` (SQLite: conferences, owners, users), ``accounts`` (users, the OAuth
server, who a token acts for), ``routes`` (the OAuth endpoints and account admin routes),
``server`` (``build_sandbox``, ``confsync sandbox provider``).
"""

from sandbox.provider.accounts import VendorAccounts
from sandbox.provider.app import ProviderSandbox, create_app
from sandbox.provider.store import ProviderStore

__all__ = ["ProviderSandbox", "ProviderStore", "VendorAccounts", "create_app"]
