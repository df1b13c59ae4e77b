"""``POST /v1/conferences``: the add-on's onCreateFunction asks confsync for a conference.

The body is ``{"calendarId", "eventId", "requestId", "event": {...}}`` where ``event`` is the
Calendar event resource as the add-on could read it (maybe partial or missing: the event may
not exist in Calendar yet, as Google's quickstart notes). The caller proves who it is with
the user's Google ID token (``ScriptApp.getIdentityToken()``), or, in local mode only, with
the static dev token.

confsync creates the conference through the ConferenceProvider (idempotent on the caller's
``requestId`` for that event), links (calendar, event) -> conference, makes sure the calendar
is watched, and answers with JSON shaped like Calendar's ConferenceData, which the add-on turns
into a ConferenceDataService object. Failures answer ``{"error": {"type", "message",
"authenticationUrl"?}}`` with the types ConferenceError knows: AUTHENTICATION (403: the user
must sign in to the conferencing service), TEMPORARY (503) and PERMANENT (502).

With users' accounts on (``accounts``), the conference is created in the caller's own vendor
account, and a caller who has not connected (no vendor grant, or no way to read their
calendars) gets AUTHENTICATION with the connect page's URL: nothing is created.

Each request runs in a span (confsync/tracing.py) continuing the caller's ``traceparent`` (or
Cloud Run's ``X-Cloud-Trace-Context``), else a new trace (a malformed header is ignored): its
log lines and its call to the conferencing API carry that trace.

The API acts for its caller only (ingest/addon_access.py has the rules). Refused before
anything changes, with a ``reason`` in the error: a caller who may not write the calendar
(403 ``no_write_access``, Calendar's own word), a caller outside the allowed domains (403
``domain_not_allowed``), too many requests (429 ``rate_limited``, TEMPORARY, with
``Retry-After``), a calendar that belongs to another user (403 ``calendar_of_another_user``),
an event already linked to another conference (409 ``event_has_another_conference``, with
its ``conferenceId``). The first user whose create is accepted for a calendar becomes its
owner.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

import structlog
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from confsync.contracts import EventTime
from confsync.errors import AuthError, ConfsyncError, InvalidMessage, PermanentError, TransientError
from confsync.oidc import OidcVerifier, TokenRejected
from confsync.ports import Conference, ConferenceProvider, NewConference, Store, UserAccounts
from confsync.rfc3339 import parse_rfc3339, utc_now
from confsync.settings import Secret
from confsync.store import CalendarStatus, Link
from confsync.store.keys import MAX_DOCUMENT_ID_BYTES, document_id_fits
from confsync.tracing import SpanKind, span
from ingest.addon_access import (
    DEV_CALLER,
    AddonGuard,
    Caller,
    Refusal,
    caller_from_claims,
    event_has_conference,
    request_key,
)

__all__ = ["AddonAuth", "conference_data", "create_conference_route", "me_route"]

log = structlog.get_logger(__name__)

SOLUTION_NAME = "My Web Conference"
VENDOR = "My Web Conferencing"
ICON_URI = "https://mywebconf.test/icon.png"
MAX_BODY = 256 * 1024


@dataclass(frozen=True, slots=True)
class AddonAuth:
    """How callers of the add-on API prove who they are."""

    verifier: OidcVerifier | None  # Google ID tokens (production)
    dev_token: Secret | None  # local mode only

    def check(self, authorization: str | None) -> str:
        """The caller's email (or 'dev'), or TokenRejected."""
        return self.identify(authorization).email

    def identify(self, authorization: str | None) -> Caller:
        """The caller (the dev token's, or the one a Google ID token names), or TokenRejected."""
        scheme, _, token = (authorization or "").partition(" ")
        dev = self.dev_token
        if (
            dev is not None
            and scheme.lower() == "bearer"
            and hmac.compare_digest(token.encode(), dev.reveal().encode())
        ):
            return DEV_CALLER
        if self.verifier is None:
            raise TokenRejected(401, "missing or wrong bearer token")
        return caller_from_claims(self.verifier.verify(authorization))


def create_conference_route(  # noqa: PLR0913, PLR0915 - the route's parts, named; one closure per step
    store: Store,
    provider: ConferenceProvider,
    *,
    auth: AddonAuth,
    guard: AddonGuard,
    ensure_channel: Callable[[str], object],  # ChannelManager.ensure
    accounts: UserAccounts | None = None,
    path: str = "/v1/conferences",
) -> Route:
    def connect_first(caller: Caller) -> Response:
        assert accounts is not None  # noqa: S101 - only asked for with accounts on
        log.info("add-on caller must connect first")
        url = accounts.connect_url(caller.email, caller.domain)
        return _error(403, "AUTHENTICATION", f"Connect your {VENDOR} account to {SOLUTION_NAME} first.", url)

    def refused(caller: Caller, new: NewConference, key: str) -> Response | None:
        """The answer when the caller may not create this conference; None when they may."""
        try:
            refusal = guard.check(caller, new, key)
        except AuthError:  # the caller's Google credentials were refused (Disconnected among them)
            return connect_first(caller) if accounts is not None else _error(403, "AUTHENTICATION", "Sign in again.")
        except TransientError as err:
            log.warning("could not ask Calendar who may write the calendar", error=str(err))
            return _error(503, "TEMPORARY", "Google Calendar is busy; try again in a moment.")
        except ConfsyncError as err:
            log.error("could not ask Calendar who may write the calendar", error=str(err))  # noqa: TRY400 - an answer
            return _error(502, "PERMANENT", "Google Calendar refused to say who may write this calendar.")
        if refusal is None and accounts is not None and _disconnected(store, caller, new.calendar_id):
            return connect_first(caller)  # their reconnect makes it active and resyncs it (accounts/resume.py)
        if refusal is None:  # only now is anything written: the caller's claim on the calendar
            refusal = guard.claim(caller, new.calendar_id)
        return None if refusal is None else _refused(refusal)

    def create(new: NewConference, seen: datetime | None, caller: Caller) -> Response:  # noqa: PLR0911 - one answer per refusal
        conferences = provider
        if accounts is not None and not caller.dev:
            if not accounts.ready(caller.email):
                return connect_first(caller)
            conferences = accounts.conferences(caller.email)
        key = request_key(caller, new)
        refusal = refused(caller, new, key)
        if refusal is not None:
            return refusal
        try:
            conference = conferences.create(replace(new, request_id=key))
        except AuthError as err:
            if accounts is not None and not caller.dev:  # the vendor refused the caller's token, even refreshed
                return connect_first(caller)
            return _error(403, "AUTHENTICATION", "Sign in to My Web Conferencing first.", err.authentication_url)
        except TransientError as err:
            log.warning("conference creation failed, temporarily", error=str(err), status=err.status)
            return _error(503, "TEMPORARY", "The conferencing service is busy; try again in a moment.")
        except ConfsyncError as err:
            log.error("conference creation failed", error=str(err), status=err.status)  # noqa: TRY400 - an answer, not a crash
            return _error(502, "PERMANENT", f"The conferencing service refused the conference: {err}")
        # The link remembers the event version the add-on saw (unconfirmed: no fingerprint yet),
        # so a listing of that version, before Calendar saves the conference on the event, is
        # not taken for a removal (processors.classify). A live link is never replaced.
        link = Link(
            new.calendar_id, new.event_id, conference.id, last_event_updated=seen, created_at=utc_now(), request_key=key
        )
        standing = store.add_link(link)
        if standing.conference_id != conference.id:  # another create for the event won meanwhile
            log.error("conference left without a link: its event has another", conference_id=conference.id)
            return _refused(event_has_conference(standing.conference_id))
        try:
            ensure_channel(new.calendar_id)
        except ConfsyncError as err:  # the conference exists; renewal keeps trying to watch
            log.error("could not watch the calendar; changes will not sync until it can", error=str(err))  # noqa: TRY400
        log.info("conference created", conference_id=conference.id, event_id=new.event_id)
        return JSONResponse(conference_data(conference))

    async def endpoint(request: Request) -> Response:
        with span(f"POST {path}", parent=request.headers, kind=SpanKind.SERVER):
            return await handle(request)

    async def handle(request: Request) -> Response:
        try:  # in a thread: it may fetch Google's certificates
            caller = await run_in_threadpool(auth.identify, request.headers.get("authorization"))
        except TokenRejected as rejected:
            kind = "TEMPORARY" if rejected.status >= 500 else "AUTHENTICATION"  # an outage is no sign-in problem
            return JSONResponse({"error": {"type": kind, "message": rejected.reason}}, rejected.status)
        refusal = guard.admit(caller)
        if refusal is not None:
            with structlog.contextvars.bound_contextvars(caller=caller.email):
                return _refused(refusal)
        try:
            new, seen = _parse(await _read(request))
        except InvalidMessage as err:
            return _error(400, "PERMANENT", f"Bad request: {err}")
        with structlog.contextvars.bound_contextvars(calendar_id=new.calendar_id, caller=caller.email):
            return await run_in_threadpool(create, new, seen, caller)

    return Route(path, endpoint, methods=["POST"])


def me_route(auth: AddonAuth, guard: AddonGuard, accounts: UserAccounts, *, path: str = "/v1/me") -> Route:
    """``DELETE /v1/me``: the add-on's caller disconnects from confsync (accounts/offboard.py)."""

    async def endpoint(request: Request) -> Response:
        with span(f"DELETE {path}", parent=request.headers, kind=SpanKind.SERVER):
            return await handle(request)

    async def handle(request: Request) -> Response:
        try:
            caller = await run_in_threadpool(auth.identify, request.headers.get("authorization"))
        except TokenRejected as rejected:
            return JSONResponse({"error": {"type": "AUTHENTICATION", "message": rejected.reason}}, rejected.status)
        if caller.dev:
            return _error(400, "PERMANENT", "The dev token stands for no user: there is nobody to disconnect.")
        refusal = guard.admit(caller)
        if refusal is not None:
            return _refused(refusal)
        with structlog.contextvars.bound_contextvars(caller=caller.email):
            try:
                report = await run_in_threadpool(accounts.disconnect, caller.email)
            except TransientError as err:
                log.warning("disconnect failed, temporarily", error=str(err))
                return _error(503, "TEMPORARY", "Could not disconnect just now; nothing was lost: try again.")
        return JSONResponse({"disconnected": report})

    return Route(path, endpoint, methods=["DELETE"])


def conference_data(conference: Conference) -> dict[str, Any]:
    """Calendar's ConferenceData for one conference (what the add-on builds and returns)."""
    entry_points: list[dict[str, Any]] = [
        {"entryPointType": "video", "uri": conference.video_uri, "passcode": conference.passcode}
    ]
    if conference.phone_number:
        entry_points.append(
            {"entryPointType": "phone", "uri": f"tel:+{conference.phone_number}", "pin": conference.phone_pin}
        )
    return {
        "conferenceId": conference.id,
        "conferenceSolution": {"key": {"type": "addOn"}, "name": SOLUTION_NAME, "iconUri": ICON_URI},
        "entryPoints": entry_points,
        "parameters": {"addOnParameters": {"parameters": {"adminEmail": conference.admin_email}}},
        "notes": conference.legal_notice,
    }


def _disconnected(store: Store, caller: Caller, calendar_id: str) -> bool:
    """Whether the caller's own calendar lost confsync's access (it is not followed until they reconnect)."""
    state = store.get_calendar(calendar_id)
    return state is not None and state.status is CalendarStatus.DISCONNECTED and caller.is_(state.subject)


def _refused(refusal: Refusal) -> Response:
    """A refusal in the API's error shape; one with a Retry-After (429) is TEMPORARY."""
    kind = "TEMPORARY" if refusal.retry_after_s is not None else "PERMANENT"
    error: dict[str, Any] = {"type": kind, "reason": refusal.reason.value, "message": refusal.message}
    if refusal.conference_id is not None:
        error["conferenceId"] = refusal.conference_id
    headers = {} if refusal.retry_after_s is None else {"Retry-After": str(refusal.retry_after_s)}
    log.info("add-on request refused", reason=refusal.reason.value, status=refusal.status)
    return JSONResponse({"error": error}, status_code=refusal.status, headers=headers)


def _error(status: int, kind: str, message: str, authentication_url: str | None = None) -> Response:
    error: dict[str, Any] = {"type": kind, "message": message}
    if authentication_url:
        error["authenticationUrl"] = authentication_url
    return JSONResponse({"error": error}, status_code=status)


async def _read(request: Request) -> bytes:
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY:
            raise InvalidMessage(f"body larger than {MAX_BODY} bytes")
    return body


def _parse(body: bytes) -> tuple[NewConference, datetime | None]:
    """The create request, and the version (``updated``) of the event the add-on saw: None when
    the event did not exist yet; now, when the add-on sent an event without ``updated``.

    Everything is checked here, before the provider is called: a request refused after the
    conference was created would leave that conference with no link."""
    data = _decode(body)
    ids = _ids(data)
    event = data.get("event") or {}
    if not isinstance(event, dict):
        raise InvalidMessage("must be an object", field="event")
    attendees = event.get("attendees") or []
    if not isinstance(attendees, list):
        raise InvalidMessage("must be a list", field="event.attendees")
    organizer = event.get("organizer") or {}
    if not isinstance(organizer, dict):
        raise InvalidMessage("must be an object", field="event.organizer")
    seen = None
    if event:
        updated = _text(event.get("updated"), "event.updated")
        try:
            seen = utc_now() if updated is None else parse_rfc3339(updated)
        except ValueError as err:
            raise InvalidMessage("an RFC 3339 date-time is required", field="event.updated") from err
    new = NewConference(
        calendar_id=ids["calendarId"],
        event_id=ids["eventId"],
        request_id=ids["requestId"],
        summary=_text(event.get("summary"), "event.summary"),
        start=_time(event.get("start"), "event.start"),
        end=_time(event.get("end"), "event.end"),
        attendees=tuple(str(a["email"]) for a in attendees if isinstance(a, dict) and isinstance(a.get("email"), str)),
        organizer=_text(organizer.get("email"), "event.organizer.email"),
    )
    return new, seen


def _decode(body: bytes) -> dict[str, Any]:
    try:
        data = json.loads(body)
    except RecursionError as err:
        raise InvalidMessage("body is nested too deeply") from err
    except (ValueError, UnicodeDecodeError) as err:
        raise InvalidMessage(f"body is not JSON: {err}") from err
    if not isinstance(data, dict):
        raise InvalidMessage("body must be a JSON object")
    if _has_lone_surrogate(data):
        raise InvalidMessage("body has an unpaired surrogate (a lone \\uD800-\\uDFFF escape), which is not text")
    return data


def _ids(data: dict[str, Any]) -> dict[str, str]:
    ids = {key: data.get(key) for key in ("calendarId", "eventId", "requestId")}
    checked: dict[str, str] = {}
    for key, value in ids.items():
        if not isinstance(value, str) or not value or len(value) > 1024:
            raise InvalidMessage("a non-empty string of at most 1024 characters is required", field=key)
        if key == "calendarId" and value == "primary":  # an alias: whose it is depends on who asks
            raise InvalidMessage("the calendar's own id is required, not the alias 'primary'", field=key)
        if key != "requestId" and not document_id_fits(value):  # they name documents in the store
            limit = MAX_DOCUMENT_ID_BYTES
            raise InvalidMessage(f"too long once escaped as a store key (at most {limit} bytes)", field=key)
        checked[key] = value
    return checked


def _has_lone_surrogate(data: object) -> bool:
    """Whether any string in decoded JSON is not encodable text (walked without recursion)."""
    pending = [data]
    while pending:
        item = pending.pop()
        if isinstance(item, str):
            try:
                item.encode()
            except UnicodeEncodeError:
                return True
        elif isinstance(item, dict):
            pending += [*item.keys(), *item.values()]
        elif isinstance(item, list):
            pending += item
    return False


def _text(value: object, name: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidMessage("must be a string", field=name)
    return value


def _time(value: object, name: str) -> EventTime | None:
    if value is None:
        return None
    try:
        return EventTime.from_json(value, name)
    except PermanentError as err:
        raise InvalidMessage(str(err), field=name) from err
