"""The conferencing service's REST API ("My Web Conferencing"), and its httpx client.

The contract every provider implements (the sandbox serves it as OpenAPI at /openapi.json):

- ``POST /v1/conferences`` ``{calendar_id, event_id, request_id, summary, start, end, attendees,
  organizer}`` -> 201 ``{id, video_uri, passcode, phone_number, phone_pin, admin_email,
  legal_notice, version}``. The same ``request_id`` again returns the same conference (200).
- ``GET /v1/conferences/{id}`` -> 200 with every stored field plus ``state`` (active|deleted),
  ``version``, ``updated_at`` and ``last_event_updated``; 404 for an unknown id.
- ``PATCH /v1/conferences/{id}`` with ``Idempotency-Key``; body = changed fields plus
  ``event_updated`` -> 200. A repeated key returns the first answer and changes nothing; an
  ``event_updated`` older than the stored one -> 409 ``stale`` and changes nothing; a PATCH
  of a deleted conference -> 409 ``deleted`` (both become ``Stale``: the change is superseded;
  without ordering an update can arrive after its conference's delete).
- ``DELETE /v1/conferences/{id}`` with ``Idempotency-Key`` -> 204, also for a conference
  already deleted; 404 for an unknown id.
- ``start``/``end`` are shaped like Calendar's (``{"dateTime", "timeZone"}`` or ``{"date"}``);
  ``attendees`` is a list of email strings.
- Auth: ``Authorization: Bearer <api key>``; missing or wrong -> 401 whose error carries an
  ``authentication_url`` (the add-on shows it to the user, as in Google's quickstart).
- Errors: ``{"error": {"code", "message", "retryable"}}``; 429 and 503 carry ``Retry-After``.

Acting for a user: ``HttpConferenceProvider.as_user(email)`` is the same API with that user's
vendor access token (``AccessTokens``, accounts/vendor.py) instead of the app-wide key; a 401
gets one refreshed token and one retry, and a second 401 (or a revoked grant: ``Disconnected``)
goes to the caller.

Each call is a client span of the current trace (confsync/tracing.py) and sends its
``traceparent``, so the provider can join the change's trace.

``HttpConferenceProvider`` implements ``confsync.ports.ConferenceProvider`` over one pooled
httpx transport. Status codes and transport failures become confsync errors in one place,
``_raise_for_status``/``_send``; it never retries: the publisher owns the retry policy.
"""

from __future__ import annotations

import email.utils
import re
import urllib.parse
from collections.abc import Callable
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Self, TypeVar

import httpx
import structlog

from confsync.contracts import ConferencePayload, EventTime
from confsync.errors import (
    AuthError,
    ConfigError,
    Disconnected,
    InvalidMessage,
    NotFound,
    PermanentError,
    Stale,
    TransientError,
)
from confsync.ports import AccessTokens, Conference, ConferenceProvider, NewConference
from confsync.rfc3339 import format_rfc3339, parse_rfc3339
from confsync.settings import Secret, Settings
from confsync.tls import tls_context
from confsync.tracing import SpanKind, inject, span

__all__ = ["HttpConferenceProvider", "parse_retry_after"]

log = structlog.get_logger(__name__)

_TRANSIENT_STATUS = frozenset({408, 425, 429})
_MAX_ERROR_BODY = 2000
# A conference id is one URL path segment: RFC 3986 unreserved characters only (nothing a URL
# parser reads as a query, fragment, separator or escape), starting with a letter or digit (so
# never "." or ".."), at most as long as Calendar's add-on conferenceId may be.
_CONFERENCE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._~-]{0,511}")
_MAX_SHOWN_ID = 100
_T = TypeVar("_T")  # a refused id is named in the error, but a huge one is not copied whole


class HttpConferenceProvider:
    """The conferencing REST API over httpx; thread-safe (httpx's transport pools connections)."""

    def __init__(  # noqa: PLR0913 - where, as whom, and the pool's limits, named
        self,
        base_url: str,
        api_key: Secret | None,
        *,
        tokens: AccessTokens | None = None,
        timeout_s: float = 10.0,
        max_connections: int = 100,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self._base_url = base_url.rstrip("/")
        limits = httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections)
        self._transport = transport or httpx.HTTPTransport(limits=limits, verify=tls_context())
        self._api_key = api_key
        self._tokens = tokens
        self._headers = [("User-Agent", "confsync"), ("Accept", "application/json")]
        self._extensions = {"timeout": httpx.Timeout(timeout_s).as_dict()}

    @classmethod
    def from_settings(
        cls, settings: Settings, *, tokens: AccessTokens | None = None, transport: httpx.BaseTransport | None = None
    ) -> Self:
        if not settings.provider_url or (settings.provider_api_key is None and tokens is None):
            raise ConfigError(
                "the conferencing API needs CONFSYNC_PROVIDER_URL, and CONFSYNC_VENDOR_CLIENT_ID (users' "
                "accounts) or CONFSYNC_PROVIDER_API_KEY (one app-wide key)"
            )
        return cls(
            settings.provider_url,
            settings.provider_api_key,
            tokens=tokens,
            timeout_s=settings.provider_timeout_s,
            transport=transport,
        )

    def as_user(self, user: str | None) -> ConferenceProvider:
        """This API acting for ``user`` with their vendor token; with no users' tokens configured
        (or no user), the app-wide key: itself."""
        if self._tokens is None or user is None:
            return self
        return _AsUser(self, self._tokens, user)

    # -- the port ---------------------------------------------------------------------------

    def create(self, request: NewConference, *, bearer: Secret | None = None) -> Conference:
        body = {
            "calendar_id": request.calendar_id,
            "event_id": request.event_id,
            "request_id": request.request_id,
            "summary": request.summary,
            "start": request.start and request.start.to_json(),
            "end": request.end and request.end.to_json(),
            "attendees": list(request.attendees),
            "organizer": request.organizer,
        }
        return _conference(self._send("POST", "/v1/conferences", json=body, bearer=bearer))

    def get(self, conference_id: str, *, bearer: Secret | None = None) -> Conference:
        return _conference(self._send("GET", f"/v1/conferences/{_segment(conference_id)}", bearer=bearer))

    def update(
        self,
        conference_id: str,
        payload: ConferencePayload,
        *,
        event_updated: datetime,
        idempotency_key: str,
        bearer: Secret | None = None,
    ) -> Conference:
        body = {**payload.to_json(), "event_updated": format_rfc3339(event_updated)}
        answer = self._send(
            "PATCH",
            f"/v1/conferences/{_segment(conference_id)}",
            json=body,
            headers={"Idempotency-Key": idempotency_key},
            bearer=bearer,
        )
        return _conference(answer)

    def delete(self, conference_id: str, *, idempotency_key: str, bearer: Secret | None = None) -> None:
        path = f"/v1/conferences/{_segment(conference_id)}"
        self._send("DELETE", path, headers={"Idempotency-Key": idempotency_key}, bearer=bearer)

    # -- plumbing ---------------------------------------------------------------------------

    def _send(
        self,
        method: str,
        path: str,
        *,
        json: object = None,
        headers: dict[str, str] | None = None,
        bearer: Secret | None = None,
    ) -> httpx.Response:
        # Straight to httpx's transport (its pooled httpcore connections), not through
        # httpx.Client: a server-to-server call has no use for the client's cookie jar, auth
        # flow, redirect handling or URL merging, which cost a quarter of its CPU per call.
        # Cookies are never kept, so a provider's Set-Cookie cannot tie later calls to it.
        token = bearer or self._api_key
        if token is None:
            raise AuthError(f"{method} {path}: no user to act for and no app-wide API key", status=401)
        with span(method, kind=SpanKind.CLIENT, attributes={"http.request.method": method, "url.path": path}) as call:
            sent = [
                *self._headers,
                ("Authorization", f"Bearer {token.reveal()}"),
                *(headers or {}).items(),
                *inject().items(),  # the change's trace, for the provider to join
            ]
            request = httpx.Request(
                method,
                httpx.URL(self._base_url + path),
                headers=sent,
                json=json,
                extensions=self._extensions,
            )
            try:
                answer = self._transport.handle_request(request)
                try:
                    answer.read()
                finally:
                    answer.close()
            except httpx.TimeoutException as err:
                log.warning("conferencing API call failed", method=method, status="timeout")
                raise TransientError(f"{method} {path}: timed out ({type(err).__name__})") from err
            except httpx.TransportError as err:
                log.warning("conferencing API call failed", method=method, status="unreachable")
                raise TransientError(f"{method} {path}: {type(err).__name__}: {err}") from err
            call.set_attribute("http.response.status_code", answer.status_code)
            if answer.status_code >= 400:  # counted by status in monitoring.tf's provider_errors
                log.warning("conferencing API call failed", method=method, status=answer.status_code)
            _raise_for_status(method, path, answer)
            return answer

    def close(self) -> None:
        self._transport.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class _AsUser:
    """The conferencing API acting for one user: their access token, one refresh on a 401."""

    def __init__(self, api: HttpConferenceProvider, tokens: AccessTokens, user: str) -> None:
        self._api = api
        self._tokens = tokens
        self._user = user

    def _call(self, call: Callable[[Secret], _T]) -> _T:
        token = self._tokens.access_token(self._user)
        try:
            return call(token)
        except AuthError as err:
            if isinstance(err, Disconnected) or err.status != 401:
                raise
        return call(self._tokens.refreshed(self._user, token))  # a second 401 goes to the caller

    def create(self, request: NewConference) -> Conference:
        return self._call(lambda bearer: self._api.create(request, bearer=bearer))

    def get(self, conference_id: str) -> Conference:
        return self._call(lambda bearer: self._api.get(conference_id, bearer=bearer))

    def update(
        self, conference_id: str, payload: ConferencePayload, *, event_updated: datetime, idempotency_key: str
    ) -> Conference:
        return self._call(
            lambda bearer: self._api.update(
                conference_id, payload, event_updated=event_updated, idempotency_key=idempotency_key, bearer=bearer
            )
        )

    def delete(self, conference_id: str, *, idempotency_key: str) -> None:
        self._call(lambda bearer: self._api.delete(conference_id, idempotency_key=idempotency_key, bearer=bearer))


def _raise_for_status(method: str, path: str, answer: httpx.Response) -> None:
    """The one place an HTTP status becomes a confsync error."""
    status = answer.status_code
    if status < 400:
        return
    body = answer.text[:_MAX_ERROR_BODY]
    error = _error_object(answer)
    code = str(error.get("code", ""))
    message = f"{method} {path}: {status} {code or answer.reason_phrase}: {error.get('message', '')}".rstrip(": ")
    if status == 401:
        url = error.get("authentication_url")
        raise AuthError(message, authentication_url=url if isinstance(url, str) else None, status=status, body=body)
    if status == 404:
        raise NotFound(message, status=status, body=body)
    if status == 409 and code in ("stale", "deleted"):  # a deletion is the final version: superseded too
        raise Stale(message, status=status, body=body)
    if status in _TRANSIENT_STATUS or status >= 500:
        retry_after = parse_retry_after(answer.headers.get("Retry-After"))
        raise TransientError(message, retry_after=retry_after, status=status, body=body)
    raise PermanentError(message, status=status, body=body)


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or an HTTP date), or None."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    if text.isdigit():
        return float(text)
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def _error_object(answer: httpx.Response) -> dict[str, Any]:
    try:
        data = answer.json()
    except (ValueError, UnicodeDecodeError):
        return {}
    error = data.get("error") if isinstance(data, dict) else None
    return error if isinstance(error, dict) else {}


def _segment(conference_id: str) -> str:
    """The id as one path segment, or PermanentError before anything is sent."""
    if not _CONFERENCE_ID.fullmatch(conference_id):
        shown = repr(conference_id[:_MAX_SHOWN_ID]) + ("..." if len(conference_id) > _MAX_SHOWN_ID else "")
        raise PermanentError(f"not a conference id: {shown}")
    return urllib.parse.quote(conference_id, safe="")  # one segment, whatever the allow-list lets through


def _conference(answer: httpx.Response) -> Conference:
    """Parse a provider answer once, here; a malformed one is worth retrying later."""
    try:
        data = answer.json()
        return Conference(
            id=_str(data, "id"),
            video_uri=_str(data, "video_uri"),
            passcode=_opt(data, "passcode"),
            phone_number=_opt(data, "phone_number"),
            phone_pin=_opt(data, "phone_pin"),
            admin_email=_opt(data, "admin_email"),
            legal_notice=_opt(data, "legal_notice"),
            version=int(data.get("version", 1)),
            state=str(data.get("state", "active")),
            last_event_updated=_time(data.get("last_event_updated")),
            calendar_id=_opt(data, "calendar_id"),
            event_id=_opt(data, "event_id"),
            summary=_opt(data, "summary"),
            start=_event_time(data.get("start")),
            end=_event_time(data.get("end")),
            attendees=tuple(str(item) for item in data.get("attendees") or ()),
            organizer=_opt(data, "organizer"),
        )
    except (ValueError, TypeError, KeyError, AttributeError, InvalidMessage) as err:
        raise TransientError(
            f"malformed answer from the conferencing API: {err}", status=answer.status_code, body=answer.text[:200]
        ) from err


def _str(data: dict[str, Any], key: str) -> str:
    value = data[key]
    if not isinstance(value, str) or not value:
        raise ValueError(f"{key} is not a non-empty string")
    return value


def _opt(data: dict[str, Any], key: str) -> str | None:
    value = data.get(key)
    return None if value is None else str(value)


def _time(value: object) -> datetime | None:
    return None if value is None else parse_rfc3339(str(value))


def _event_time(value: object) -> EventTime | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise TypeError("start/end is not an object")
    return EventTime.from_json(value, "conference")
