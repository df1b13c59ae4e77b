"""The sync-token loop (https://developers.google.com/calendar/api/guides/sync), as a small
function over injected callables, so it is tested without any particular client or store.

1. Read the calendar's token and its version.
2. List pages until ``nextSyncToken``: incrementally from the token, or in full without one.
   Each page is handled (decided, published, linked) before the next is read.
3. Calendar answered 410 ``fullSyncRequired``: list everything from scratch, then sweep: the
   live links of this calendar that the full listing did not show belong to events deleted
   during the gap, and their conferences are deleted. State is never wiped first. (A first
   sync, which has no token, never sweeps: the add-on creates conferences for events that may
   not be saved in Calendar yet.)
4. Save the new token with compare-and-set on the version read in step 1, only now that every
   command of the delta is published. Losing the CAS means another worker synced this
   calendar meanwhile: stop, save nothing (its token is at least as new).

A crash anywhere before step 4 leaves the old token in place: the next run lists the same
delta again and, deciding the same way, publishes commands with the same ids.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from confsync.errors import SyncTokenExpired
from confsync.ports import CalendarEvent, EventPage
from confsync.store import CalendarState

__all__ = ["ListPage", "Listing", "SyncResult", "page_through", "run_sync"]

# (sync_token or None for a full listing, page_token or None) -> one page
ListPage = Callable[[str | None, str | None], EventPage]


@dataclass(frozen=True, slots=True)
class SyncResult:
    listed: int
    full_sync: bool
    recovered_from_410: bool
    swept: int
    token_saved: bool


def run_sync(
    *,
    read_state: Callable[[], CalendarState | None],
    list_page: ListPage,
    handle_page: Callable[[tuple[CalendarEvent, ...]], None],
    sweep: Callable[[set[str]], int],
    save_token: Callable[[str, int], bool],
) -> SyncResult:
    """One sync of one calendar; ``sweep(seen_ids)`` runs after every full listing: a 410
    recovery, or a calendar with no token (a first sync, or a reconnect that cleared it)."""
    state = read_state()
    token = state.sync_token if state is not None else None
    version = state.token_version if state is not None else 0
    try:
        listed, next_token, seen = _page_through(token, list_page, handle_page)
        recovered, swept = False, sweep(seen) if token is None else 0
    except SyncTokenExpired:
        listed, next_token, seen = _page_through(None, list_page, handle_page)
        recovered, swept = True, sweep(seen)
    saved = save_token(next_token, version)
    return SyncResult(listed, token is None or recovered, recovered, swept, saved)


@dataclass(frozen=True, slots=True)
class Listing:
    listed: int
    sync_token: str | None  # the last page's nextSyncToken
    seen: set[str]  # the ids of every event listed


def page_through(
    list_page: Callable[[str | None], EventPage],
    on_page: Callable[[EventPage], None],
    *,
    page_token: str | None = None,
) -> Listing:
    """List pages from ``page_token`` (the first page by default) until the last, handing each
    to ``on_page`` before the next is read; ``list_page(page_token)`` lists one."""
    listed, seen = 0, set[str]()
    while True:
        page = list_page(page_token)
        on_page(page)
        listed += len(page.events)
        seen.update(event.id for event in page.events)
        page_token = page.next_page_token
        if not page_token:
            return Listing(listed, page.next_sync_token, seen)


def _page_through(
    token: str | None, list_page: ListPage, handle_page: Callable[[tuple[CalendarEvent, ...]], None]
) -> tuple[int, str, set[str]]:
    listing = page_through(lambda page_token: list_page(token, page_token), lambda page: handle_page(page.events))
    if not listing.sync_token:
        raise SyncTokenExpired("the last page carried no nextSyncToken")
    return listing.listed, listing.sync_token, listing.seen
