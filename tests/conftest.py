"""Shared fixtures: the real Pub/Sub and Firestore emulators, started once per session.

Each emulator is a java child started from the jar this machine carries (or the one
CONFSYNC_PUBSUB_EMULATOR_JAR / CONFSYNC_FIRESTORE_EMULATOR_JAR name), reset before every
test that asks for it, and stopped by PID at the end of the session. Where a jar (or java)
is missing, the tests that need it are skipped with a reason that says so in capitals, and
the run ends with a banner counting them: a green run without emulators must not look like
a green run with them.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from confsync.settings import Settings
from stack.emulators import Emulator, find_jar, firestore_emulator, pubsub_emulator

# the sandbox fixtures, and `browser` (headless Chromium: tests_support/browser.py), for every test package
pytest_plugins = ["tests_support.fixtures", "tests_support.browser", "tests_support.accounts_world"]

PROJECT = "confsync-test"
_MISSING = "EMULATOR MISSING"


def _start(name: str, pattern: str, build: object) -> Iterator[Emulator]:
    jar = find_jar(pattern)
    if jar is None:
        pytest.skip(f"{_MISSING}: {name} jar not found at {pattern} (or no java): these tests did NOT run")
    emulator: Emulator = build(jar)  # type: ignore[operator]
    with emulator:
        yield emulator


@pytest.fixture(scope="session")
def _pubsub_process() -> Iterator[Emulator]:
    yield from _start("Pub/Sub", Settings.from_env().pubsub_emulator_jar, pubsub_emulator)


@pytest.fixture(scope="session")
def _firestore_process() -> Iterator[Emulator]:
    yield from _start(
        "Firestore", Settings.from_env().firestore_emulator_jar, lambda jar: firestore_emulator(jar, PROJECT)
    )


@pytest.fixture
def pubsub_emulator_host(_pubsub_process: Emulator, monkeypatch: pytest.MonkeyPatch) -> str:
    """A wiped Pub/Sub emulator; PUBSUB_EMULATOR_HOST points at it for this test."""
    _pubsub_process.reset()
    monkeypatch.setenv("PUBSUB_EMULATOR_HOST", _pubsub_process.host)
    return _pubsub_process.host


@pytest.fixture
def firestore_emulator_host(_firestore_process: Emulator, monkeypatch: pytest.MonkeyPatch) -> str:
    """A wiped Firestore emulator; FIRESTORE_EMULATOR_HOST points at it for this test."""
    _firestore_process.reset()
    monkeypatch.setenv("FIRESTORE_EMULATOR_HOST", _firestore_process.host)
    return _firestore_process.host


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    missing = [
        report
        for report in terminalreporter.stats.get("skipped", [])
        if _MISSING in str(getattr(report, "longrepr", ""))
    ]
    if missing:
        terminalreporter.section("EMULATORS MISSING", sep="!", red=True, bold=True)
        terminalreporter.line(
            f"{len(missing)} test(s) that need a Google emulator were SKIPPED: "
            "Pub/Sub or Firestore behaviour was NOT tested on this machine.",
            red=True,
            bold=True,
        )
