"""Google-style ID tokens for tests, signed with keys made here (never Google's)."""

from __future__ import annotations

import datetime as dt
import time

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from google.auth import crypt, jwt

__all__ = ["GOOGLE_CERT", "GOOGLE_KEY", "IMPOSTOR_KEY", "sign"]


def _key_and_cert(kid: str) -> tuple[str, str]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, kid)])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    return private, cert.public_bytes(serialization.Encoding.PEM).decode()


GOOGLE_KEY, GOOGLE_CERT = _key_and_cert("google-kid")
IMPOSTOR_KEY, _ = _key_and_cert("google-kid")  # same key id, different key: a forged signature


def sign(private_key: str | None = None, **claims: object) -> str:
    """An ID token as Google would issue it (iss, iat, exp set; override anything)."""
    now = int(time.time())
    payload: dict[str, object] = {
        "iss": "https://accounts.google.com",
        "email_verified": True,
        "iat": now,
        "exp": now + 600,
        "sub": "1234567890",
    }
    payload.update(claims)
    signer = crypt.RSASigner.from_string(private_key or GOOGLE_KEY, key_id="google-kid")  # type: ignore[no-untyped-call]
    token: bytes = jwt.encode(signer, payload)  # type: ignore[no-untyped-call]
    return token.decode()
