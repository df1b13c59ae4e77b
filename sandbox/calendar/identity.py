"""Google's identity side for the Calendar sandbox: OAuth clients, service accounts, domain-wide
delegation, ID tokens and the keys that sign them.

- User consent runs through the shared authorization server (sandbox/oauth/), as Google's
  ``/o/oauth2/v2/auth`` and ``/token``; ``openid`` in the scopes adds an ID token.
- A service account's key file has Google's JSON shape with ``token_uri`` pointing here, so
  ``google.oauth2.service_account.Credentials`` signs an assertion (RFC 7523) that this
  server checks against the account's public key. With a ``sub`` it acts for that user only
  where domain-wide delegation was granted for the user's domain and every scope asked for;
  otherwise Google's ``unauthorized_client``.
- ID tokens are RS256 JWTs with Google's claims, signed by a key published at
  ``/oauth2/v3/certs`` (JWKS) and ``/oauth2/v1/certs`` (PEM by key id), so google-auth's
  ``id_token.verify_token`` accepts them given that certs URL.

JWTs are made and checked by google-auth (``google.auth.jwt``, ``google.auth.crypt``), keys by
``cryptography``, the JWKS by joserfc: nothing here encodes a token by hand.
"""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from google.auth import crypt, exceptions, jwt
from joserfc.jwk import RSAKey

from sandbox.clock import Clock
from sandbox.identity import Principal, PrincipalKind
from sandbox.oauth import AuthorizationServer, Grant, OAuthError, TokenResponse

__all__ = ["GOOGLE_ISSUER", "JWT_BEARER", "GoogleIdentity", "ServiceAccount"]

GOOGLE_ISSUER = "https://accounts.google.com"
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
_ID_TOKEN_TTL_S = 3600
_MAX_ASSERTION_S = 3600
# What Google's token endpoint takes as an assertion's audience besides its own address:
# google-auth's service-account credentials always name the first.
_GOOGLE_TOKEN_AUDIENCES = ("https://oauth2.googleapis.com/token", "https://accounts.google.com/o/oauth2/token")
_CONSUMER_DOMAINS = frozenset({"gmail.com", "googlemail.com"})


@dataclass(frozen=True, slots=True)
class ServiceAccount:
    email: str
    client_id: str  # the numeric id domain-wide delegation is granted to
    key_id: str
    public_key_pem: str
    token_uri: str  # the audience its assertions must name: this sandbox's token endpoint


def _new_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _private_pem(key: rsa.RSAPrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode("ascii")


def _public_pem(key: rsa.RSAPrivateKey) -> str:
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode("ascii")
    )


def google_subject(email: str) -> str:
    """A stable numeric ``sub`` for an email, as Google gives each account one."""
    return str(int(hashlib.sha256(email.encode("utf-8")).hexdigest()[:16], 16))


@dataclass
class GoogleIdentity:
    """``is_user(email)`` says whether an account exists (sandbox users)."""

    clock: Clock
    is_user: Callable[[str], bool]
    token_ttl_s: int = 3600
    oauth: AuthorizationServer = field(init=False)
    _signing_key: rsa.RSAPrivateKey = field(default_factory=_new_key, repr=False)
    _key_id: str = field(default_factory=lambda: secrets.token_hex(20))
    _accounts: dict[str, ServiceAccount] = field(default_factory=dict)
    _delegations: dict[tuple[str, str], frozenset[str]] = field(default_factory=dict)  # (client id, domain)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.oauth = AuthorizationServer(
            self.clock,
            token_ttl_s=self.token_ttl_s,
            token_prefix="ya29.",  # noqa: S106 - the shape of Google's access tokens, not a secret
            id_token_for=self._id_token_for_grant,
        )

    # -- users -------------------------------------------------------------------------------

    def principal_for(self, email: str) -> Principal | None:
        return Principal(PrincipalKind.USER, email) if self.is_user(email) else None

    def revoke_user(self, email: str) -> int:
        """The user removed the app's access in their Google Account: their tokens stop working."""
        return self.oauth.revoke_user(email)

    # -- ID tokens ---------------------------------------------------------------------------

    def id_token(self, email: str, audience: str, *, nonce: str | None = None) -> str:
        """An ID token for a user or a service account, for ``audience`` (RS256, Google's claims).

        Times are the wall clock's, not the sandbox clock's: verifiers check them against theirs."""
        now = int(time.time())
        claims: dict[str, object] = {
            "iss": GOOGLE_ISSUER,
            "aud": audience,
            "azp": audience,
            "sub": google_subject(email),
            "email": email,
            "email_verified": True,
            "iat": now,
            "exp": now + _ID_TOKEN_TTL_S,
        }
        domain = email.partition("@")[2]
        if domain and domain not in _CONSUMER_DOMAINS and not email.endswith(".gserviceaccount.com"):
            claims["hd"] = domain
        if nonce is not None:
            claims["nonce"] = nonce
        key = _private_pem(self._signing_key)
        signer = crypt.RSASigner.from_string(key, key_id=self._key_id)  # type: ignore[no-untyped-call]
        token: bytes = jwt.encode(signer, claims)  # type: ignore[no-untyped-call]
        return token.decode("ascii")

    def _id_token_for_grant(self, grant: Grant, client_id: str) -> str | None:
        if "openid" not in grant.scopes:
            return None
        return self.id_token(grant.subject.email, client_id, nonce=grant.nonce)

    def jwks(self) -> dict[str, object]:
        key = RSAKey.import_key(_public_pem(self._signing_key)).as_dict(private=False)
        return {"keys": [{**key, "kid": self._key_id, "alg": "RS256", "use": "sig"}]}

    def pem_certs(self) -> dict[str, str]:
        """Key id -> PEM public key, the shape of Google's ``/oauth2/v1/certs``."""
        return {self._key_id: _public_pem(self._signing_key)}

    # -- service accounts --------------------------------------------------------------------

    def create_service_account(self, name: str, token_uri: str, project_id: str = "sandbox") -> dict[str, str]:
        """A new service account and its key file, in Google's JSON shape."""
        key = _new_key()
        account = ServiceAccount(
            email=f"{name}@{project_id}.iam.gserviceaccount.com",
            client_id=str(int(secrets.token_hex(9), 16)),
            key_id=secrets.token_hex(20),
            public_key_pem=_public_pem(key),
            token_uri=token_uri,
        )
        with self._lock:
            if account.email in self._accounts:
                raise OAuthError("already_exists", f"service account {account.email} exists", status=409)
            self._accounts[account.email] = account
        base = token_uri.rsplit("/", 1)[0]
        return {
            "type": "service_account",
            "project_id": project_id,
            "private_key_id": account.key_id,
            "private_key": _private_pem(key),
            "client_email": account.email,
            "client_id": account.client_id,
            "auth_uri": f"{base}/o/oauth2/auth",
            "token_uri": token_uri,
            "auth_provider_x509_cert_url": f"{base}/oauth2/v1/certs",
            "client_x509_cert_url": f"{base}/robot/v1/metadata/x509/{account.email}",
            "universe_domain": "googleapis.com",
        }

    def has_service_account(self, email: str) -> bool:
        return email in self._accounts

    def delegate(self, client_id: str, domain: str, scopes: list[str]) -> None:
        """Domain-wide delegation: the service account with ``client_id`` may act for any user
        of ``domain``, for ``scopes``."""
        if not any(account.client_id == client_id for account in self._accounts.values()):
            raise OAuthError("not_found", f"no service account has client id {client_id}", status=404)
        with self._lock:
            self._delegations[(client_id, domain)] = frozenset(scopes)

    def withdraw(self, client_id: str, domain: str) -> bool:
        with self._lock:
            return self._delegations.pop((client_id, domain), None) is not None

    def jwt_bearer(self, form: Mapping[str, str]) -> TokenResponse:
        """The JWT bearer grant: a service account's signed assertion for an access token (or,
        with ``target_audience``, an ID token)."""
        account, claims = self._assertion(form.get("assertion", ""))
        audience = claims.get("target_audience")
        if audience is not None:
            if not isinstance(audience, str) or not audience:
                raise OAuthError("invalid_grant", "Invalid JWT: target_audience must be a string.")
            return TokenResponse("", 0, "", id_token=self.id_token(account.email, audience))
        scope = claims.get("scope")
        if not isinstance(scope, str) or not scope.split():
            raise OAuthError("invalid_scope", "Invalid OAuth scope or ID token audience provided.")
        scopes = scope.split()
        subject = claims.get("sub")
        if subject is None or subject == account.email:
            principal = Principal(PrincipalKind.SERVICE_ACCOUNT, account.email)
        elif isinstance(subject, str):
            principal = self._delegated(account, subject, scopes)
        else:
            raise OAuthError("invalid_grant", "Invalid JWT: sub must be an email.")
        return self.oauth.issue(principal, account.client_id, scopes)

    def _assertion(self, assertion: str) -> tuple[ServiceAccount, Mapping[str, object]]:
        """The service account and claims of a signed assertion: its key, a token endpoint as
        audience (this one, or Google's own names for it), and a lifetime of at most an hour."""
        try:
            unverified = jwt.decode(assertion, verify=False)  # type: ignore[no-untyped-call]
        except (ValueError, TypeError, exceptions.GoogleAuthError) as err:
            raise OAuthError("invalid_grant", "Invalid JWT: malformed assertion.") from err
        account = self._accounts.get(str(unverified.get("iss", "")))
        if account is None:
            raise OAuthError("invalid_grant", "Invalid JWT Signature.")
        try:
            certs = {account.key_id: account.public_key_pem}
            claims: Mapping[str, object] = jwt.decode(  # type: ignore[no-untyped-call]
                assertion, certs=certs, audience=[account.token_uri, *_GOOGLE_TOKEN_AUDIENCES]
            )
        except (ValueError, TypeError, exceptions.GoogleAuthError) as err:
            raise OAuthError("invalid_grant", f"Invalid JWT: {err}") from err
        issued, expires = claims.get("iat"), claims.get("exp")
        if not isinstance(issued, int) or not isinstance(expires, int) or expires - issued > _MAX_ASSERTION_S:
            raise OAuthError("invalid_grant", "Invalid JWT: the assertion may last at most one hour.")
        return account, claims

    def _delegated(self, account: ServiceAccount, subject: str, scopes: list[str]) -> Principal:
        granted = self._delegations.get((account.client_id, subject.partition("@")[2]), frozenset())
        if not scopes or not set(scopes) <= granted:
            raise OAuthError(
                "unauthorized_client",
                "Client is unauthorized to retrieve access tokens using this method, or client not "
                "authorized for any of the scopes requested.",
                status=401,
            )
        if not self.is_user(subject):
            raise OAuthError("invalid_grant", "Invalid email or User ID")
        return Principal(PrincipalKind.SERVICE_ACCOUNT, subject, via=account.email)
