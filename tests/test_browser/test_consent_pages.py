"""Both sandboxes' consent pages, clicked through once in a real browser (headless Chromium):
Google's (the Calendar sandbox) and the conferencing vendor's. The browser lands on the app's
redirect address with a code, which the app then exchanges, with its PKCE verifier, for a
token that acts for the user who consented."""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import parse_qs, urlencode, urlparse

import httpx
import pytest
from selenium import webdriver
from selenium.webdriver.common.by import By
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route
from tests_support import PROVIDER_KEY
from tests_support.browser import submit_form
from tests_support.oauth_flow import GOOGLE_PATHS, VENDOR_PATHS, OAuthFlow, pkce

from confsync.serving import ServedApp
from sandbox.calendar import create_app as create_calendar_app
from sandbox.calendar.server import build_sandbox as build_calendar
from sandbox.provider import create_app as create_provider_app
from sandbox.provider.server import build_sandbox as build_provider

CALENDAR = "https://www.googleapis.com/auth/calendar"


async def callback(request: Request) -> Response:
    """The app's redirect address: it shows what came back, as an app's callback would act on it."""
    got = "&".join(f"{key}={value}" for key, value in sorted(request.query_params.items()))
    return HTMLResponse(f"<!doctype html><title>Back in the app</title><p id='got'>{got}</p>")


@pytest.fixture
def app_callback() -> Iterator[str]:
    with ServedApp(Starlette(routes=[Route("/callback", callback)])) as served:
        yield f"{served.url}/callback"


def returned(browser: webdriver.Chrome, redirect: str) -> dict[str, str]:
    """What the browser carried back to the app's redirect address."""
    assert browser.current_url.startswith(redirect), browser.current_url
    assert browser.find_element(By.ID, "got").text, "the app's page rendered"
    return {key: values[0] for key, values in parse_qs(urlparse(browser.current_url).query).items()}


def test_google_consent_in_a_browser_gives_the_app_a_code_for_the_user(
    browser: webdriver.Chrome, app_callback: str
) -> None:
    sandbox = build_calendar(require_auth=True)
    sandbox.model.add_user("alice@corp.example", "Alice")
    with ServedApp(create_calendar_app(sandbox)) as served, httpx.Client(timeout=10) as http:
        client = http.post(f"{served.url}/_sandbox/oauth-clients", json={"redirect_uris": [app_callback]}).json()
        verifier, challenge = pkce()
        query = {
            "client_id": client["client_id"],
            "redirect_uri": app_callback,
            "response_type": "code",
            "scope": CALENDAR,
            "state": "s-42",
            "access_type": "offline",
            "login_hint": "alice@corp.example",
            "code_challenge": challenge,
            "code_challenge_method": "S256",
        }
        browser.get(f"{served.url}/o/oauth2/v2/auth?{urlencode(query)}")
        assert "Sign in with Google as alice@corp.example" in browser.find_element(By.TAG_NAME, "h1").text
        assert "See, edit, share" in browser.find_element(By.TAG_NAME, "ul").text, "the scope, in words"
        submit_form(browser, {}, "Allow")
        back = returned(browser, app_callback)
        assert back["state"] == "s-42"

        flow = OAuthFlow(served.url, http, GOOGLE_PATHS, CALENDAR, redirect=app_callback)
        tokens = flow.exchange(client, back["code"], verifier).json()
        events = http.get(
            f"{served.url}/calendar/v3/calendars/primary/events",
            headers={"Authorization": f"Bearer {tokens['access_token']}"},
        )
        assert events.status_code == 200, events.text
        assert "refresh_token" in tokens

        browser.get(f"{served.url}/o/oauth2/v2/auth?{urlencode(query)}")
        submit_form(browser, {}, "Deny")
        assert returned(browser, app_callback) == {"error": "access_denied", "state": "s-42"}


def test_the_vendors_consent_in_a_browser_signs_the_user_in_to_their_own_account(
    browser: webdriver.Chrome, app_callback: str
) -> None:
    vendor = build_provider(api_key=PROVIDER_KEY)
    with ServedApp(create_provider_app(vendor)) as served, httpx.Client(timeout=10) as http:
        assert http.post(f"{served.url}/_sandbox/users", json={"email": "alice@corp.example"}).status_code == 201
        client = http.post(f"{served.url}/_sandbox/oauth-clients", json={"redirect_uris": [app_callback]}).json()
        verifier, challenge = pkce()
        query = {
            "client_id": client["client_id"],
            "redirect_uri": app_callback,
            "response_type": "code",
            "scope": "conferences",
            "state": "v-7",
            "code_challenge": challenge,
            "code_challenge_method": "S256",
        }
        browser.get(f"{served.url}/oauth/authorize?{urlencode(query)}")
        assert "Sign in to My Web Conferencing" in browser.find_element(By.TAG_NAME, "h1").text
        submit_form(browser, {"email": "alice@corp.example"}, "Allow")
        back = returned(browser, app_callback)
        assert back["state"] == "v-7"

        flow = OAuthFlow(served.url, http, VENDOR_PATHS, "conferences", redirect=app_callback)
        tokens = flow.exchange(client, back["code"], verifier).json()
        assert "refresh_token" in tokens
        me = {"Authorization": f"Bearer {tokens['access_token']}"}
        created = http.post(
            f"{served.url}/v1/conferences",
            headers=me,
            json={"calendar_id": "primary", "event_id": "e-1", "request_id": "browser-flow-1"},
        )
        assert created.status_code in {200, 201}, created.text
        shown = http.get(f"{served.url}/v1/conferences/{created.json()['id']}", headers=me).json()
        assert shown["owner"] == "alice@corp.example"
