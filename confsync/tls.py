"""One TLS context for every httpx client in a process.

httpx builds a fresh context for each client or transport it makes, reading certifi's whole CA
bundle each time (tens of milliseconds under OpenSSL 3); a context is safe to share, so confsync,
its sandboxes and its tests ask for this one.
"""

from __future__ import annotations

import functools
import ssl

import httpx

__all__ = ["tls_context"]


@functools.cache
def tls_context() -> ssl.SSLContext:
    """httpx's default context (certifi's CAs, or SSL_CERT_FILE/SSL_CERT_DIR), made once."""
    return httpx.create_ssl_context()
