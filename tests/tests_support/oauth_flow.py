"""An app's side of a sandbox's OAuth authorization-code flow, as tests drive it over HTTP.

``OAuthFlow`` knows where a sandbox serves its endpoints (Google's paths on the Calendar
sandbox, the vendor's on the conferencing sandbox) and plays the app and the person: register
a client, open the consent page, post its form back as a browser without JavaScript would,
and exchange or refresh at the token endpoint.
"""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
from dataclasses import dataclass
from html import unescape
from typing import Any
from urllib.parse import parse_qs, urlparse

import httpx

__all__ = ["GOOGLE_PATHS", "REDIRECT", "VENDOR_PATHS", "OAuthFlow", "pkce"]

REDIRECT = "http://127.0.0.1:9/oauth/callback"
GOOGLE_PATHS = ("/o/oauth2/v2/auth", "/token")
VENDOR_PATHS = ("/oauth/authorize", "/oauth/token")
_HIDDEN = re.compile(r'type="hidden" name="([^"]+)" value="([^"]*)"')
_ACTION = re.compile(r'<form method="post" action="([^"]+)"')


def pkce() -> tuple[str, str]:
    """A PKCE (verifier, S256 challenge) pair."""
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


@dataclass
class OAuthFlow:
    url: str
    http: httpx.Client
    paths: tuple[str, str]  # (authorize, token)
    scope: str
    redirect: str = REDIRECT

    def client(self, name: str = "Sync") -> dict[str, str]:
        answer = self.http.post(
            f"{self.url}/_sandbox/oauth-clients", json={"redirect_uris": [self.redirect], "name": name}
        )
        assert answer.status_code == 201, answer.text
        return dict(answer.json())

    def consent(self, client: dict[str, str], challenge: str, **params: str) -> str:
        """The consent page's HTML for an authorization request (``params`` override the defaults)."""
        query = {
            "client_id": client["client_id"],
            "redirect_uri": self.redirect,
            "response_type": "code",
            "scope": self.scope,
            "state": "st-1",
            "code_challenge": challenge,
            "code_challenge_method": "S256",
            **params,
        }
        page = self.http.get(f"{self.url}{self.paths[0]}", params=query)
        assert page.status_code == 200, page.text
        return page.text

    def submit(self, page: str, email: str, decision: str = "allow") -> httpx.Response:
        """The page's form posted back: its hidden fields, the email typed, the button pressed."""
        action = _ACTION.search(page)
        assert action is not None, "the consent page has a form"
        fields = {unescape(name): unescape(value) for name, value in _HIDDEN.findall(page)}
        return self.http.post(f"{self.url}{unescape(action[1])}", data={**fields, "email": email, "decision": decision})

    def sign_in(self, client: dict[str, str], email: str, **params: str) -> tuple[str, str]:
        """(code, verifier) once ``email`` allowed the app."""
        verifier, challenge = pkce()
        answer = self.submit(self.consent(client, challenge, **params), email)
        assert answer.status_code == 302, answer.text
        query = parse_qs(urlparse(answer.headers["location"]).query)
        assert query["state"] == [params.get("state", "st-1")]
        return query["code"][0], verifier

    def token_call(self, client: dict[str, str], **form: str) -> httpx.Response:
        credentials = {"client_id": client["client_id"], "client_secret": client["client_secret"]}
        return self.http.post(f"{self.url}{self.paths[1]}", data={**form, **credentials})

    def exchange(self, client: dict[str, str], code: str, verifier: str) -> httpx.Response:
        return self.token_call(
            client, grant_type="authorization_code", code=code, code_verifier=verifier, redirect_uri=self.redirect
        )

    def refresh(self, client: dict[str, str], refresh_token: str) -> httpx.Response:
        return self.token_call(client, grant_type="refresh_token", refresh_token=refresh_token)

    def connect(self, client: dict[str, str], email: str, **params: str) -> dict[str, Any]:
        """The tokens an app holds once ``email`` consented."""
        answer = self.exchange(client, *self.sign_in(client, email, **params))
        assert answer.status_code == 200, answer.text
        return dict(answer.json())
