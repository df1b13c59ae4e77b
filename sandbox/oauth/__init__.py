"""OAuth 2.0 for the sandboxes: an authorization server (``server``), its consent and error
pages (``pages``) and its HTTP endpoints (``routes``), shared by the Calendar sandbox (as
Google's) and the conferencing sandbox (as a typical vendor's)."""

from sandbox.oauth.routes import OAuthSurface, oauth_routes
from sandbox.oauth.server import AuthorizationServer, AuthorizeRequest, Client, Grant, OAuthError, TokenResponse

__all__ = [
    "AuthorizationServer",
    "AuthorizeRequest",
    "Client",
    "Grant",
    "OAuthError",
    "OAuthSurface",
    "TokenResponse",
    "oauth_routes",
]
