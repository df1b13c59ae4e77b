"""Drive a running local stack the way its users and Google do, and check the outcome.

``StackDriver`` takes the ready info of ``confsync local`` and acts only through public
surfaces: the Calendar API (google-api-python-client against the sandbox), the add-on API
over HTTP (create a conference, then attach its ConferenceData to the event as Calendar
does), the sandboxes' admin routes (faults, sync-token invalidation) and the conferencing
API (GET a conference). ``compare`` states, for each conference, what Calendar's truth says
it should be and what the provider holds; ``wait_until_agreed`` polls until they match.
Used by ``confsync demo``, the end-to-end tests and bench/chaos.py.
"""

from __future__ import annotations

import time
import uuid
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import httplib2
import httpx
from google.auth.credentials import AnonymousCredentials
from google_auth_httplib2 import AuthorizedHttp
from googleapiclient.discovery import build
from googleapiclient.errors import HttpError
from googleapiclient.http import BatchHttpRequest

from stack.local import ReadyInfo

__all__ = ["Expectation", "Row", "StackDriver", "expectation"]

# As a user's client would: a kept-alive connection the server closed meanwhile (BrokenPipe),
# or a 5xx, is tried again (google-api-python-client backs off between tries).
_RETRIES = 2

_OURS = frozenset({"My Web Conference", "My Recorded Web Conference"})
_RETRYABLE = frozenset({408, 425, 429, 500, 502, 503, 504})


@dataclass(frozen=True, slots=True)
class Expectation:
    """What the provider should hold for one conference, read from Calendar."""

    state: str  # active | deleted
    summary: str | None = None
    start: datetime | str | None = None
    end: datetime | str | None = None
    attendees: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Row:
    """One conference: where it lives, what Calendar says, what the provider has."""

    calendar_id: str
    event_id: str
    conference_id: str
    expected: Expectation
    actual: Expectation | None

    @property
    def agrees(self) -> bool:
        return self.actual == self.expected


def expectation(event: Mapping[str, Any] | None, conference_id: str) -> Expectation:
    """Calendar's truth for ``conference_id`` given its event (None: the event is gone)."""
    if event is None or event.get("status") == "cancelled":
        return Expectation("deleted")
    data = event.get("conferenceData") or {}
    solution = data.get("conferenceSolution") or {}
    ours = (solution.get("key") or {}).get("type") == "addOn" and solution.get("name") in _OURS
    if not ours or data.get("conferenceId") != conference_id:
        return Expectation("deleted")
    emails = tuple(sorted(str(a["email"]) for a in event.get("attendees") or [] if a.get("email")))
    return Expectation("active", event.get("summary"), _moment(event.get("start")), _moment(event.get("end")), emails)


def _provider_view(conference: Mapping[str, Any]) -> Expectation:
    if conference.get("state") != "active":
        return Expectation("deleted")
    emails = tuple(sorted(conference.get("attendees") or []))
    start, end = _moment(conference.get("start")), _moment(conference.get("end"))
    return Expectation("active", conference.get("summary"), start, end, emails)


def _moment(value: Mapping[str, Any] | None) -> datetime | str | None:
    """A comparable start/end: an aware datetime, or an all-day date string."""
    if not value:
        return None
    if value.get("dateTime"):
        return datetime.fromisoformat(str(value["dateTime"]).replace("Z", "+00:00"))
    return str(value.get("date"))


class StackDriver:
    def __init__(self, info: ReadyInfo) -> None:
        self.info = info
        http = AuthorizedHttp(AnonymousCredentials(), http=httplib2.Http(timeout=30))  # type: ignore[no-untyped-call]
        self.calendar = build(
            "calendar", "v3", http=http, static_discovery=True, client_options={"api_endpoint": info.calendar_api}
        )
        self._calendar_base = info.calendar_api.removesuffix("/calendar/v3/")
        self._http = httpx.Client(timeout=30)
        self._provider_auth = {"Authorization": f"Bearer {info.provider_api_key}"}
        self.conferences: dict[str, tuple[str, str]] = {}  # conference id -> (calendar id, event id)

    def close(self) -> None:
        self.calendar.close()
        self._http.close()

    # -- what users do in Calendar ------------------------------------------------------------

    def add_calendar(self, calendar_id: str) -> None:
        self._admin("POST", "/_sandbox/calendars", {"id": calendar_id, "owner": calendar_id})

    def insert(self, calendar_id: str, body: Mapping[str, Any]) -> dict[str, Any]:
        event: dict[str, Any] = (
            self.calendar.events().insert(calendarId=calendar_id, body=dict(body)).execute(num_retries=_RETRIES)
        )
        return event

    def add_conference(self, calendar_id: str, event: Mapping[str, Any]) -> str:
        """The add-on's flow: create through the add-on API, then Calendar saves the ConferenceData."""
        answer = self._http.post(
            f"{self.info.api_url}/v1/conferences",
            headers={"Authorization": f"Bearer {self.info.api_token}"},
            json={"calendarId": calendar_id, "eventId": event["id"], "requestId": uuid.uuid4().hex, "event": event},
        )
        answer.raise_for_status()
        data = answer.json()
        self.patch(calendar_id, str(event["id"]), {"conferenceData": data})
        self.conferences[str(data["conferenceId"])] = (calendar_id, str(event["id"]))
        return str(data["conferenceId"])

    def patch(self, calendar_id: str, event_id: str, body: Mapping[str, Any]) -> dict[str, Any]:
        request = self.calendar.events().patch(
            calendarId=calendar_id, eventId=event_id, body=dict(body), conferenceDataVersion=1
        )
        event: dict[str, Any] = request.execute(num_retries=_RETRIES)
        return event

    def patch_many(self, patches: Sequence[tuple[str, str, Mapping[str, Any]]], batch_size: int = 50) -> None:
        """Patch many events with Calendar's batch requests, ``batch_size`` calls per HTTP request
        (as a client with many changes to send would); raises if any call failed."""
        failures: list[str] = []

        def record(request_id: str, _response: Any, exception: HttpError | None) -> None:
            if exception is not None:
                failures.append(f"{request_id}: {exception}")

        for start in range(0, len(patches), batch_size):
            batch = BatchHttpRequest(callback=record, batch_uri=f"{self._calendar_base}/batch/calendar/v3")
            for n, (calendar_id, event_id, body) in enumerate(patches[start : start + batch_size]):
                batch.add(
                    self.calendar.events().patch(
                        calendarId=calendar_id, eventId=event_id, body=dict(body), conferenceDataVersion=1
                    ),
                    request_id=str(start + n),
                )
            batch.execute()
        if failures:
            raise RuntimeError(f"{len(failures)} batched patch(es) failed, first: {failures[0]}")

    def cancel(self, calendar_id: str, event_id: str) -> None:
        self.calendar.events().delete(calendarId=calendar_id, eventId=event_id).execute(num_retries=_RETRIES)

    def cancel_instance(self, calendar_id: str, series_id: str, index: int = 1) -> str:
        """Cancel one occurrence of a recurring event; returns the instance's id."""
        instances = (
            self.calendar.events().instances(calendarId=calendar_id, eventId=series_id).execute(num_retries=_RETRIES)
        )
        instance_id = str(instances["items"][index]["id"])
        self.cancel(calendar_id, instance_id)
        return instance_id

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
        self._http.post(f"{self.info.provider_api}/_sandbox/faults", json=dict(rule)).raise_for_status()

    def clear_provider_faults(self) -> None:
        self._http.delete(f"{self.info.provider_api}/_sandbox/faults").raise_for_status()

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
        entries: list[dict[str, Any]] = self._http.get(f"{self.info.provider_api}/_sandbox/requests").json()
        return entries

    def event(self, calendar_id: str, event_id: str) -> dict[str, Any] | None:
        try:
            event: dict[str, Any] = (
                self.calendar.events().get(calendarId=calendar_id, eventId=event_id).execute(num_retries=_RETRIES)
            )
        except HttpError as err:
            if err.resp.status in (404, 410):
                return None
            raise
        return event

    def compare(self) -> list[Row]:
        rows = []
        for conference_id, (calendar_id, event_id) in sorted(self.conferences.items(), key=lambda item: item[1]):
            expected = expectation(self.event(calendar_id, event_id), conference_id)
            held = self.conference(conference_id)
            rows.append(
                Row(calendar_id, event_id, conference_id, expected, None if held is None else _provider_view(held))
            )
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
        entries: list[dict[str, Any]] = self._http.get(f"{self._calendar_base}/_sandbox/requests").json()
        return entries

    def calendar_channels(self) -> list[dict[str, Any]]:
        """The sandbox's watch channels, each with ``lastMessageNumber`` (notifications sent)."""
        channels: list[dict[str, Any]] = self._http.get(f"{self._calendar_base}/_sandbox/channels").json()
        return channels

    def listings(self, calendar_id: str) -> int:
        """How many times the pipeline has listed this calendar's events (the sandbox's journal)."""
        path = f"/calendar/v3/calendars/{calendar_id}/events"
        return sum(1 for e in self.calendar_journal() if e["method"] == "GET" and e["path"] == path)

    def settled_listings(self, calendar_id: str, quiet_s: float = 1.0, timeout_s: float = 30.0) -> int:
        """The calendar's listing count once no listing has happened for ``quiet_s`` (none in flight)."""
        deadline = time.monotonic() + timeout_s
        count, since = self.listings(calendar_id), time.monotonic()
        while time.monotonic() - since < quiet_s and time.monotonic() < deadline:
            time.sleep(0.1)
            now = self.listings(calendar_id)
            if now != count:
                count, since = now, time.monotonic()
        return count

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
        answer = self._http.request(method, f"{self._calendar_base}{path}", json=None if body is None else dict(body))
        answer.raise_for_status()
