"""A user leaves: ``confsync users disconnect EMAIL`` or the add-on's ``DELETE /v1/me``.

In this order, so that each step still has what it needs:

1. Their calendars' watch channels are stopped (with their own Google credentials, which
   Calendar requires of a channel's opener), then each calendar is forgotten with its links:
   confsync stops following those events.
2. Commands held for their reconnect are dropped: there will be none.
3. Each grant's token is revoked at its provider (best effort: a provider that does not
   answer has its grant forgotten here all the same), then the user and their grants are
   deleted from the store.

Their conferences stay at the vendor: they are in the user's own account. A user who comes
back connects again and adds conferences anew.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import structlog

from accounts.grants import Grants, normalise_email
from accounts.oauth import OAuthClient
from accounts.vault import VaultError
from confsync.ports import Store
from confsync.store.records import Grant, OAuthProvider

__all__ = ["OffboardReport", "Offboarding"]

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class OffboardReport:
    user: str
    calendars: int
    channels_stopped: int
    links_forgotten: int
    held_dropped: int
    grants_revoked: int  # revoked at their provider (the rest are forgotten all the same)
    grants_forgotten: int

    def to_json(self) -> dict[str, object]:
        return {
            "user": self.user,
            "calendars": self.calendars,
            "channels_stopped": self.channels_stopped,
            "links_forgotten": self.links_forgotten,
            "held_dropped": self.held_dropped,
            "grants_revoked": self.grants_revoked,
            "grants_forgotten": self.grants_forgotten,
        }


@dataclass(frozen=True, slots=True)
class Offboarding:
    store: Store
    grants: Grants
    clients: dict[OAuthProvider, OAuthClient]
    stop_channels: Callable[[str], list[str]]  # ChannelManager.stop for one calendar
    forget_tokens: Callable[[str], None] = lambda _user: None  # access tokens kept in memory

    def __call__(self, user: str) -> OffboardReport:
        email = normalise_email(user)
        calendars = self.store.calendars_of(email)
        stopped = links = 0
        for state in calendars:
            stopped += len(self.stop_channels(state.calendar_id))
            links += len(self.store.live_links(state.calendar_id))
            self.store.forget_calendar(state.calendar_id)
        dropped = 0
        while held := self.store.held_commands(email):
            self.store.release_held(email, [command.command_id for command in held])
            dropped += len(held)
        grants = self.store.list_grants(user=email)
        revoked = sum(self._revoke(grant) for grant in grants)
        self.grants.forget(email)
        self.forget_tokens(email)
        report = OffboardReport(email, len(calendars), stopped, links, dropped, revoked, len(grants))
        log.info("user disconnected", **report.to_json())
        return report

    def _revoke(self, grant: Grant) -> bool:
        client = self.clients.get(grant.provider)
        if client is None:
            return False
        try:
            token = self.grants.unseal(grant)
        except VaultError:
            log.warning("a grant's token does not open; forgotten without revoking it", provider=grant.provider.value)
            return False
        return client.revoke(token)
