"""The browser harness itself: a plain HTML form, served over real HTTP, filled in and submitted by
headless Chromium, whose post is answered with a redirect to a result page (as the consent pages do)."""

from __future__ import annotations

import html
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, quote

import pytest
from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.common.selenium_manager import SeleniumManager
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route
from tests_support import browser as browser_support
from tests_support.browser import submit_form

from confsync.serving import ServedApp

FORM = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Your name</title></head>
<body>
  <form method="post" action="/greet">
    <label for="name">Name</label> <input id="name" name="name" type="text">
    <label><input name="agree" type="checkbox" value="yes"> I agree</label>
    <button type="submit">Send</button>
  </form>
</body></html>
"""


async def form(request: Request) -> Response:
    return HTMLResponse(FORM)


async def greet(request: Request) -> Response:
    # application/x-www-form-urlencoded, read by hand: Starlette's own form parser needs python-multipart
    posted = parse_qs((await request.body()).decode())
    name = posted.get("name", [""])[0]
    agreed = posted.get("agree", ["no"])[0]
    return RedirectResponse(f"/result?name={quote(name)}&agreed={quote(agreed)}", status_code=303)


async def result(request: Request) -> Response:
    name = html.escape(request.query_params.get("name", ""))
    agreed = html.escape(request.query_params.get("agreed", ""))
    return HTMLResponse(f"<!doctype html><title>Done</title><h1>Hello, {name}!</h1><p id='agreed'>{agreed}</p>")


@pytest.fixture
def site() -> Iterator[str]:
    app = Starlette(routes=[Route("/", form), Route("/greet", greet, methods=["POST"]), Route("/result", result)])
    with ServedApp(app) as served:
        yield served.url


def test_a_form_is_typed_into_submitted_and_its_redirect_followed(browser: webdriver.Chrome, site: str) -> None:
    browser.get(f"{site}/")
    assert browser.title == "Your name"
    submit_form(browser, {"name": "Ada Lovelace & co", "agree": True}, "Send")
    assert browser.current_url == f"{site}/result?name=Ada%20Lovelace%20%26%20co&agreed=yes"
    assert browser.title == "Done"
    assert browser.find_element(By.TAG_NAME, "h1").text == "Hello, Ada Lovelace & co!"
    assert browser.find_element(By.ID, "agreed").text == "yes"


def test_an_unticked_checkbox_is_not_posted(browser: webdriver.Chrome, site: str) -> None:
    browser.get(f"{site}/")
    submit_form(browser, {"name": "Grace", "agree": False}, "Send")
    assert browser.find_element(By.TAG_NAME, "h1").text == "Hello, Grace!"
    assert browser.find_element(By.ID, "agreed").text == "no"


def test_the_helper_names_what_the_page_lacks(browser: webdriver.Chrome, site: str) -> None:
    browser.get(f"{site}/")
    with pytest.raises(LookupError, match="no form field named 'email'"):
        submit_form(browser, {"email": "a@example.com"}, "Send")
    with pytest.raises(LookupError, match=r"no button 'Cancel' \(it has \['Send'\]\)"):
        submit_form(browser, {}, "Cancel")


def test_selenium_manager_is_never_consulted(monkeypatch: pytest.MonkeyPatch) -> None:
    """The driver and browser are Debian's, named by path: nothing is looked up or downloaded."""
    if reason := browser_support.missing_reason():
        pytest.skip(reason)

    def refuse(*args: object) -> dict[str, str]:
        raise AssertionError(f"Selenium Manager was asked for a driver: {args}")

    monkeypatch.setattr(SeleniumManager, "binary_paths", refuse)
    with browser_support.chromium() as driver:
        assert driver.capabilities["browserName"] == "chrome"
        assert "--headless=new" in driver.options.arguments


def test_a_missing_browser_is_named_loudly(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(browser_support, "CHROMIUM", tmp_path / "chromium")
    reason = browser_support.missing_reason()
    assert reason is not None
    assert reason.startswith("BROWSER MISSING: ")
    assert str(tmp_path / "chromium") in reason
    assert "did NOT run" in reason
