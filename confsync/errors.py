"""One exception tree for confsync; whether to retry is decided by type, once.

Wrappers at the edges (``confsync/calendar.py`` for Google's ``HttpError``,
``confsync/provider.py`` for httpx) translate foreign errors into these types with
``raise ... from err``. Only a worker loop decides ack, nack or dead-letter, and it
decides from the type alone::

    ConfsyncError                  base of everything confsync raises on purpose; carries
    │                              the peer's HTTP ``status`` and ``body`` when there was one
    ├── TransientError             may succeed if tried again later: 429, 5xx, timeouts,
    │                              connection errors; carries ``retry_after`` (seconds)
    │                              when the other side said how long to wait -> nack
    ├── PermanentError             will fail the same way every time -> dead letter + ack
    │   ├── InvalidMessage         a malformed or unknown-version message; names the field
    │   ├── ConfigError            a bad setting; names the environment variable
    │   ├── AuthError              credentials refused (401); may carry the URL where a
    │   │                          user can (re)authenticate
    │   ├── NotFound               the thing addressed does not exist (404)
    │   ├── Stale                  the peer already holds a newer version (409 stale, or
    │   │                          409 deleted for a deleted conference): the
    │   │                          change is superseded, so callers may count it as done
    │   └── CalendarGone           a calendar we can no longer read (404/403 on the
    │                              calendar itself): its conferences get reconciled
    └── SyncTokenExpired           Calendar answered 410 fullSyncRequired: neither retry
                                   nor dead-letter; the sync loop does a full sync
"""

from __future__ import annotations

__all__ = [
    "AuthError",
    "CalendarGone",
    "ConfigError",
    "ConfsyncError",
    "InvalidMessage",
    "NotFound",
    "PermanentError",
    "Stale",
    "SyncTokenExpired",
    "TransientError",
]


class ConfsyncError(Exception):
    """Base of every error confsync raises on purpose.

    ``status`` and ``body`` are the peer's HTTP answer when the error came from one, so a
    dead letter can carry what the other side said.
    """

    def __init__(self, message: str, *, status: int | None = None, body: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.body = body


class TransientError(ConfsyncError):
    """Retrying later may succeed. ``retry_after`` is the delay the peer asked for."""

    def __init__(
        self, message: str, *, retry_after: float | None = None, status: int | None = None, body: str | None = None
    ) -> None:
        super().__init__(message, status=status, body=body)
        self.retry_after = retry_after


class PermanentError(ConfsyncError):
    """Retrying cannot help: the work goes to the dead-letter topic with this reason."""


class InvalidMessage(PermanentError):
    """A message between stages is malformed; ``field`` names the offending field."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(f"{field}: {message}" if field else message)
        self.field = field


class ConfigError(PermanentError):
    """A setting is missing or malformed; ``variable`` names the environment variable."""

    def __init__(self, message: str, *, variable: str | None = None) -> None:
        super().__init__(f"{variable}: {message}" if variable else message)
        self.variable = variable


class AuthError(PermanentError):
    """Credentials were refused. ``authentication_url`` is where a user can fix that."""

    def __init__(
        self,
        message: str,
        *,
        authentication_url: str | None = None,
        status: int | None = None,
        body: str | None = None,
    ) -> None:
        super().__init__(message, status=status, body=body)
        self.authentication_url = authentication_url


class Disconnected(AuthError):
    """A user's grant at ``provider`` ("google" or "vendor") was revoked (``invalid_grant``): nothing
    done for them can succeed until they connect again. Not a failure of the work itself: a
    command is held for the reconnect, a calendar is marked disconnected, nothing is deleted."""

    def __init__(self, message: str, *, user: str, provider: str) -> None:
        super().__init__(message, status=401)
        self.user = user
        self.provider = provider


class NotFound(PermanentError):
    """The addressed resource does not exist (HTTP 404)."""


class Stale(PermanentError):
    """The peer already holds a newer version of this thing; the change is superseded."""


class CalendarGone(PermanentError):
    """A calendar can no longer be read or watched (404/403 on the calendar itself)."""


class SyncTokenExpired(ConfsyncError):
    """Calendar answered 410 ``fullSyncRequired``: the sync loop must list from scratch."""
