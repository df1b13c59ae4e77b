"""Drive a running local stack the way its users and Google do, and check the outcome.

``StackDriver`` takes the ready info of ``confsync local`` and acts only through public
surfaces, each time as a person of the stack:

- Calendar (google-api-python-client against the sandbox) as the calendar's user, with their
  own token: the static one ``confsync local`` gave each of its users, or, for a user added
  later (``add_user``), one they get by signing in to "Calendar UI" through Google's consent
  page. Every calendar here is its user's primary calendar: its id is their email.
- The add-on API over HTTP with a Google ID token the Calendar sandbox mints for the acting
  user (create a conference, then attach its ConferenceData to the event as Calendar does).
  When the API answers AUTHENTICATION, ``add_conference`` connects the user and asks again,
  as a person would.
- confsync's connect pages (``connect``): a browser without JavaScript that presses Continue
  and answers Google's and the vendor's consent pages (plain forms) with "allow".
- The sandboxes' admin routes (users, faults, sync-token invalidation) and the conferencing
  API with the app's key (GET a conference, whichever account holds it).

``compare`` states, for each conference, what Calendar's truth says it should be and what the
provider holds; ``wait_until_agreed`` polls until they match. Used by ``confsync demo``, the
end-to-end tests and bench/chaos.py.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
import uuid
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from typing import Any
from urllib.parse import parse_qs, urljoin, urlsplit

import httplib2
import httpx
from google.oauth2.credentials import Credentials
from google_auth_httplib2 import AuthorizedHttp
from googleapiclient.discovery import build
from googleapiclient.errors import HttpError
from googleapiclient.http import BatchHttpRequest

from confsync.tls import tls_context
from stack.local import ReadyInfo

__all__ = [
    "ConnectFailed",
    "Connection",
    "Consent",
    "Expectation",
    "Row",
    "StackDriver",
    "authentication_url",
    "expectation",
    "settled",
]

# As a user's client would: a kept-alive connection the server closed meanwhile (BrokenPipe),
# or a 5xx, is tried again (google-api-python-client backs off between tries).
_RETRIES = 2

_OURS = frozenset({"My Web Conference", "My Recorded Web Conference"})
_RETRYABLE = frozenset({408, 425, 429, 500, 502, 503, 504})
_UI_SCOPE = "https://www.googleapis.com/auth/calendar"  # what Calendar's own UI may do
_ID_TOKEN_REUSE_S = 30 * 60  # the sandbox's ID tokens last an hour
_NOBODYS_CALENDAR = "nobody@calendar.invalid"  # no user may write it: see connect_link
_MAX_CONNECT_STEPS = 12


class ConnectFailed(RuntimeError):
    """The connect flow did not end on confsync's "Connected" page; the message says where it ended."""


@dataclass(frozen=True, slots=True)
class Consent:
    """One consent page a user answered: whose ("Google", "vendor") and the scopes it asked for."""

    at: str
    scopes: frozenset[str]


@dataclass(frozen=True, slots=True)
class Connection:
    """A user's walk through the connect flow: the consent pages they answered, in order."""

    user: str
    consents: tuple[Consent, ...]  # none when the user was connected already


@dataclass(frozen=True, slots=True)
class Expectation:
    """What the provider should hold for one conference, read from Calendar."""

    state: str  # active | deleted
    summary: str | None = None
    start: datetime | str | None = None
    end: datetime | str | None = None
    attendees: tuple[str, ...] = ()
    # a series' cancelled and moved occurrences: (original start, "cancelled" | "moved", new start)
    exceptions: tuple[tuple[datetime | str | None, str, datetime | str | None], ...] = ()


@dataclass(frozen=True, slots=True)
class Row:
    """One conference: where it lives, what Calendar says, what the provider has."""

    calendar_id: str
    event_id: str
    conference_id: str
    expected: Expectation
    actual: Expectation | None
    account: str | None = None  # the vendor account holding it (None: the app's own, or missing)

    @property
    def agrees(self) -> bool:
        return self.actual == self.expected


def expectation(
    event: Mapping[str, Any] | None, conference_id: str, instances: Sequence[Mapping[str, Any]] = ()
) -> Expectation:
    """Calendar's truth for ``conference_id`` given its event (None: the event is gone) and, for a
    series, its instances (deleted ones included)."""
    if event is None or event.get("status") == "cancelled":
        return Expectation("deleted")
    data = event.get("conferenceData") or {}
    solution = data.get("conferenceSolution") or {}
    ours = (solution.get("key") or {}).get("type") == "addOn" and solution.get("name") in _OURS
    if not ours or data.get("conferenceId") != conference_id:
        return Expectation("deleted")
    emails = tuple(sorted(str(a["email"]) for a in event.get("attendees") or [] if a.get("email")))
    start, end = _moment(event.get("start")), _moment(event.get("end"))
    return Expectation("active", event.get("summary"), start, end, emails, _calendar_exceptions(instances))


def _calendar_exceptions(
    instances: Sequence[Mapping[str, Any]],
) -> tuple[tuple[datetime | str | None, str, datetime | str | None], ...]:
    found: list[tuple[datetime | str | None, str, datetime | str | None]] = []
    for item in instances:
        original = _moment(item.get("originalStartTime"))
        if item.get("status") == "cancelled":
            found.append((original, "cancelled", None))
        elif _moment(item.get("start")) != original:
            found.append((original, "moved", _moment(item.get("start"))))
    return tuple(sorted(found, key=str))


def _provider_exceptions(
    conference: Mapping[str, Any],
) -> tuple[tuple[datetime | str | None, str, datetime | str | None], ...]:
    found = [
        (_moment(item.get("original_start")), str(item.get("status")), _moment(item.get("start")))
        for item in conference.get("exceptions") or []
    ]
    return tuple(sorted(found, key=str))


def _provider_view(conference: Mapping[str, Any]) -> Expectation:
    if conference.get("state") != "active":
        return Expectation("deleted")
    emails = tuple(sorted(conference.get("attendees") or []))
    start, end = _moment(conference.get("start")), _moment(conference.get("end"))
    return Expectation("active", conference.get("summary"), start, end, emails, _provider_exceptions(conference))


def _moment(value: Mapping[str, Any] | None) -> datetime | str | None:
    """A comparable start/end: an aware datetime, or an all-day date string."""
    if not value:
        return None
    if value.get("dateTime"):
        return datetime.fromisoformat(str(value["dateTime"]).replace("Z", "+00:00"))
    return str(value.get("date"))


def _instant(value: Mapping[str, Any]) -> datetime:
    """A timed event's start or end as an aware datetime."""
    return datetime.fromisoformat(str(value["dateTime"]).replace("Z", "+00:00"))


def authentication_url(answer: httpx.Response) -> str | None:
    """The connect link of an add-on API answer that says AUTHENTICATION (the user must connect), else None."""
    if answer.status_code != 403:
        return None
    error = answer.json().get("error") or {}
    url = error.get("authenticationUrl") if error.get("type") == "AUTHENTICATION" else None
    return str(url) if url else None


class _Page(HTMLParser):
    """What a plain HTML page says: its first ``<h1>``, and its first form's action and hidden fields."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.heading = ""
        self.action: str | None = None
        self.fields: dict[str, str] = {}
        self._in: str | None = None  # h1 or form while inside the first one
        self.feed(text)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {name: value or "" for name, value in attrs}
        if tag == "h1" and not self.heading:
            self._in = "h1"
        elif tag == "form" and self.action is None:
            self._in, self.action = "form", values.get("action", "")
        elif tag == "input" and self._in == "form" and values.get("type") == "hidden" and values.get("name"):
            self.fields[values["name"]] = values.get("value", "")

    def handle_endtag(self, tag: str) -> None:
        if tag == self._in:
            self._in = None

    def handle_data(self, data: str) -> None:
        if self._in == "h1":
            self.heading += data


def _submit(browser: httpx.Client, page: httpx.Response, **typed: str) -> httpx.Response:
    """Post the page's form as a person would: its hidden fields plus what they typed or pressed."""
    form = _Page(page.text)
    if form.action is None:
        raise ConnectFailed(f"no form on {page.url} ({page.status_code}): {form.heading or page.text[:200]!r}")
    return browser.post(urljoin(str(page.url), form.action), data={**form.fields, **typed})


def _pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


class StackDriver:
    def __init__(self, info: ReadyInfo) -> None:
        self.info = info
        self._google = info.google_base
        self._http = httpx.Client(timeout=30, verify=tls_context())
        self._provider_auth = {"Authorization": f"Bearer {info.provider_api_key}"}
        self._calendars: dict[str, Any] = {}  # user -> Calendar API as them
        self._id_tokens: dict[str, tuple[str, float]] = {}  # user -> (ID token, minted at)
        self.conferences: dict[str, tuple[str, str]] = {}  # conference id -> (calendar id, event id)
        self._owners: dict[str, str] = {}  # a secondary calendar -> the user who owns it
        self._conference_owners: dict[str, str] = {}  # conference id -> whose calendar it was made for

    def close(self) -> None:
        for service in self._calendars.values():
            service.close()
        self._calendars.clear()
        self._http.close()

    # -- people --------------------------------------------------------------------------------

    def add_user(self, email: str, *, vendor_account: bool = True) -> None:
        """A Google user with a primary calendar (its id their email) and, unless told otherwise, a
        vendor account of the same email; a user who exists is left as they are."""
        self._admin("POST", "/_sandbox/users", {"email": email, "name": email.partition("@")[0].title()})
        if vendor_account:
            self._http.post(f"{self.info.vendor_base}/_sandbox/users", json={"email": email}).raise_for_status()

    def add_calendar(self, calendar_id: str) -> None:
        """A calendar to use: the primary calendar of a user of that email (``add_user``)."""
        self.add_user(calendar_id)

    def add_secondary_calendar(self, calendar_id: str, owner: str) -> None:
        """A calendar of ``owner``'s besides their primary one (a team calendar); the driver acts
        on it as them."""
        self._admin("POST", "/_sandbox/calendars", {"id": calendar_id, "owner": owner})
        self._owners[calendar_id.lower()] = owner.lower()

    def owner_of(self, calendar_id: str) -> str:
        """Who the driver acts as on a calendar: its owner (a primary calendar's is its id)."""
        return self._owners.get(calendar_id.lower(), calendar_id.lower())

    def calendar_as(self, email: str) -> Any:
        """Google Calendar's API as ``email`` uses it themselves (google-api-python-client); a
        secondary calendar's id stands for its owner."""
        user = self.owner_of(email)
        service = self._calendars.get(user)
        if service is None:
            token = self.info.user_tokens.get(user)
            refresh: tuple[int, ...] = (401,)
            if token is not None:  # a static token: nothing to refresh it with
                credentials, refresh = Credentials(token=token), ()  # type: ignore[no-untyped-call]
            else:
                credentials = self._sign_in(user)
            http = AuthorizedHttp(credentials, http=httplib2.Http(timeout=30), refresh_status_codes=refresh)
            service = build(
                "calendar",
                "v3",
                http=http,
                static_discovery=True,
                client_options={"api_endpoint": self.info.calendar_api},
            )
            self._calendars[user] = service
        return service

    def sign_in_again(self, email: str) -> None:
        """``email``'s Calendar signs in anew on its next call (their grants were revoked)."""
        service = self._calendars.pop(email.lower(), None)
        if service is not None:
            service.close()

    def vendor_clock(self, advance_s: float) -> None:
        """Move the vendor's clock on: access tokens issued before expire as if that time passed."""
        self._http.post(f"{self.info.vendor_base}/_sandbox/clock", json={"advance_s": advance_s}).raise_for_status()

    def revoke_at_vendor(self, email: str) -> None:
        """``email`` disconnects confsync in their vendor account: its tokens stop working."""
        self._http.post(f"{self.info.vendor_base}/_sandbox/users/{email}/revoke").raise_for_status()

    def revoke_at_google(self, email: str) -> None:
        """``email`` removes the apps' access in their Google Account (confsync's, and Calendar UI's)."""
        self._admin("POST", f"/_sandbox/users/{email}/revoke-grants")

    def _sign_in(self, email: str) -> Credentials:
        """``email`` signs in to Calendar's UI: Google's consent for the UI's client, allowed, and
        the code exchanged (PKCE) for tokens that refresh themselves."""
        client = self.info.ui_client
        verifier, challenge = _pkce()
        asked = {
            "client_id": client.client_id,
            "redirect_uri": client.redirect_uri,
            "response_type": "code",
            "scope": _UI_SCOPE,
            "access_type": "offline",
            "state": secrets.token_urlsafe(12),
            "code_challenge": challenge,
            "code_challenge_method": "S256",
            "login_hint": email,
        }
        with httpx.Client(timeout=30, verify=tls_context()) as browser:
            back = _submit(
                browser, browser.get(f"{self._google}/o/oauth2/v2/auth", params=asked), email=email, decision="allow"
            )
        code = parse_qs(urlsplit(back.headers.get("location", "")).query).get("code")
        if not back.is_redirect or not code:
            raise RuntimeError(f"{email} could not sign in to Calendar: {back.status_code} {back.text[:200]}")
        exchange = {
            "grant_type": "authorization_code",
            "code": code[0],
            "redirect_uri": client.redirect_uri,
            "client_id": client.client_id,
            "client_secret": client.client_secret,
            "code_verifier": verifier,
        }
        answer = self._http.post(f"{self._google}/token", data=exchange)
        answer.raise_for_status()
        tokens = answer.json()
        expiry = datetime.now(UTC).replace(tzinfo=None) + timedelta(seconds=int(tokens["expires_in"]) - 60)
        return Credentials(  # type: ignore[no-untyped-call]
            token=tokens["access_token"],
            refresh_token=tokens.get("refresh_token"),
            token_uri=f"{self._google}/token",
            client_id=client.client_id,
            client_secret=client.client_secret,
            scopes=[_UI_SCOPE],
            expiry=expiry,  # naive UTC, as google-auth keeps it
        )

    def id_token(self, email: str) -> str:
        """A Google ID token naming ``email`` for the add-on's audience (ScriptApp.getIdentityToken())."""
        user = email.lower()
        kept = self._id_tokens.get(user)
        if kept is not None and time.monotonic() - kept[1] < _ID_TOKEN_REUSE_S:
            return kept[0]
        answer = self._http.post(
            f"{self._google}/_sandbox/id-token", json={"email": user, "audience": self.info.addon_audience}
        )
        answer.raise_for_status()
        token = str(answer.json()["id_token"])
        self._id_tokens[user] = (token, time.monotonic())
        return token

    def connect(self, email: str, link: str | None = None) -> Connection:
        """``email`` walks confsync's connect flow in a browser of their own, from ``link`` (the
        add-on's authenticationUrl; by default the one ``connect_link`` gets): Continue on the
        connect page, then each consent page (Google's, the vendor's) answered "allow" as them,
        to the "Connected" page (ConnectFailed otherwise)."""
        link = link or self.connect_link(email)
        if link is None:
            return Connection(email, ())
        consents: list[Consent] = []
        with httpx.Client(timeout=30, verify=tls_context()) as browser:
            answer = _submit(browser, browser.get(link))  # the connect page's Continue
            for _ in range(_MAX_CONNECT_STEPS):
                if not answer.is_redirect:
                    break
                answer = browser.get(urljoin(str(answer.url), answer.headers["location"]))
                consent = self._consent_page(answer)
                if consent is not None:
                    consents.append(consent)
                    answer = _submit(browser, answer, email=email, decision="allow")
            heading = _Page(answer.text).heading
        if heading != "Connected":
            raise ConnectFailed(f"{email}'s connect flow ended at {answer.url} ({answer.status_code}): {heading!r}")
        return Connection(email, tuple(consents))

    def connect_link(self, email: str) -> str | None:
        """Where ``email`` connects, as the add-on API tells them: its answer to a conference on a
        calendar that does not exist. The API answers a user who has not connected AUTHENTICATION
        with their connect link before it reads or writes anything; one who has connected is
        refused (no write access), and then there is no link: None."""
        answer = self.request_conference(_NOBODYS_CALENDAR, {"id": "connect"}, as_=email)
        link = authentication_url(answer)
        if link is None and answer.status_code != 403:
            answer.raise_for_status()
        return link

    def _consent_page(self, page: httpx.Response) -> Consent | None:
        """The consent page this is (Google's, the vendor's), or None for any other page."""
        url = str(page.url)
        if page.status_code != 200:
            return None
        scopes = frozenset(parse_qs(urlsplit(url).query).get("scope", [""])[0].split())
        if url.startswith(f"{self._google}/o/oauth2/"):
            return Consent("Google", scopes)
        if url.startswith(f"{self.info.vendor_base}/oauth/authorize"):
            return Consent("vendor", scopes)
        return None

    # -- what users do in Calendar and the add-on -----------------------------------------------

    def insert(self, calendar_id: str, body: Mapping[str, Any]) -> dict[str, Any]:
        event: dict[str, Any] = (
            self.calendar_as(calendar_id)
            .events()
            .insert(calendarId=calendar_id, body=dict(body))
            .execute(num_retries=_RETRIES)
        )
        return event

    def share(self, calendar_id: str, email: str, role: str = "writer") -> None:
        """The calendar's user shares it with ``email`` (Calendar's ACL: reader, writer, owner)."""
        rule = {"role": role, "scope": {"type": "user", "value": email}}
        self.calendar_as(calendar_id).acl().insert(calendarId=calendar_id, body=rule).execute(num_retries=_RETRIES)

    def request_conference(
        self, calendar_id: str, event: Mapping[str, Any], *, as_: str | None = None, request_id: str | None = None
    ) -> httpx.Response:
        """The add-on's onCreateFunction call for ``event``, as ``as_`` (default: the calendar's
        user) with their ID token: the API's answer, whatever it is."""
        body = {
            "calendarId": calendar_id,
            "eventId": event["id"],
            "requestId": request_id or uuid.uuid4().hex,
            "event": dict(event),
        }
        headers = {"Authorization": f"Bearer {self.id_token(as_ or calendar_id)}"}
        return self._http.post(f"{self.info.api_url}/v1/conferences", headers=headers, json=body)

    def add_conference(self, calendar_id: str, event: Mapping[str, Any], *, as_: str | None = None) -> str:
        """The add-on's flow, as the calendar's user (or ``as_``): ask for a conference; when told
        to connect first, connect and ask again (as a person would); then Calendar saves the
        ConferenceData on the event. Any other refusal raises (httpx.HTTPStatusError)."""
        who = as_ or self.owner_of(calendar_id)
        request_id = uuid.uuid4().hex
        answer = self.request_conference(calendar_id, event, as_=who, request_id=request_id)
        link = authentication_url(answer)
        if link is not None:
            self.connect(who, link)
            answer = self.request_conference(calendar_id, event, as_=who, request_id=request_id)
        answer.raise_for_status()
        data = answer.json()
        self.patch(calendar_id, str(event["id"]), {"conferenceData": data})
        self.conferences[str(data["conferenceId"])] = (calendar_id, str(event["id"]))
        self._conference_owners[str(data["conferenceId"])] = self.owner_of(calendar_id)
        return str(data["conferenceId"])

    def patch(self, calendar_id: str, event_id: str, body: Mapping[str, Any]) -> dict[str, Any]:
        request = (
            self.calendar_as(calendar_id)
            .events()
            .patch(calendarId=calendar_id, eventId=event_id, body=dict(body), conferenceDataVersion=1)
        )
        event: dict[str, Any] = request.execute(num_retries=_RETRIES)
        return event

    def patch_many(self, patches: Sequence[tuple[str, str, Mapping[str, Any]]], batch_size: int = 50) -> None:
        """Patch many events with Calendar's batch requests, ``batch_size`` calls per HTTP request
        (as a client with many changes to send would; each call carries its own user's token);
        raises if any call failed."""
        failures: list[str] = []

        def record(request_id: str, _response: Any, exception: HttpError | None) -> None:
            if exception is not None:
                failures.append(f"{request_id}: {exception}")

        for start in range(0, len(patches), batch_size):
            batch = BatchHttpRequest(callback=record, batch_uri=f"{self._google}/batch/calendar/v3")
            for n, (calendar_id, event_id, body) in enumerate(patches[start : start + batch_size]):
                batch.add(
                    self.calendar_as(calendar_id)
                    .events()
                    .patch(calendarId=calendar_id, eventId=event_id, body=dict(body), conferenceDataVersion=1),
                    request_id=str(start + n),
                )
            batch.execute()
        if failures:
            raise RuntimeError(f"{len(failures)} batched patch(es) failed, first: {failures[0]}")

    def cancel(self, calendar_id: str, event_id: str, *, as_: str | None = None) -> None:
        """Delete the event from the calendar, as ``as_`` (default its owner): an attendee deleting
        it from their own calendar removes only their copy."""
        events = self.calendar_as(as_ or calendar_id).events()
        events.delete(calendarId=calendar_id, eventId=event_id).execute(num_retries=_RETRIES)

    def move(self, calendar_id: str, event_id: str, destination: str, *, as_: str | None = None) -> dict[str, Any]:
        """events.move, as ``as_`` (default the source's owner). A conference follows its event
        to another calendar of the same owner; anywhere else its owner's copy is gone, and the
        driver expects the conference deleted (``compare``)."""
        events = self.calendar_as(as_ or calendar_id).events()
        request = events.move(calendarId=calendar_id, eventId=event_id, destination=destination)
        moved: dict[str, Any] = request.execute(num_retries=_RETRIES)
        for conference_id, (at, event) in list(self.conferences.items()):
            if (at, event) == (calendar_id, event_id):
                self.conferences[conference_id] = (destination, event_id)
        return moved

    def cancel_instance(self, calendar_id: str, series_id: str, index: int = 1) -> str:
        """Cancel one occurrence of a recurring event; returns the instance's id."""
        instance_id = str(self._occurrence(calendar_id, series_id, index)["id"])
        self.cancel(calendar_id, instance_id)
        return instance_id

    def _occurrence(self, calendar_id: str, series_id: str, index: int) -> dict[str, Any]:
        """The series' ``index``-th occurrence still in place (counting round, past the last)."""
        events = self.calendar_as(calendar_id).events()
        items = events.instances(calendarId=calendar_id, eventId=series_id).execute(num_retries=_RETRIES)["items"]
        if not items:
            raise LookupError(f"{series_id} has no occurrence left")
        found: dict[str, Any] = items[index % len(items)]
        return found

    def move_instance(self, calendar_id: str, series_id: str, index: int = 1, *, hours: int = 1) -> str:
        """Move one occurrence of a recurring event ``hours`` later; returns the instance's id."""
        instance = self._occurrence(calendar_id, series_id, index)
        later = {
            key: {"dateTime": (_instant(instance[key]) + timedelta(hours=hours)).isoformat()}
            for key in ("start", "end")
        }
        self.patch(calendar_id, str(instance["id"]), later)
        return str(instance["id"])

    def switch_to_meet(self, calendar_id: str, event_id: str) -> None:
        meet = {"createRequest": {"requestId": uuid.uuid4().hex, "conferenceSolutionKey": {"type": "hangoutsMeet"}}}
        self.patch(calendar_id, event_id, {"conferenceData": meet})

    def remove_conference(self, calendar_id: str, event_id: str) -> None:
        self.patch(calendar_id, event_id, {"conferenceData": None})

    def duplicate_notifications(self, *, on: bool) -> None:
        """Make Calendar deliver every notification twice (as Google may) or once."""
        self._admin("POST", "/_sandbox/notifications", {"duplicates": on})

    def invalidate_sync_tokens(self, calendar_id: str) -> None:
        self._admin("POST", f"/_sandbox/calendars/{calendar_id}/invalidate-sync-tokens")

    # -- faults --------------------------------------------------------------------------------

    def provider_fault(self, rule: Mapping[str, Any]) -> None:
        self._http.post(f"{self.info.vendor_base}/_sandbox/faults", json=dict(rule)).raise_for_status()

    def clear_provider_faults(self) -> None:
        self._http.delete(f"{self.info.vendor_base}/_sandbox/faults").raise_for_status()

    def calendar_fault(self, rule: Mapping[str, Any]) -> None:
        self._admin("POST", "/_sandbox/faults", rule)

    def clear_calendar_faults(self) -> None:
        self._admin("DELETE", "/_sandbox/faults")

    # -- what the provider holds ---------------------------------------------------------------

    def conference(self, conference_id: str) -> dict[str, Any] | None:
        answer = self._http.get(f"{self.info.provider_api}/v1/conferences/{conference_id}", headers=self._provider_auth)
        if answer.status_code == 404:
            return None
        answer.raise_for_status()
        result: dict[str, Any] = answer.json()
        return result

    def wait_for_version(self, conference_id: str, at_least: int, timeout_s: float = 30.0) -> int:
        """Wait until the provider's version of a conference reaches ``at_least``; the version then."""
        deadline = time.monotonic() + timeout_s
        while True:
            held = self.conference(conference_id)
            version = 0 if held is None else int(held["version"])
            if version >= at_least or time.monotonic() > deadline:
                return version
            time.sleep(0.1)

    def journal(self) -> list[dict[str, Any]]:
        entries: list[dict[str, Any]] = self._http.get(f"{self.info.vendor_base}/_sandbox/requests").json()
        return entries

    def event(self, calendar_id: str, event_id: str) -> dict[str, Any] | None:
        try:
            events = self.calendar_as(calendar_id).events()
            event: dict[str, Any] = events.get(calendarId=calendar_id, eventId=event_id).execute(num_retries=_RETRIES)
        except HttpError as err:
            if err.resp.status in (404, 410):
                return None
            raise
        return event

    def instances(self, calendar_id: str, event_id: str) -> list[dict[str, Any]]:
        """A series' occurrences as Calendar expands them, cancelled ones included."""
        events = self.calendar_as(calendar_id).events()
        request = events.instances(calendarId=calendar_id, eventId=event_id, showDeleted=True, maxResults=2500)
        items: list[dict[str, Any]] = request.execute(num_retries=_RETRIES).get("items", [])
        return items

    def compare(self) -> list[Row]:
        rows = []
        for conference_id, (calendar_id, event_id) in sorted(self.conferences.items(), key=lambda item: item[1]):
            away = self._conference_owners.get(conference_id, self.owner_of(calendar_id)) != self.owner_of(calendar_id)
            event = None if away else self.event(calendar_id, event_id)
            instances = self.instances(calendar_id, event_id) if event is not None and event.get("recurrence") else []
            # moved out of its owner's calendars: their copy is gone
            expected = Expectation("deleted") if away else expectation(event, conference_id, instances)
            held = self.conference(conference_id)
            actual, account = (None, None) if held is None else (_provider_view(held), held.get("owner"))
            rows.append(Row(calendar_id, event_id, conference_id, expected, actual, account))
        return rows

    def wait_until_agreed(self, timeout_s: float = 30.0, poll_s: float = 0.25) -> list[Row]:
        """Poll until every conference agrees with Calendar; the last comparison either way."""
        deadline = time.monotonic() + timeout_s
        while True:
            rows = self.compare()
            if all(row.agrees for row in rows) or time.monotonic() > deadline:
                return rows
            time.sleep(poll_s)

    def calendar_journal(self) -> list[dict[str, Any]]:
        """Every Calendar API request the sandbox answered: ``{method, path, query, status, at}``."""
        entries: list[dict[str, Any]] = self._http.get(f"{self._google}/_sandbox/requests").json()
        return entries

    def wait_until(self, predicate: Callable[[], bool], timeout_s: float = 30.0, what: str = "a condition") -> None:
        """Poll ``predicate`` until it holds; AssertionError naming ``what`` after ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        while not predicate():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout_s:.0f}s waiting for {what}")
            time.sleep(0.1)

    def drop_channel(self, channel_id: str) -> None:
        """Calendar stops delivering on the channel, which still looks live (POST /_sandbox/channels/{id}/drop)."""
        self._admin("POST", f"/_sandbox/channels/{channel_id}/drop")

    def live_channels_of(self, calendar_id: str) -> list[dict[str, Any]]:
        """The sandbox's live watch channels on one calendar."""
        return [c for c in self.calendar_channels() if c["calendarId"] == calendar_id and c["state"] == "live"]

    def calendar_channels(self) -> list[dict[str, Any]]:
        """The sandbox's watch channels, each with ``lastMessageNumber`` (notifications sent)."""
        channels: list[dict[str, Any]] = self._http.get(f"{self._google}/_sandbox/channels").json()
        return channels

    def listings(self, calendar_id: str) -> int:
        """How many times the pipeline has listed this calendar's events (the sandbox's journal)."""
        path = f"/calendar/v3/calendars/{calendar_id}/events"
        return sum(1 for e in self.calendar_journal() if e["method"] == "GET" and e["path"] == path)

    def settled_listings(self, calendar_id: str, quiet_s: float = 1.0, timeout_s: float = 30.0) -> int:
        """The calendar's listing count once no listing has happened for ``quiet_s`` (none in flight)."""
        return settled(lambda: self.listings(calendar_id), quiet_s=quiet_s, timeout_s=timeout_s)

    def wait_for_listing(self, calendar_id: str, after: int, timeout_s: float = 30.0) -> bool:
        """Wait until the calendar was listed more than ``after`` times: its change has been read."""
        deadline = time.monotonic() + timeout_s
        while self.listings(calendar_id) <= after:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.1)
        return True

    def journal_mark(self) -> int:
        """A position in the provider's journal: ``call_report(since=...)`` counts only later calls."""
        return len(self.journal())

    def call_report(self, since: int = 0) -> dict[str, int]:
        """From the provider's journal: creates, applied changes, retried calls, duplicate applies."""
        entries = self.journal()[since:]
        creates = sum(1 for e in entries if e["method"] == "POST" and e["status"] in (200, 201))
        successes: Counter[str] = Counter()
        retried = 0
        for entry in entries:
            if entry["method"] not in ("PATCH", "DELETE") or not entry.get("idempotency_key"):
                continue
            if entry["status"] in _RETRYABLE:
                retried += 1
            elif entry["status"] < 300 or entry["status"] == 404:
                successes[entry["idempotency_key"]] += 1
        duplicates = sum(count - 1 for count in successes.values())
        return {"creates": creates, "applied": len(successes), "retried": retried, "duplicate_applies": duplicates}

    def _admin(self, method: str, path: str, body: Mapping[str, Any] | None = None) -> None:
        answer = self._http.request(method, f"{self._google}{path}", json=None if body is None else dict(body))
        answer.raise_for_status()


def settled(count: Callable[[], int], *, quiet_s: float, timeout_s: float, poll_s: float = 0.1) -> int:
    """``count()`` once it has not moved for ``quiet_s`` (or when ``timeout_s`` runs out)."""
    deadline = time.monotonic() + timeout_s
    value, since = count(), time.monotonic()
    while time.monotonic() - since < quiet_s and time.monotonic() < deadline:
        time.sleep(poll_s)
        now = count()
        if now != value:
            value, since = now, time.monotonic()
    return value
