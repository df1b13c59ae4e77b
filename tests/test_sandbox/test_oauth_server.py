"""The sandboxes' shared OAuth 2.0 authorization server (sandbox/oauth/): its known scopes,
PKCE's input shapes (RFC 7636), a re-used code ending its grant (RFC 6749 4.1.2), and over
HTTP malformed Basic client credentials and oversized form bodies."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from urllib.parse import parse_qs, urlparse

import httpx
import pytest
from starlette.applications import Starlette
from tests_support.oauth_flow import REDIRECT, pkce

from confsync.serving import ServedApp
from sandbox.clock import Clock
from sandbox.identity import Principal, PrincipalKind, TokenRefused
from sandbox.oauth import AuthorizationServer, Client, OAuthError, OAuthSurface, oauth_routes

ALICE = Principal(PrincipalKind.USER, "alice@corp.example")
MAX_FORM_BYTES = 64 * 1024  # what the endpoints read of a form body at most


def challenge_of(verifier: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()


def request_params(client: Client, challenge: str, scope: str = "read") -> dict[str, str]:
    return {
        "client_id": client.client_id,
        "redirect_uri": REDIRECT,
        "response_type": "code",
        "scope": scope,
        "code_challenge": challenge,
        "code_challenge_method": "S256",
        "state": "st-1",
    }


def code_for(server: AuthorizationServer, client: Client, challenge: str) -> str:
    location = server.approve(server.authorize_request(request_params(client, challenge)), ALICE)
    return parse_qs(urlparse(location).query)["code"][0]


def refused(call: Callable[..., object], *args: object) -> OAuthError:
    with pytest.raises(OAuthError) as caught:
        call(*args)
    return caught.value


@pytest.fixture
def server() -> AuthorizationServer:
    return AuthorizationServer(Clock(), always_offline=True, scopes=frozenset({"read", "write"}))


# -- scopes ---------------------------------------------------------------------------------------


def test_a_scope_the_server_does_not_know_is_invalid_scope(server: AuthorizationServer) -> None:
    client = server.register_client([REDIRECT])
    _, challenge = pkce()
    assert server.authorize_request(request_params(client, challenge, "read write")).scopes == ("read", "write")
    for scope in ("made-up", "read made-up", "READ"):
        err = refused(server.authorize_request, request_params(client, challenge, scope))
        assert (err.code, err.status) == ("invalid_scope", 400), scope
        assert "made-up" in err.description or "READ" in err.description


def test_without_known_scopes_any_scope_is_accepted() -> None:
    server = AuthorizationServer(Clock())
    client = server.register_client([REDIRECT])
    _, challenge = pkce()
    assert server.authorize_request(request_params(client, challenge, "anything at:all")).scopes == (
        "anything",
        "at:all",
    )


# -- PKCE shapes ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "challenge",
    ["abc", "A" * 42, "A" * 44, "A" * 42 + "+", "A" * 42 + "=", "A" * 42 + "/", "A" * 128],
)
def test_a_code_challenge_that_is_not_an_s256_output_is_invalid_request(
    server: AuthorizationServer, challenge: str
) -> None:
    client = server.register_client([REDIRECT])
    err = refused(server.authorize_request, request_params(client, challenge))
    assert err.code == "invalid_request"


@pytest.mark.parametrize(
    "verifier",
    ["a" * 42, "a" * 129, "a" * 42 + "+", "a" * 42 + " ", "a" * 42 + "é", "a" * 42 + "/"],
    ids=["42-chars", "129-chars", "plus", "space", "non-ascii", "slash"],
)
def test_a_code_verifier_of_the_wrong_shape_is_invalid_grant_even_when_its_hash_matches(
    server: AuthorizationServer, verifier: str
) -> None:
    client = server.register_client([REDIRECT])
    code = code_for(server, client, challenge_of(verifier))
    err = refused(server.exchange_code, client, code, REDIRECT, verifier)
    assert (err.code, err.description) == ("invalid_grant", "Invalid code verifier.")


@pytest.mark.parametrize("verifier", ["a" * 43, "A-._~" + "z" * 123, pkce()[0]])
def test_a_code_verifier_of_rfc_7636s_shape_is_accepted(server: AuthorizationServer, verifier: str) -> None:
    client = server.register_client([REDIRECT])
    code = code_for(server, client, challenge_of(verifier))
    assert server.exchange_code(client, code, REDIRECT, verifier).access_token


# -- a code used twice -------------------------------------------------------------------------------


def test_a_reused_code_is_refused_and_ends_the_grant_of_its_first_exchange(server: AuthorizationServer) -> None:
    client = server.register_client([REDIRECT])
    verifier, challenge = pkce()
    code = code_for(server, client, challenge)
    first = server.exchange_code(client, code, REDIRECT, verifier)
    assert server.authenticate(first.access_token).email == ALICE.email
    other_verifier, other_challenge = pkce()
    other = server.exchange_code(client, code_for(server, client, other_challenge), REDIRECT, other_verifier)

    err = refused(server.exchange_code, client, code, REDIRECT, verifier)
    assert err.code == "invalid_grant"
    assert "already used" in err.description
    with pytest.raises(TokenRefused, match="revoked"):
        server.authenticate(first.access_token)
    assert first.refresh_token is not None
    assert refused(server.refresh, client, first.refresh_token).code == "invalid_grant"
    assert server.authenticate(other.access_token).email == ALICE.email, "another code's grant lives on"


def test_a_spent_code_is_forgotten_once_it_would_have_expired(server: AuthorizationServer) -> None:
    client = server.register_client([REDIRECT])
    verifier, challenge = pkce()
    code = code_for(server, client, challenge)
    first = server.exchange_code(client, code, REDIRECT, verifier)
    server.clock.advance(timedelta(minutes=11).total_seconds())

    err = refused(server.exchange_code, client, code, REDIRECT, verifier)
    assert (err.code, err.description) == ("invalid_grant", "Malformed auth code.")
    assert server._spent == {}, "spent codes are kept only until their expiry"
    assert server.authenticate(first.access_token).email == ALICE.email


# -- over HTTP: client credentials and body size ---------------------------------------------------------


@dataclass
class Served:
    url: str
    http: httpx.Client
    server: AuthorizationServer
    client: Client

    def token(self, **kwargs: object) -> httpx.Response:
        return self.http.post(f"{self.url}/token", **kwargs)  # type: ignore[arg-type]


@pytest.fixture
def served(server: AuthorizationServer) -> Iterator[Served]:
    surface = OAuthSurface(
        server=server,
        principal_for=lambda email: Principal(PrincipalKind.USER, email),
        heading="Sign in as {email}",
        authorize_path="/authorize",
        token_path="/token",
        revoke_path="/revoke",
    )
    with ServedApp(Starlette(routes=oauth_routes(surface))) as app, httpx.Client(timeout=10) as http:
        yield Served(app.url, http, server, server.register_client([REDIRECT]))


@pytest.mark.parametrize(
    "credentials",
    ["\u00e9", "\u00e9\u00e9\u00e9\u00e9", "!!!!", "YWJj ZA==", "YWJjZA", base64.b64encode(b"\xff\xfe:x").decode()],
    ids=["non-ascii", "non-ascii-4", "not-base64", "inner-space", "unpadded", "not-utf8"],
)
def test_malformed_basic_credentials_are_401_invalid_client(served: Served, credentials: str) -> None:
    answer = served.token(
        data={"grant_type": "refresh_token", "refresh_token": "x"},
        headers={"Authorization": f"Basic {credentials}".encode("latin-1")},
    )
    assert (answer.status_code, answer.json()["error"]) == (401, "invalid_client")


def test_well_formed_basic_credentials_still_name_the_client(served: Served) -> None:
    basic = base64.b64encode(f"{served.client.client_id}:{served.client.client_secret}".encode()).decode()
    answer = served.token(
        data={"grant_type": "refresh_token", "refresh_token": "x"}, headers={"Authorization": f"Basic {basic}"}
    )
    assert (answer.status_code, answer.json()["error"]) == (400, "invalid_grant"), "past the client check"


def _chunks(total: int) -> Iterator[bytes]:
    yield b"grant_type=refresh_token&padding="
    sent = 0
    while sent < total:
        yield b"a" * 8192
        sent += 8192


@pytest.mark.parametrize("path", ["/token", "/revoke", "/authorize"])
@pytest.mark.parametrize("how", ["content-length", "chunked"])
def test_a_form_body_over_64_kib_is_refused(served: Served, path: str, how: str) -> None:
    if how == "chunked":  # no Content-Length: the limit holds while reading
        body: bytes | Iterator[bytes] = _chunks(10 * MAX_FORM_BYTES)
    else:
        body = b"grant_type=refresh_token&padding=" + b"a" * MAX_FORM_BYTES
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    answer = served.http.post(f"{served.url}{path}", content=body, headers=headers)
    assert answer.status_code == 413, answer.text
    assert "invalid_request" in answer.text


def test_a_form_body_just_under_the_limit_is_read(served: Served) -> None:
    credentials = f"client_id={served.client.client_id}&client_secret={served.client.client_secret}"
    prefix = f"grant_type=refresh_token&refresh_token=x&{credentials}&padding=".encode()
    body = prefix + b"a" * (MAX_FORM_BYTES - len(prefix))
    answer = served.token(content=body, headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert (answer.status_code, answer.json()["error"]) == (400, "invalid_grant")
