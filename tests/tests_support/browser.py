"""A real browser for tests of web pages: Debian's headless Chromium driven by Selenium.

``browser`` (a pytest fixture, loaded by tests/conftest.py) yields a Selenium Chrome webdriver on
/usr/bin/chromium through /usr/bin/chromedriver, with a fresh profile, and quits it after the test.
scripts/install-chromium (run by scripts/test) installs both from Debian's packages; where either
is missing the test is skipped with a reason starting "BROWSER MISSING:", and the run ends with a
banner counting such skips. Nothing is ever downloaded: the driver's path is given, so Selenium
Manager never runs (and it is told to stay offline should anything reach it).

``submit_form(driver, {"name": "value"}, "Button text")`` fills a form and presses a button, then
waits for the page it leads to.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.select import Select
from selenium.webdriver.support.wait import WebDriverWait

__all__ = ["CHROMEDRIVER", "CHROMIUM", "CHROMIUM_ARGUMENTS", "MISSING", "browser", "chromium", "submit_form"]

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
MISSING = "BROWSER MISSING"
CHROMIUM_ARGUMENTS = (
    "--headless=new",
    "--no-sandbox",  # tests run as root, where Chromium's sandbox refuses to start
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-default-browser-check",
)
PAGE_LOAD_TIMEOUT_S = 30.0
PROXY_VARIABLES = ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY")


def missing_reason() -> str | None:
    """Why the browser tests cannot run here, or None when they can."""
    absent = [str(path) for path in (CHROMIUM, CHROMEDRIVER) if not os.access(path, os.X_OK)]
    if not absent:
        return None
    return (
        f"{MISSING}: {' and '.join(absent)} not found (Debian's chromium and chromium-driver; "
        "scripts/install-chromium installs them): this browser test did NOT run"
    )


@contextmanager
def chromium(*, window: tuple[int, int] = (1280, 900)) -> Iterator[webdriver.Chrome]:
    """Headless Chromium with a fresh temporary profile, quit (and its profile removed) on exit."""
    profile = Path(tempfile.mkdtemp(prefix="confsync-chromium-"))
    try:
        options = Options()
        options.binary_location = str(CHROMIUM)
        for argument in (*CHROMIUM_ARGUMENTS, f"--user-data-dir={profile}", f"--window-size={window[0]},{window[1]}"):
            options.add_argument(argument)
        service = Service(executable_path=str(CHROMEDRIVER), log_output=str(profile / "chromedriver.log"))
        with pytest.MonkeyPatch.context() as env:
            env.setenv("SE_OFFLINE", "true")  # Selenium Manager, were it ever consulted, downloads nothing
            env.delenv("SE_CHROMEDRIVER", raising=False)  # the driver is the one named above, never another
            for proxy in PROXY_VARIABLES:  # chromedriver and the pages are on loopback: never via a proxy
                env.delenv(proxy, raising=False)
            driver = webdriver.Chrome(options=options, service=service)
        try:
            driver.set_page_load_timeout(PAGE_LOAD_TIMEOUT_S)
            yield driver
        finally:
            driver.quit()
    finally:
        shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture
def browser() -> Iterator[webdriver.Chrome]:
    """A headless Chromium (Selenium webdriver) with a fresh profile; skipped, loudly, without one."""
    if reason := missing_reason():
        pytest.skip(reason)
    with chromium() as driver:
        yield driver


def _fill(driver: webdriver.Chrome, name: str, value: str | bool) -> None:
    elements = driver.find_elements(By.NAME, name)
    if not elements:
        raise LookupError(f"the page has no form field named {name!r}")
    first = elements[0]
    kind = (first.get_attribute("type") or "").lower()
    if first.tag_name == "select":
        Select(first).select_by_value(str(value))
    elif kind == "checkbox":
        if not isinstance(value, bool):
            raise TypeError(f"checkbox {name!r} takes True or False, not {value!r}")
        if first.is_selected() != value:
            first.click()
    elif kind == "radio":
        chosen = [element for element in elements if element.get_attribute("value") == value]
        if not chosen:
            raise LookupError(f"radio group {name!r} has no choice {value!r}")
        chosen[0].click()
    else:
        first.clear()
        first.send_keys(str(value))


def _button(driver: webdriver.Chrome, label: str) -> WebElement:
    candidates = driver.find_elements(By.CSS_SELECTOR, "button, input[type=submit], input[type=button]")
    for element in candidates:
        text = element.text if element.tag_name == "button" else element.get_attribute("value") or ""
        if text.strip() == label:
            return element
    labels = [element.text or element.get_attribute("value") for element in candidates]
    raise LookupError(f"the page has no button {label!r} (it has {labels})")


def _left(page: WebElement) -> Callable[[webdriver.Chrome], bool]:
    """``staleness_of``, also when Chromium answers the check with the page's node already gone
    from the new document (an inspector error, not a stale-element one, mid-navigation)."""
    stale = expected_conditions.staleness_of(page)

    def left(driver: webdriver.Chrome) -> bool:
        try:
            return stale(driver)
        except WebDriverException as err:
            if "does not belong to the document" in str(err):
                return True
            raise

    return left


def submit_form(
    driver: webdriver.Chrome, fields: Mapping[str, str | bool], button: str, *, timeout_s: float = 10.0
) -> None:
    """Fill the form fields named in ``fields`` (text, select and radio take a string, a checkbox
    True or False), press the button whose text (or value) is ``button``, and return once the
    browser has left this page for the one the form leads to."""
    for name, value in fields.items():
        _fill(driver, name, value)
    page = driver.find_element(By.TAG_NAME, "html")
    _button(driver, button).click()
    WebDriverWait(driver, timeout_s).until(_left(page))
    WebDriverWait(driver, timeout_s).until(
        lambda current: current.execute_script("return document.readyState") == "complete"
    )


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    missing = [
        report
        for report in terminalreporter.stats.get("skipped", [])
        if MISSING in str(getattr(report, "longrepr", ""))
    ]
    if missing:
        terminalreporter.section(MISSING, sep="!", red=True, bold=True)
        terminalreporter.line(
            f"{len(missing)} test(s) that need Chromium were SKIPPED: web pages were NOT tested in a browser "
            "on this machine (scripts/install-chromium installs Debian's chromium and chromium-driver).",
            red=True,
            bold=True,
        )
