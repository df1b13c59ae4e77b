"""Who a sandbox request acts for: the principal a bearer token names, in both sandboxes.

A sandbox's API asks its ``Authenticator`` for the principal behind a request's bearer token:
static tokens (``--auth-token TOKEN=EMAIL``, the oldest way), or the access tokens its own
OAuth server issued (sandbox/oauth/). The journal records the principal, never the token.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

__all__ = ["AnyOf", "Authenticator", "Principal", "PrincipalKind", "StaticTokens", "TokenRefused"]


class PrincipalKind(StrEnum):
    USER = "user"  # a person, through a token they granted an app
    SERVICE_ACCOUNT = "service_account"  # a service account, for itself or for a delegated user
    APP = "app"  # an application's own key (the provider's API key)


@dataclass(frozen=True, slots=True)
class Principal:
    """``email`` is whom the call acts for: the user, or the service account itself; a
    delegated service account's call acts for ``email`` and names itself in ``via``."""

    kind: PrincipalKind
    email: str
    via: str | None = None  # the service account acting for ``email`` (domain-wide delegation)
    client_id: str | None = None  # the OAuth client the token was issued to
    scopes: frozenset[str] = frozenset()

    def describe(self) -> str:
        """For journals and logs: who, never how."""
        return f"{self.kind.value}:{self.email}" + (f" via {self.via}" if self.via else "")


class TokenRefused(Exception):
    """The bearer token is unknown, expired or revoked; ``reason`` says which (never the token)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Authenticator(Protocol):
    def authenticate(self, bearer: str) -> Principal:
        """The principal behind an access token; TokenRefused if there is none now."""
        ...


class StaticTokens:
    """Fixed bearer tokens, each one user's (``--auth-token TOKEN=EMAIL``)."""

    def __init__(self, tokens: Mapping[str, str]) -> None:
        self._tokens = dict(tokens)

    def __bool__(self) -> bool:
        return bool(self._tokens)

    def authenticate(self, bearer: str) -> Principal:
        email = self._tokens.get(bearer)
        if email is None:
            raise TokenRefused("unknown token")
        return Principal(PrincipalKind.USER, email)


class AnyOf:
    """The first of several authenticators that knows the token (an OAuth server's tokens, then
    static ones); the first refusal's reason when none does."""

    def __init__(self, *authenticators: Authenticator) -> None:
        self._authenticators = authenticators

    def authenticate(self, bearer: str) -> Principal:
        refusals: list[TokenRefused] = []
        for authenticator in self._authenticators:
            try:
                return authenticator.authenticate(bearer)
            except TokenRefused as refused:
                refusals.append(refused)
        raise refusals[0] if refusals else TokenRefused("no authenticator")
