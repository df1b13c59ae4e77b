"""A channel Google stops delivering on, over ``confsync local``: its calendar is listed anyway
once it has been quiet for ``CONFSYNC_POLL_AFTER_S``, so the change made after the drop reaches
the provider within that interval (plus one lag pass) instead of never.

Its own stack (in-process transport), polling after 3 s: the shared one polls every 6 h.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from tests_support.local_stack import Stack, running_local, timed

from stack.driver import StackDriver

POLL_AFTER_S = 3.0
LAG_PASS_S = 1.0  # confsync local's CONFSYNC_LAG_REPAIR_INTERVAL_S


@pytest.fixture(scope="module")
def polling(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    state = tmp_path_factory.mktemp("local-polling")
    with running_local(state, "memory", CONFSYNC_POLL_AFTER_S=str(POLL_AFTER_S)) as running:
        yield running


def test_a_change_made_after_its_channel_went_silent_arrives_within_the_poll_interval(polling: Stack) -> None:
    driver = StackDriver(polling.info)
    try:
        alice = "silent-alice@example.com"
        driver.add_calendar(alice)
        planning = driver.insert(alice, timed("Planning", 8))
        conference = driver.add_conference(alice, planning)
        assert driver.wait_for_version(conference, 2) == 2
        (channel,) = driver.live_channels_of(alice)
        driver.drop_channel(channel["id"])

        driver.patch(alice, planning["id"], {"summary": "Planning, changed after the drop"})
        changed = time.monotonic()

        def arrived() -> bool:
            held = driver.conference(conference)
            return held is not None and held.get("summary") == "Planning, changed after the drop"

        driver.wait_until(arrived, 30.0, "the change to reach the provider")
        waited = time.monotonic() - changed
        (after,) = driver.live_channels_of(alice)
        assert after["dropped"] is True
        assert after["lastMessageNumber"] == channel["lastMessageNumber"], "Calendar delivered nothing since"
        assert waited <= POLL_AFTER_S + 2 * LAG_PASS_S + 2.0, f"waited {waited:.1f}s"
    finally:
        driver.close()
