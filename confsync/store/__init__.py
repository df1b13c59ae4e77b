"""confsync's state: the records, and (later) the SQLite and Firestore stores behind ``Store``."""

from confsync.store.records import (
    AppliedVersion,
    CalendarState,
    CalendarStatus,
    ChannelRecord,
    ChannelState,
    Link,
    LinkState,
)

__all__ = [
    "AppliedVersion",
    "CalendarState",
    "CalendarStatus",
    "ChannelRecord",
    "ChannelState",
    "Link",
    "LinkState",
]
