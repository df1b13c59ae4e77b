"""confsync with users' accounts on, against the two sandboxes, for tests that walk the connect flow.

``AccountsWorld`` serves ``confsync serve all`` (in-process transport, SQLite store) on a
fixed loopback port, so its public URL is known before the OAuth clients are registered at
each sandbox: Google's (the Calendar sandbox, with ``--require-auth``) and the vendor's. The
add-on's ID tokens are minted by the Calendar sandbox, as Google mints them.

``Person`` is someone at a browser without JavaScript (an httpx client that keeps cookies):
open the add-on's ``authenticationUrl``, press Continue, and answer each consent page.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from html import unescape
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import httpx
import pytest

from confsync.serving import ServedApp, free_port
from confsync.settings import Secret, Settings
from confsync.tls import tls_context
from sandbox.calendar import create_app as create_calendar_app
from sandbox.calendar.server import build_sandbox as build_calendar
from sandbox.provider import create_app as create_provider_app
from sandbox.provider.server import build_sandbox as build_provider
from stack.roles import Role
from stack.root import Stack
from stack.services import Service, build_service
from tests_support import FAST_RETRY, PROVIDER_KEY, RunningCalendar, RunningProvider

__all__ = ["AUDIENCE", "AccountsWorld", "Person", "WorldFactory", "accounts_world", "heading"]

AUDIENCE = "1234-addon.apps.googleusercontent.com"
_HIDDEN = re.compile(r'<input type="hidden" name="([^"]+)" value="([^"]*)"')
_ACTION = re.compile(r'<form method="post" action="([^"]+)"')
_HEADING = re.compile(r"<h1>(.*?)</h1>")


def _ui(email: str) -> str:
    return f"ui-{email}"


def heading(page: str) -> str:
    found = _HEADING.search(page)
    return unescape(found[1]) if found else ""


@dataclass
class Person:
    """A browser without JavaScript: follows no redirect on its own, keeps cookies."""

    email: str
    http: httpx.Client = field(default_factory=lambda: httpx.Client(timeout=30, verify=tls_context()))

    def open(self, url: str) -> httpx.Response:
        return self.http.get(url)

    def submit(self, page: httpx.Response, *, form: str | None = None, **typed: str) -> httpx.Response:
        """Post a form of the page (its first, or the one whose action is ``form``): its hidden
        fields plus what the person typed or pressed."""
        forms = re.findall(r"<form .*?</form>", page.text, flags=re.S)
        chosen = [html for html in forms if form is None or f'action="{form}"' in html]
        assert chosen, f"no form {form or ''} on {page.url}: {page.text[:300]}"
        action = _ACTION.search(chosen[0])
        assert action is not None
        fields = {unescape(name): unescape(value) for name, value in _HIDDEN.findall(chosen[0])}
        return self.http.post(urljoin(str(page.url), unescape(action[1])), data={**fields, **typed})

    def follow(self, answer: httpx.Response) -> httpx.Response:
        assert answer.status_code in (302, 303), f"{answer.status_code} {answer.text[:300]}"
        return self.http.get(urljoin(str(answer.url), answer.headers["location"]))

    def consent(self, page: httpx.Response, *, as_: str | None = None, decision: str = "allow") -> httpx.Response:
        """Answer a sandbox consent page (Google's or the vendor's) and follow it back to confsync."""
        assert page.status_code == 200, page.text[:300]
        back = self.submit(page, email=as_ or self.email, decision=decision)
        return self.follow(back)

    def connect(self, authentication_url: str) -> httpx.Response:
        """The whole flow, allowing everything: the last page confsync shows."""
        confirm = self.open(authentication_url)
        google = self.follow(self.submit(confirm))
        after_google = self.consent(google) if "/o/oauth2/" in str(google.url) else google
        vendor = self.follow(after_google) if after_google.status_code == 303 else after_google
        return self.consent(vendor)

    def close(self) -> None:
        self.http.close()


class AccountsWorld:
    """The sandboxes and ``confsync serve all`` with users' accounts on."""

    def __init__(self, tmp: Path, *, users: tuple[str, ...], vendor_token_ttl_s: int = 3600, **overrides: Any) -> None:
        self._closers: list[Callable[[], None]] = []
        tmp.mkdir(parents=True, exist_ok=True)
        # Each user also has a static token of their own: Calendar's UI, as they use it themselves.
        self.calendar_sandbox = build_calendar(require_auth=True, auth_tokens={_ui(email): email for email in users})
        self.calendar_sandbox.retry = FAST_RETRY
        self.calendar_served = self._serve(create_calendar_app(self.calendar_sandbox))
        self.provider_served = self._serve(
            create_provider_app(build_provider(api_key=PROVIDER_KEY, token_ttl_s=vendor_token_ttl_s))
        )
        self.calendar = RunningCalendar(self.calendar_sandbox, self.calendar_served.url)
        self._closers.append(self.calendar.close)
        self.provider = RunningProvider(self.provider_served.url)
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        google_client = self.calendar.admin(
            "POST",
            "/_sandbox/oauth-clients",
            {"redirect_uris": [f"{self.url}/connect/google", f"{self.url}/settings/google"], "name": "confsync"},
        )
        vendor_client = self.provider.admin(
            "POST", "/_sandbox/oauth-clients", {"redirect_uris": [f"{self.url}/connect/vendor"], "name": "confsync"}
        )
        for email in users:
            self.add_user(email)
        google = self.calendar_served.url
        self.settings = Settings(
            store_url=f"sqlite:///{tmp / 'state.sqlite'}",
            transport="memory",
            provider_url=self.provider_served.url,
            calendar_api_endpoint=f"{google}/calendar/v3/",
            google_auth_url=f"{google}/o/oauth2/v2/auth",
            google_token_url=f"{google}/token",
            google_revoke_url=f"{google}/revoke",
            google_certs_url=f"{google}/oauth2/v1/certs",
            oauth_client_id=google_client["client_id"],
            oauth_client_secret=Secret(google_client["client_secret"]),
            vendor_client_id=vendor_client["client_id"],
            vendor_client_secret=Secret(vendor_client["client_secret"]),
            public_url=self.url,
            webhook_url=f"{self.url}/notifications",
            addon_audience=AUDIENCE,
            lag_repair_interval_s=0,
            channel_ttl_s=3600,
            sync_min_interval_s=0.05,
            sync_max_interval_s=0.05,
            **{"delete_grace_s": 0.0, **overrides},  # deletes at once unless a test waits out a grace
        )
        self.stack = Stack(self.settings)
        self.service: Service = build_service(self.settings, Role.ALL, stack=self.stack)
        self._closers.append(lambda: self.service.stop(5))
        self.served = ServedApp(self.service.app, port=port).start()
        self._closers.append(self.served.stop)
        self.http = httpx.Client(timeout=30, verify=tls_context())
        self._closers.append(self.http.close)

    def _serve(self, app: Any) -> ServedApp:
        served = ServedApp(app).start()
        self._closers.append(served.stop)
        return served

    def add_user(self, email: str) -> None:
        """A Google user (with a primary calendar) and a vendor account of the same email."""
        self.calendar.admin("POST", "/_sandbox/users", {"email": email, "name": email.partition("@")[0].title()})
        self.provider.admin("POST", "/_sandbox/users", {"email": email})

    def connect(self, *emails: str) -> None:
        """Each of these users connects, as the add-on's first answer asks them to."""
        for email in emails:
            person = Person(email)
            try:
                url = self.create(email, email, "first").json()["error"]["authenticationUrl"]
                assert heading(person.connect(url).text) == "Connected"
            finally:
                person.close()

    def calendar_as(self, email: str) -> Any:
        """Google Calendar as ``email`` uses it (google-api-python-client, their own token)."""
        return self.calendar.service(token=_ui(email))

    def new_event(self, email: str, calendar_id: str, summary: str = "Planning") -> dict[str, Any]:
        body = {
            "summary": summary,
            "start": {"dateTime": "2026-12-01T09:00:00Z"},
            "end": {"dateTime": "2026-12-01T10:00:00Z"},
        }
        event: dict[str, Any] = self.calendar_as(email).events().insert(calendarId=calendar_id, body=body).execute()
        return event

    def attach(self, email: str, calendar_id: str, event: dict[str, Any]) -> str:
        """The add-on's create for ``event``, then Calendar saving its ConferenceData on the event."""
        answer = self.create(email, calendar_id, str(event["id"]), request_id=f"req-{event['id']}", event=event)
        assert answer.status_code == 200, answer.text
        data: dict[str, Any] = answer.json()
        self.calendar_as(email).events().patch(
            calendarId=calendar_id, eventId=event["id"], body={"conferenceData": data}, conferenceDataVersion=1
        ).execute()

        def confirmed() -> bool:  # the processor has seen the event carry its conference
            link = self.stack.store.get_link(calendar_id, str(event["id"]))
            return link is not None and link.last_fingerprint is not None

        self.wait_for(confirmed, what="the conference confirmed on its event")
        self.settle()
        return str(data["conferenceId"])

    def id_token(self, email: str) -> str:
        answer: dict[str, str] = self.calendar.admin(
            "POST", "/_sandbox/id-token", {"email": email, "audience": AUDIENCE}
        )
        return answer["id_token"]

    def create(
        self,
        who: str,
        calendar_id: str,
        event_id: str,
        request_id: str = "req-1",
        *,
        event: dict[str, Any] | None = None,
    ) -> httpx.Response:
        """The add-on's onCreateFunction call, with ``who``'s ID token, for ``event`` as the add-on
        read it (default: an event Calendar has not saved yet)."""
        body = {"calendarId": calendar_id, "eventId": event_id, "requestId": request_id, "event": event or {}}
        headers = {"Authorization": f"Bearer {self.id_token(who)}"}
        return self.http.post(f"{self.url}/v1/conferences", json=body, headers=headers)

    def conference(self, conference_id: str) -> dict[str, Any]:
        """A conference as the vendor holds it, with its ``owner`` (read with the app-wide key)."""
        answer = self.http.get(
            f"{self.provider.url}/v1/conferences/{conference_id}", headers={"Authorization": f"Bearer {PROVIDER_KEY}"}
        )
        answer.raise_for_status()
        found: dict[str, Any] = answer.json()
        return found

    def creates(self) -> list[dict[str, Any]]:
        """Every create the vendor received (its journal)."""
        return [e for e in self.provider.journal() if e["method"] == "POST" and e["path"] == "/v1/conferences"]

    def settle(self, timeout: float = 20.0) -> None:
        """Wait until every command published so far is settled (the outbox is empty)."""
        far = datetime.now(UTC) + timedelta(days=1)
        self.wait_for(lambda: not self.stack.store.outbox_due(far), timeout, "the outbox to empty")

    def wait_for(self, predicate: Callable[[], bool], timeout: float = 20.0, what: str = "condition") -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return
            time.sleep(0.05)
        raise AssertionError(f"timed out waiting for {what}")

    def close(self) -> None:
        for close in reversed(self._closers):
            try:
                close()
            except Exception:  # noqa: BLE001, S112 - one failing close must not hide the test's outcome
                continue


WorldFactory = Callable[..., AccountsWorld]


@pytest.fixture
def accounts_world(tmp_path: Path) -> Iterator[WorldFactory]:
    """``accounts_world(*users, **settings)``: an ``AccountsWorld`` with these users, closed after the test."""
    made: list[AccountsWorld] = []

    def make(*users: str, **overrides: Any) -> AccountsWorld:
        world = AccountsWorld(tmp_path / f"world-{len(made)}", users=users, **overrides)
        made.append(world)
        return world

    yield make
    for world in made:
        world.close()
