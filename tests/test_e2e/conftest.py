"""The whole stack as ``confsync local`` runs it, once per transport for this package.

``stack`` starts ``confsync local --transport T --ready-file F`` as a child process and
yields what the ready file says. Tests act only through public surfaces (``StackDriver``:
the Calendar API and the add-on API as the stack's users, the connect pages, the sandboxes'
admin routes, the conferencing API) and use users and calendars of their own, so they share
one stack per transport.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests_support.local_stack import Stack, running_local

from confsync.settings import Settings
from stack.driver import StackDriver
from stack.emulators import find_jar

LOG_TAIL_LINES = 30


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """A failed end-to-end test shows the end of each service's log, where the cause is."""
    outcome = yield
    report = outcome.get_result()
    stack = getattr(item, "funcargs", {}).get("stack")
    if report.when != "call" or not report.failed or not isinstance(stack, Stack):
        return
    for name, service in stack.current().services.items():
        try:
            lines = Path(service.log).read_text(errors="replace").splitlines()[-LOG_TAIL_LINES:]
        except OSError as error:
            lines = [f"(log unreadable: {error})"]
        report.sections.append((f"{name} log, last {LOG_TAIL_LINES} lines", "\n".join(line[:400] for line in lines)))


@pytest.fixture(scope="package", params=["pubsub", "memory"])
def stack(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    transport = request.param
    if transport == "pubsub" and find_jar(Settings.from_env().pubsub_emulator_jar) is None:
        pytest.skip("EMULATOR MISSING: no Pub/Sub emulator jar (or no java): the Pub/Sub end-to-end run did NOT run")
    with running_local(tmp_path_factory.mktemp(f"local-{transport}"), transport) as running:
        yield running


@pytest.fixture
def driver(stack: Stack) -> Iterator[StackDriver]:
    driver = StackDriver(stack.info)
    yield driver
    driver.clear_provider_faults()
    driver.duplicate_notifications(on=False)
    driver.close()


@pytest.fixture
def calendar(driver: StackDriver) -> str:
    """A calendar of this test's own on the shared stack: a new user's (of example.com, whose
    calendars confsync reads through delegation), who connects on their first add-on call."""
    calendar_id = f"u{uuid.uuid4().hex[:10]}@example.com"
    driver.add_calendar(calendar_id)
    return calendar_id
