"""The roles ``confsync serve`` runs: one Cloud Run service each, or all three in one process."""

from __future__ import annotations

from enum import StrEnum

__all__ = ["Role"]


class Role(StrEnum):
    INGEST = "ingest"
    PROCESSOR = "processor"
    PUBLISHER = "publisher"
    ALL = "all"

    def runs(self, role: Role) -> bool:
        return self in (role, Role.ALL)
