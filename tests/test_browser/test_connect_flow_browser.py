"""The connect flow once in a real browser (headless Chromium): from the add-on's
``authenticationUrl`` through confsync's connect page, Google's consent and the vendor's, to
"Connected", with nothing but HTML forms and redirects (the pages load no script). The last
page is kept as a screenshot in test-artifacts/ (CONFSYNC_TEST_ARTIFACTS overrides where)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.common.by import By
from tests_support.accounts_world import AccountsWorld, WorldFactory
from tests_support.browser import submit_form

from confsync.store.records import GrantStatus, OAuthProvider

ALICE = "alice@example.com"
ARTIFACTS = Path(os.environ.get("CONFSYNC_TEST_ARTIFACTS", Path(__file__).parents[2] / "test-artifacts"))


@pytest.fixture
def world(accounts_world: WorldFactory) -> AccountsWorld:
    return accounts_world(ALICE)


def heading(browser: webdriver.Chrome) -> str:
    return browser.find_element(By.TAG_NAME, "h1").text


def test_the_connect_flow_in_a_browser_ends_connected(browser: webdriver.Chrome, world: AccountsWorld) -> None:
    answer = world.create(ALICE, ALICE, "evt1")
    assert answer.status_code == 403
    url = answer.json()["error"]["authenticationUrl"]

    browser.get(url)
    assert heading(browser) == "Connect My Web Conference"
    assert ALICE in browser.find_element(By.TAG_NAME, "main").text
    assert browser.execute_script("return document.scripts.length") == 0  # plain HTML
    submit_form(browser, {}, "Continue")

    assert heading(browser) == f"Sign in with Google as {ALICE}"  # login_hint carried through
    submit_form(browser, {}, "Allow")
    assert browser.current_url.startswith(world.provider.url)  # on to the vendor's consent
    submit_form(browser, {"email": ALICE}, "Allow")

    assert browser.current_url.startswith(f"{world.url}/connect/vendor")
    assert heading(browser) == "Connected"
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / "connect-flow-connected.png"
    assert browser.save_screenshot(str(shot))
    assert shot.stat().st_size > 1000
    grants = {grant.provider: grant.status for grant in world.stack.store.list_grants(user=ALICE)}
    assert grants == {OAuthProvider.GOOGLE: GrantStatus.ACTIVE, OAuthProvider.VENDOR: GrantStatus.ACTIVE}
    assert world.create(ALICE, ALICE, "evt1").status_code == 200
