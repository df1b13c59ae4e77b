"""Helpers shared by the test packages (on sys.path through pytest's ``pythonpath``)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import httplib2
import httpx
from google.auth.credentials import AnonymousCredentials
from google.oauth2.credentials import Credentials
from google_auth_httplib2 import AuthorizedHttp
from googleapiclient.discovery import build

from confsync.contracts import EventTime
from confsync.tls import tls_context
from sandbox.calendar import CalendarSandbox, RetryPolicy

__all__ = [
    "FAST_RETRY",
    "PROVIDER_KEY",
    "RunningCalendar",
    "RunningProvider",
    "Webhook",
    "addon_link",
    "event_body",
    "list_all",
    "meeting",
    "sync_all",
]

PROVIDER_KEY = "test-provider-key"

FAST_RETRY = RetryPolicy(initial_s=0.05, max_delay_s=0.2, max_elapsed_s=5.0, timeout_s=2.0)


def meeting(summary: str, **changes: Any) -> dict[str, Any]:
    """The meeting the unit tests describe, as keyword arguments: an hour in a zone with a UTC
    offset, two attendees, organised by the first."""
    return {
        "summary": summary,
        "start": EventTime(date_time="2026-12-01T10:00:00+01:00", time_zone="Europe/Warsaw"),
        "end": EventTime(date_time="2026-12-01T11:00:00+01:00", time_zone="Europe/Warsaw"),
        "attendees": ("alice@example.com", "bob@example.com"),
        "organizer": "alice@example.com",
        **changes,
    }


class _SandboxAdmin:
    """The admin routes (under /_sandbox) both sandboxes serve."""

    url: str
    admin_timeout_s: ClassVar[float] = 30

    def admin(self, method: str, path: str, json: Any = None) -> Any:
        answer = httpx.request(
            method, f"{self.url}{path}", json=json, timeout=self.admin_timeout_s, verify=tls_context()
        )
        answer.raise_for_status()
        return answer.json() if answer.content else None

    def journal(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self.admin("GET", "/_sandbox/requests")
        return result


@dataclass
class RunningCalendar(_SandboxAdmin):
    sandbox: CalendarSandbox
    url: str
    _services: list[Any] = field(default_factory=list)
    admin_timeout_s: ClassVar[float] = 60

    @property
    def api_endpoint(self) -> str:
        return f"{self.url}/calendar/v3/"

    def service(self, token: str | None = None) -> Any:
        """A google-api-python-client Calendar service pointed at this sandbox; with ``token``, its
        calls carry ``Authorization: Bearer TOKEN`` (a 401 is then an HttpError: nothing refreshes)."""
        if token is None:
            http = AuthorizedHttp(AnonymousCredentials(), http=httplib2.Http(timeout=30))  # type: ignore[no-untyped-call]
        else:
            http = AuthorizedHttp(Credentials(token=token), http=httplib2.Http(timeout=30), refresh_status_codes=())
        service = build(
            "calendar", "v3", http=http, static_discovery=True, client_options={"api_endpoint": self.api_endpoint}
        )
        self._services.append(service)
        return service

    def close(self) -> None:
        """Close every client this handed out (httplib2 keeps sockets open until then)."""
        for service in self._services:
            service.close()
        self._services.clear()


@dataclass
class Webhook:
    """A real HTTP receiver for watch notifications; ``answers`` scripts its status codes."""

    url: str = ""
    received: list[dict[str, str]] = field(default_factory=list)
    answers: list[int] = field(default_factory=list)
    gate: threading.Event | None = None  # when set up, each delivery waits for it to open
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def wait_for(
        self, predicate: Callable[[list[dict[str, str]]], bool], timeout: float = 10.0
    ) -> list[dict[str, str]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                snapshot = list(self.received)
            if predicate(snapshot):
                return snapshot
            time.sleep(0.02)
        raise AssertionError(f"webhook did not see what was expected; it saw {snapshot}")


def event_body(summary: str, *, day: int = 0, recurrence: list[str] | None = None) -> dict[str, Any]:
    """A one-hour timed event on 2026-12-01 plus ``day`` days."""
    start = f"2026-12-{1 + day % 28:02d}T{9 + day // 28 % 12:02d}:00:00Z"
    end = f"2026-12-{1 + day % 28:02d}T{10 + day // 28 % 12:02d}:00:00Z"
    body: dict[str, Any] = {"summary": summary, "start": {"dateTime": start}, "end": {"dateTime": end}}
    if recurrence:
        body["recurrence"] = recurrence
    return body


def addon_link(store: Any, calendar_id: str, event: dict[str, Any]) -> Any:
    """The owning link the add-on makes for an event's conference (ingest/api.py), for tests
    whose events carry conferenceData written straight into the sandbox: without it, no copy
    of the event speaks for the conference."""
    from datetime import UTC, datetime  # noqa: PLC0415 - only the helpers that make links need it

    from confsync.store import Link  # noqa: PLC0415

    conference_id = event["conferenceData"]["conferenceId"]
    return store.add_link(Link(calendar_id, event["id"], conference_id, created_at=datetime.now(UTC)))


def list_all(service: Any, calendar_id: str, **params: Any) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Every page of one listing: (all items, the pages themselves)."""
    items: list[dict[str, Any]] = []
    pages: list[dict[str, Any]] = []
    page_token = None
    while True:
        extra: dict[str, str] = {"pageToken": page_token} if page_token else {}
        page = service.events().list(calendarId=calendar_id, **params, **extra).execute()
        pages.append(page)
        items += page.get("items", [])
        page_token = page.get("nextPageToken")
        if page_token is None:
            return items, pages


def sync_all(service: Any, calendar_id: str, token: str | None = None) -> tuple[list[dict[str, Any]], str]:
    """A full sync (no token) or an incremental one: (items, nextSyncToken)."""
    params = {"syncToken": token} if token else {}
    items, pages = list_all(service, calendar_id, **params)
    return items, pages[-1]["nextSyncToken"]


@dataclass
class RunningProvider(_SandboxAdmin):
    """A conferencing sandbox served on loopback, with admin helpers."""

    url: str
