"""The listing policy: how long a calendar's next listing waits, by how fast it is notified."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from processors.pacing import ListingPace

T0 = datetime(2026, 12, 7, 9, tzinfo=UTC)


def notify(pace: ListingPace, calendar_id: str, per_s: float, seconds: float, start: datetime = T0) -> datetime:
    """``per_s`` notifications a second for ``seconds``; returns when the last came."""
    count = int(per_s * seconds)
    for n in range(count):
        pace.note(calendar_id, start + timedelta(seconds=n / per_s))
    return start + timedelta(seconds=(count - 1) / per_s)


def test_a_quiet_calendar_is_listed_after_the_shortest_interval() -> None:
    pace = ListingPace()
    assert pace.interval_s("unknown@example.com") == 0.5
    pace.note("quiet@example.com", T0)
    assert pace.interval_s("quiet@example.com") == 0.5


@pytest.mark.parametrize(("per_s", "interval_s"), [(5, 0.5), (12, 1.1), (15, 1.55), (40, 2.0), (200, 2.0)])
def test_the_wait_grows_with_the_rate_up_to_the_longest(per_s: float, interval_s: float) -> None:
    pace = ListingPace()
    notify(pace, "busy@example.com", per_s, 10)
    assert pace.interval_s("busy@example.com") == pytest.approx(interval_s, rel=0.15)


def test_a_storm_costs_at_most_one_listing_in_twenty_notifications_from_20_a_second() -> None:
    pace = ListingPace()
    for per_s in (20, 30, 50, 100):
        notify(pace, f"storm{per_s}@example.com", per_s, 10)
        listings_per_notification = 1 / (per_s * pace.interval_s(f"storm{per_s}@example.com"))
        assert listings_per_notification <= 0.05, per_s


def test_a_folded_message_counts_as_the_notifications_it_stands_for() -> None:
    """Ingest folds a storm's notifications (ingest/fold.py): 20 a second in four messages a
    second of five each paces the calendar as 20 single messages would."""
    single, folded = ListingPace(), ListingPace()
    notify(single, "cal@example.com", 20, 10)
    for n in range(40):
        folded.note("cal@example.com", T0 + timedelta(seconds=(n + 1) / 4), count=5)
    assert folded.interval_s("cal@example.com") == pytest.approx(single.interval_s("cal@example.com"), rel=0.05)
    assert folded.interval_s("cal@example.com") == 2.0


def test_after_a_storm_the_calendar_is_quick_again() -> None:
    pace = ListingPace()
    last = notify(pace, "cal@example.com", 50, 5)
    assert pace.interval_s("cal@example.com") == 2.0
    pace.note("cal@example.com", last + timedelta(seconds=10))
    assert pace.interval_s("cal@example.com") == 0.5


def test_a_storm_that_stopped_is_forgotten_after_a_second_of_quiet() -> None:
    """The next changes after a storm (saved in bursts at an ordinary rate) keep the half-second pace."""
    pace = ListingPace()
    last = notify(pace, "cal@example.com", 15, 10)
    assert pace.interval_s("cal@example.com") == pytest.approx(1.55, rel=0.15)
    for burst in range(5):
        for n in range(10):
            pace.note("cal@example.com", last + timedelta(seconds=1.5 + 2 * burst + n / 100))
            assert pace.interval_s("cal@example.com") <= 0.6, (burst, n)


def test_a_storm_with_short_pauses_is_still_a_storm() -> None:
    pace = ListingPace()
    last = notify(pace, "cal@example.com", 30, 5)
    last = notify(pace, "cal@example.com", 30, 5, start=last + timedelta(seconds=0.9))
    assert pace.interval_s("cal@example.com") == 2.0


def test_a_backlog_delivered_at_once_or_out_of_order_counts_at_the_rate_it_came() -> None:
    in_order, shuffled = ListingPace(), ListingPace()
    times = [T0 + timedelta(seconds=n / 10) for n in range(100)]  # 10 a second for 10 s
    for at in times:
        in_order.note("cal@example.com", at)
    for at in times[::2] + times[1::2]:  # as an unordered subscription might hand them over
        shuffled.note("cal@example.com", at)
    assert in_order.rate("cal@example.com") == pytest.approx(10, rel=0.1)
    assert shuffled.rate("cal@example.com") == pytest.approx(in_order.rate("cal@example.com"), rel=1e-9)


def test_calendars_are_paced_each_on_its_own_and_quiet_ones_are_forgotten() -> None:
    pace = ListingPace()
    notify(pace, "storm@example.com", 50, 2)
    assert pace.interval_s("other@example.com") == 0.5
    later = T0 + timedelta(minutes=5)
    for n in range(5000):
        pace.note(f"user{n}@example.com", later)
    assert pace.rate("storm@example.com") == 0.0, "five minutes quiet: forgotten"
    assert len(pace._rates) <= 5001


def test_bursts_at_an_ordinary_rate_keep_the_half_second_pace() -> None:
    """Ten changes saved at once every 2 s (5 a second on average) are not a storm."""
    pace = ListingPace()
    for burst in range(10):
        for n in range(10):
            pace.note("cal@example.com", T0 + timedelta(seconds=2 * burst + n / 100))
            assert pace.interval_s("cal@example.com") <= 0.6
