"""confsync's state: the records, the ``Store`` port's two implementations, and ``open_store``.

``open_store(settings.store_url)`` picks the implementation: ``sqlite:///PATH`` (the embedded
default, under the user's data directory) or ``firestore://PROJECT[/DATABASE]`` (production;
the emulator when FIRESTORE_EMULATOR_HOST is set). Both pass one contract suite
(tests/test_confsync/test_store_contract.py).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from confsync.errors import ConfigError
from confsync.store import records
from confsync.store.records import *  # noqa: F403 - the records are this package's surface

if TYPE_CHECKING:  # confsync.ports imports the records from here
    from confsync.ports import Store

__all__ = ["open_store"]
__all__ += records.__all__


def open_store(url: str) -> Store:
    """The Store a ``CONFSYNC_STORE_URL`` names."""
    if url.startswith("sqlite:///"):
        from confsync.store.sqlite import SqliteStore  # noqa: PLC0415 - load only the backend in use

        return SqliteStore.from_url(url)
    if url.startswith("firestore://"):
        from confsync.store.firestore import FirestoreStore  # noqa: PLC0415 - as above

        return FirestoreStore.from_url(url)
    raise ConfigError(
        f"unknown store URL {url!r}: use sqlite:///PATH or firestore://PROJECT", variable="CONFSYNC_STORE_URL"
    )
