"""Google Calendar through google-api-python-client: the ``CalendarClient`` port.

One service object per thread (httplib2 is not thread-safe), built from static discovery,
pointed at Google or at ``Settings.calendar_api_endpoint`` (the sandbox). Credentials are
per calendar subject and come from an injected factory: domain-wide delegation
(``service_account.Credentials.with_subject``) or a user's refresh token in production,
anonymous for the sandbox.

``_translate`` is the one place an ``HttpError`` becomes a confsync error
(https://developers.google.com/calendar/api/guides/errors):

- 410 ``fullSyncRequired``                       -> SyncTokenExpired
- 401 (or credentials that cannot be refreshed)  -> AuthError
- 403/429 rate limits (rateLimitExceeded, userRateLimitExceeded, quotaExceeded) and 5xx
                                                 -> TransientError (with Retry-After if sent)
- 404, or 403 ``forbidden``/``notFound`` on the calendar -> CalendarGone
- any other 4xx                                  -> PermanentError
- transport failures and timeouts                -> TransientError

Google's JSON is parsed here, once, into ``confsync.ports`` types.
"""

from __future__ import annotations

import http.client
import json
import threading
from collections import OrderedDict
from collections.abc import Callable
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import httplib2
from google.auth import exceptions as google_auth_exceptions
from google.auth.credentials import AnonymousCredentials, Credentials
from google.oauth2 import credentials as user_credentials
from google.oauth2 import service_account
from google_auth_httplib2 import AuthorizedHttp
from googleapiclient.discovery import build
from googleapiclient.errors import HttpError

from confsync.contracts import EventTime
from confsync.errors import (
    AuthError,
    CalendarGone,
    ConfigError,
    Disconnected,
    InvalidMessage,
    PermanentError,
    SyncTokenExpired,
    TransientError,
)
from confsync.ports import CalendarEvent, EventConference, EventPage, WatchChannel
from confsync.provider import parse_retry_after
from confsync.rfc3339 import format_rfc3339, parse_rfc3339
from confsync.settings import Secret, Settings

__all__ = [
    "CalendarClients",
    "CredentialsFactory",
    "GoogleCalendarClient",
    "anonymous",
    "delegated",
    "parse_event",
    "user_tokens",
]

CredentialsFactory = Callable[[str], Credentials]
_STALE_CONNECTION_RETRIES = 2
_RATE_LIMITS = frozenset({"rateLimitExceeded", "userRateLimitExceeded", "quotaExceeded"})
# What parse_event reads, and no more (a partial response: descriptions, reminders, entry points
# and the rest are never sent); tests/test_confsync/test_calendar_client.py holds the two together.
_EVENT_FIELDS = (
    "id,status,updated,summary,start,end,attendees/email,organizer/email,recurrence,recurringEventId,"
    "originalStartTime,htmlLink,conferenceData(conferenceId,conferenceSolution(key/type,name))"
)
_LIST_FIELDS = f"nextPageToken,nextSyncToken,items({_EVENT_FIELDS})"


# Read events and watch them; calendarList.get tells the add-on API whether its caller may write.
CALENDAR_SCOPES = (
    "https://www.googleapis.com/auth/calendar.events.readonly",
    "https://www.googleapis.com/auth/calendar.calendarlist.readonly",
)


def anonymous(_subject: str) -> Credentials:
    """For the sandbox: no credentials at all."""
    return AnonymousCredentials()  # type: ignore[no-untyped-call]


def delegated(service_account_file: Path, scopes: tuple[str, ...] = CALENDAR_SCOPES) -> CredentialsFactory:
    """Domain-wide delegation: the service account acts as each calendar's user (its subject).

    The key file is read once; each subject gets ``with_subject`` credentials, which google-auth
    refreshes itself (https://developers.google.com/identity/protocols/oauth2/service-account).
    """
    try:
        base = service_account.Credentials.from_service_account_file(str(service_account_file), scopes=list(scopes))  # type: ignore[no-untyped-call]
    except (OSError, ValueError) as err:
        raise ConfigError(
            f"unusable service account key: {err}", variable="CONFSYNC_CALENDAR_SERVICE_ACCOUNT_FILE"
        ) from err

    def for_subject(subject: str) -> Credentials:
        credentials: Credentials = base.with_subject(subject)
        return credentials

    return for_subject


def user_tokens(
    tokens_file: Path, client_id: str, client_secret: Secret, scopes: tuple[str, ...] = CALENDAR_SCOPES
) -> CredentialsFactory:
    """Each user's own OAuth consent: refresh tokens per subject, from a JSON file
    ``{"alice@example.com": "1//refresh-token", ...}`` (kept like any other secret)."""
    try:
        tokens = {str(k): Secret(str(v)) for k, v in json.loads(tokens_file.read_text(encoding="utf-8")).items()}
    except (OSError, ValueError, AttributeError) as err:
        raise ConfigError(f"unusable user token file: {err}", variable="CONFSYNC_CALENDAR_USER_TOKENS_FILE") from err

    def for_subject(subject: str) -> Credentials:
        token = tokens.get(subject)
        if token is None:
            raise AuthError(f"no refresh token for {subject}: the user must connect confsync again")
        credentials: Credentials = user_credentials.Credentials(  # type: ignore[no-untyped-call]
            token=None,
            refresh_token=token.reveal(),
            client_id=client_id,
            client_secret=client_secret.reveal(),
            token_uri="https://oauth2.googleapis.com/token",  # noqa: S106 - Google's token endpoint, not a secret
            scopes=list(scopes),
        )
        return credentials

    return for_subject


_SUBJECTS_KEPT = 1024


class _Resources:
    """A built service's resource collections, each made once: googleapiclient makes every
    method of a collection anew, docstrings rendered from the discovery schema, each time the
    collection is asked for, which cost a listing more CPU than its answer."""

    def __init__(self, service: Any) -> None:
        self._service = service
        self._events = service.events()
        self._calendar_list = service.calendarList()
        self._channels = service.channels()

    def events(self) -> Any:
        return self._events

    def calendarList(self) -> Any:  # noqa: N802 - googleapiclient's name for it
        return self._calendar_list

    def channels(self) -> Any:
        return self._channels

    def close(self) -> None:
        self._service.close()


class _Connections:
    """One discovery service and one connection pool per thread, shared by every subject.

    Building a service costs its discovery document (hundreds of KiB), so it is made once per
    thread, never per subject; each request goes out with its subject's credentials wrapped
    around the thread's pool (``execute(http=...)``)."""

    def __init__(self, endpoint: str | None, timeout_s: float) -> None:
        self._endpoint = endpoint
        self._timeout_s = timeout_s
        self._local = threading.local()
        self._built: list[tuple[Any, httplib2.Http]] = []
        self._lock = threading.Lock()

    def get(self) -> tuple[Any, httplib2.Http]:
        """This thread's (service, pool)."""
        pair: tuple[Any, httplib2.Http] | None = getattr(self._local, "pair", None)
        if pair is None:
            pool = httplib2.Http(timeout=self._timeout_s)
            options = {"api_endpoint": self._endpoint} if self._endpoint else None
            service = build("calendar", "v3", http=pool, static_discovery=True, client_options=options)
            pair = self._local.pair = (_Resources(service), pool)
            with self._lock:
                self._built.append(pair)
        return pair

    @property
    def built(self) -> int:
        """How many services were built (one per thread that made a call)."""
        with self._lock:
            return len(self._built)

    def close(self) -> None:
        with self._lock:
            for service, pool in self._built:
                service.close()
                pool.close()
            self._built.clear()
        self._local = threading.local()


class CalendarClients:
    """A GoogleCalendarClient per calendar subject, all on one set of connections.

    Only the ``max_subjects`` most recently used subjects keep their credentials (and the
    access tokens those cache); an older one gets fresh credentials when it comes back."""

    def __init__(
        self,
        *,
        endpoint: str | None,
        credentials: CredentialsFactory,
        default_subject: str = "",
        max_subjects: int = _SUBJECTS_KEPT,
        timeout_s: float = 30.0,
    ) -> None:
        self._connections = _Connections(endpoint, timeout_s)
        self._credentials = credentials
        self._default = default_subject
        self._max_subjects = max_subjects
        self._clients: OrderedDict[str, GoogleCalendarClient] = OrderedDict()
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Settings) -> CalendarClients:
        factory: CredentialsFactory = anonymous
        if settings.calendar_service_account_file:
            factory = delegated(Path(settings.calendar_service_account_file))
        elif settings.calendar_user_tokens_file:
            if not settings.oauth_client_id or settings.oauth_client_secret is None:
                raise ConfigError(
                    "user tokens need CONFSYNC_OAUTH_CLIENT_ID and CONFSYNC_OAUTH_CLIENT_SECRET",
                    variable="CONFSYNC_CALENDAR_USER_TOKENS_FILE",
                )
            factory = user_tokens(
                Path(settings.calendar_user_tokens_file), settings.oauth_client_id, settings.oauth_client_secret
            )
        return cls(endpoint=settings.calendar_api_endpoint, credentials=factory)

    def for_subject(self, subject: str | None) -> GoogleCalendarClient:
        key = subject or self._default
        with self._lock:
            client = self._clients.get(key)
            if client is None:
                client = self._clients[key] = GoogleCalendarClient(
                    credentials=self._credentials, subject=key, connections=self._connections
                )
                if len(self._clients) > self._max_subjects:
                    self._clients.popitem(last=False)
            else:
                self._clients.move_to_end(key)
            return client

    @property
    def kept(self) -> tuple[int, int]:
        """(subjects whose credentials are kept, discovery services built)."""
        with self._lock:
            return len(self._clients), self._connections.built

    def close(self) -> None:
        with self._lock:
            self._clients.clear()
        self._connections.close()


class GoogleCalendarClient:
    """``confsync.ports.CalendarClient`` for one calendar subject's credentials."""

    def __init__(
        self,
        *,
        endpoint: str | None = None,
        credentials: CredentialsFactory = anonymous,
        subject: str = "",
        timeout_s: float = 30.0,
        connections: _Connections | None = None,
    ) -> None:
        self._owns_connections = connections is None
        self._connections = connections or _Connections(endpoint, timeout_s)
        self._credentials = credentials
        self._subject = subject
        self._made: Credentials | None = None

    @classmethod
    def from_settings(cls, settings: Settings, *, credentials: CredentialsFactory = anonymous) -> GoogleCalendarClient:
        return cls(endpoint=settings.calendar_api_endpoint, credentials=credentials)

    def _subject_credentials(self) -> Credentials:
        if self._made is None:  # a race makes it twice, harmlessly
            self._made = self._credentials(self._subject)
        return self._made

    def close(self) -> None:
        if self._owns_connections:
            self._connections.close()

    def list_events(
        self,
        calendar_id: str,
        *,
        sync_token: str | None = None,
        page_token: str | None = None,
        time_min: datetime | None = None,
        max_results: int = 2500,
    ) -> EventPage:
        params: dict[str, Any] = {
            "calendarId": calendar_id,
            "maxResults": max_results,
            "showDeleted": True,
            "fields": _LIST_FIELDS,
        }
        if sync_token:
            params["syncToken"] = sync_token
        elif time_min is not None:
            params["timeMin"] = format_rfc3339(time_min)
        if page_token:
            params["pageToken"] = page_token
        page = self._execute(lambda events: events.list(**params), calendar_id)
        return EventPage(
            events=tuple(parse_event(item) for item in page.get("items", [])),
            next_page_token=page.get("nextPageToken"),
            next_sync_token=page.get("nextSyncToken"),
        )

    def watch(self, calendar_id: str, *, channel_id: str, address: str, token: str, ttl_s: int) -> WatchChannel:
        body = {"id": channel_id, "type": "web_hook", "address": address, "token": token, "params": {"ttl": str(ttl_s)}}
        answer = self._execute(lambda events: events.watch(calendarId=calendar_id, body=body), calendar_id)
        return WatchChannel(
            channel_id=answer["id"],
            resource_id=answer["resourceId"],
            resource_uri=answer.get("resourceUri", ""),
            expiration=datetime.fromtimestamp(int(answer["expiration"]) / 1000, UTC),
        )

    def access_role(self, calendar_id: str) -> str | None:
        """The subject's role on the calendar (calendarList.get: owner, writer, reader,
        freeBusyReader), or None when it is not in their calendar list."""
        try:
            entry = self._execute_raw(lambda service: service.calendarList().get(calendarId=calendar_id), calendar_id)
        except CalendarGone:
            return None
        role = entry.get("accessRole") if isinstance(entry, dict) else None
        return role if isinstance(role, str) else None

    def get_event(self, calendar_id: str, event_id: str) -> CalendarEvent:
        return parse_event(
            self._execute(
                lambda events: events.get(calendarId=calendar_id, eventId=event_id, fields=_EVENT_FIELDS), calendar_id
            )
        )

    def writable_calendars(self) -> tuple[str, ...]:
        found: list[str] = []
        page_token: str | None = None
        while True:
            params: dict[str, Any] = {"minAccessRole": "writer", "maxResults": 250}
            if page_token:
                params["pageToken"] = page_token
            page: dict[str, Any] = self._execute_raw(partial(_calendar_list, params=params))
            found += [
                str(entry["id"]) for entry in page.get("items", []) if isinstance(entry, dict) and entry.get("id")
            ]
            page_token = page.get("nextPageToken")
            if not page_token:
                return tuple(found)

    def stop_channel(self, channel_id: str, resource_id: str) -> None:
        try:
            self._execute_raw(
                lambda service: service.channels().stop(body={"id": channel_id, "resourceId": resource_id})
            )
        except CalendarGone:
            return  # already gone: stopping it is done

    def _execute(self, request: Callable[[Any], Any], calendar_id: str) -> dict[str, Any]:
        result: dict[str, Any] = self._execute_raw(lambda service: request(service.events()), calendar_id)
        return result

    def _execute_raw(self, request: Callable[[Any], Any], calendar_id: str = "") -> Any:
        stale: ConnectionError | http.client.HTTPException | None = None
        renewed = False
        for _ in range(2 + _STALE_CONNECTION_RETRIES):
            service, pool = self._connections.get()
            reused = self._made is not None
            try:
                return request(service).execute(http=AuthorizedHttp(self._subject_credentials(), http=pool))
            except HttpError as err:
                raise _translate(err, calendar_id) from err
            except google_auth_exceptions.GoogleAuthError as err:  # refreshing the access token failed
                self._made = None  # built again from the store: the user may have reconnected since
                failed = _refresh_failed(self._subject, err, calendar_id)
                if isinstance(failed, Disconnected) and reused and not renewed:
                    renewed = True  # credentials made before a reconnect: once more with the stored grant
                    continue
                raise failed from err
            except (ConnectionError, http.client.HTTPException) as err:
                # The server closed a pooled connection while it sat idle: the request never
                # reached it, so it goes again on a fresh connection.
                pool.close()
                stale = err
            except (TimeoutError, httplib2.HttpLib2Error, OSError) as err:
                raise TransientError(f"Calendar API unreachable: {type(err).__name__}: {err}") from err
        raise TransientError(f"Calendar API unreachable: {type(stale).__name__}: {stale}") from stale


def _calendar_list(service: Any, params: dict[str, Any]) -> Any:
    return service.calendarList().list(**params)


def _refresh_failed(subject: str, err: google_auth_exceptions.GoogleAuthError, calendar_id: str) -> Exception:
    """A failed token refresh: Google's ``invalid_grant`` is a revoked grant (``Disconnected``), no
    answer or a retryable refusal is transient (never a revocation), anything else refused."""
    where = calendar_id or "request"
    if isinstance(err, google_auth_exceptions.TransportError) or getattr(err, "retryable", False):
        return TransientError(f"Calendar credentials for {where} could not be refreshed: {type(err).__name__}")
    details = err.args[1] if isinstance(err, google_auth_exceptions.RefreshError) and len(err.args) > 1 else None
    if isinstance(details, dict) and details.get("error") == "invalid_grant":
        return Disconnected(
            f"the Google grant of {subject or 'the calendar owner'} was revoked", user=subject, provider="google"
        )
    return AuthError(f"Calendar credentials for {where} were refused: {type(err).__name__}", status=401)


def _translate(err: HttpError, calendar_id: str) -> Exception:
    """The one place a Calendar API HttpError becomes a confsync error."""
    status = int(err.resp.status)
    reasons = {str(detail.get("reason", "")) for detail in (err.error_details or []) if isinstance(detail, dict)}
    body = err.content.decode("utf-8", "replace")[:2000] if isinstance(err.content, bytes) else None
    message = f"Calendar API {status} {','.join(sorted(reasons)) or ''} for {calendar_id or 'request'}: {err.reason}"
    if status == 410 and "deleted" not in reasons:
        return SyncTokenExpired(message, status=status, body=body)
    if status == 401:
        return AuthError(message, status=status, body=body)
    if status == 429 or status >= 500 or (status == 403 and reasons & _RATE_LIMITS):
        return TransientError(
            message, retry_after=parse_retry_after(err.resp.get("retry-after")), status=status, body=body
        )
    if status == 404 or (status == 403 and reasons & {"forbidden", "notFound", "forbiddenForNonOrganizer"}):
        return CalendarGone(message, status=status, body=body)
    return PermanentError(message, status=status, body=body)


def parse_event(item: dict[str, Any]) -> CalendarEvent:
    """One Calendar event resource as the port's typed event (tombstones carry little)."""
    conference, attendees, recurrence = item.get("conferenceData"), item.get("attendees"), item.get("recurrence")
    return CalendarEvent(
        id=str(item["id"]),
        status=str(item.get("status", "confirmed")),
        updated=_time(item.get("updated")),
        summary=item.get("summary"),
        start=_event_time(item.get("start")),
        end=_event_time(item.get("end")),
        # A full listing parses thousands of events: no generator for the lists most events lack.
        attendees=tuple(str(a["email"]) for a in attendees if isinstance(a, dict) and a.get("email"))
        if attendees
        else (),
        organizer=(item.get("organizer") or {}).get("email"),
        recurrence=tuple(str(line) for line in recurrence) if recurrence else (),
        recurring_event_id=item.get("recurringEventId"),
        original_start_time=_event_time(item.get("originalStartTime")),
        html_link=item.get("htmlLink"),
        conference=None if not isinstance(conference, dict) else _conference(conference),
    )


def _conference(data: dict[str, Any]) -> EventConference:
    solution = data.get("conferenceSolution") or {}
    return EventConference(
        conference_id=data.get("conferenceId"),
        solution_type=(solution.get("key") or {}).get("type"),
        solution_name=solution.get("name"),
    )


def _time(value: object) -> datetime | None:
    try:
        return None if value is None else parse_rfc3339(str(value))
    except ValueError:
        return None


def _event_time(value: object) -> EventTime | None:
    if not isinstance(value, dict):
        return None
    try:
        return EventTime.from_json(value, "event")
    except InvalidMessage:
        return None
