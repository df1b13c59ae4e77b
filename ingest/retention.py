"""The retention sweep: links and applied versions past their ``expires_at`` are deleted.

What expires when is confsync/retention.py's rule (``CONFSYNC_RETAIN_DAYS`` after an event
ends, or after its conference was deleted). SQLite deletes in batches here, from the ingest
service's background loop (ingest/lag.py's ``LagLoop``, every ``CONFSYNC_LAG_REPAIR_INTERVAL_S``)
and from ``confsync retention sweep``; Firestore deletes them itself (a TTL policy on
``expires_at``, infra/terraform/firestore.tf), so the sweep finds nothing to do there.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

import structlog

from confsync.ports import Store
from confsync.rfc3339 import utc_now
from confsync.store import Purged

__all__ = ["RetentionSweep"]

log = structlog.get_logger(__name__)


@dataclass
class RetentionSweep:
    store: Store
    batch: int = 500
    clock: Callable[[], datetime] = utc_now

    def run_once(self, *, dry_run: bool = False) -> Purged:
        """Delete (or, in a dry run, count) what has expired by now."""
        purged = self.store.purge_expired(self.clock(), batch=self.batch, dry_run=dry_run)
        if not dry_run and (purged.links or purged.applied):
            log.info("expired records removed", links=purged.links, applied=purged.applied)
        return purged
