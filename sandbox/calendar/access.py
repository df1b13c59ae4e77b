"""Who is who in the Calendar sandbox: its users and who may read or write which calendar.

A user (``POST /_sandbox/users``) has a primary calendar whose id is their email; the part
after ``@`` is their domain. A calendar's owner has the owner role on it; others have the role
its ACL gives them (``calendars/{id}/acl``, user scopes only), or none.

When a request acts for a principal (auth on), each route states what it needs (a ``Need``):
a role on the calendar and one of the OAuth scopes Google's reference lists for the method.
``check`` answers as Google does: 403 ``insufficientPermissions`` for a token without such a
scope; 404 ``notFound`` to a reader-less caller on reads (the calendar is not theirs to see);
403 ``requiredAccessLevel`` ("You need to have writer access to this calendar.") otherwise.
A principal with no scopes (static ``--auth-token`` tokens) holds every scope.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from enum import IntEnum

from sandbox.calendar.errors import GoogleError, not_found

__all__ = [
    "ACL_READ",
    "ACL_WRITE",
    "EVENTS_READ",
    "EVENTS_WRITE",
    "LIST_READ",
    "Access",
    "Need",
    "Role",
    "User",
    "acl_rule",
    "check",
    "etag",
    "is_email",
]

_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")


def is_email(value: object) -> bool:
    return isinstance(value, str) and len(value) <= 320 and _EMAIL.fullmatch(value) is not None


class Role(IntEnum):
    """Calendar ACL roles, ordered: each includes the rights of those below it."""

    NONE = 0
    FREE_BUSY_READER = 1
    READER = 2
    WRITER = 3
    OWNER = 4

    @property
    def wire(self) -> str:
        """The name Google's API uses (``freeBusyReader``, ``reader``...)."""
        return _WIRE[self]

    @classmethod
    def parse(cls, value: object) -> Role | None:
        return _BY_WIRE.get(value) if isinstance(value, str) else None


_WIRE = {
    Role.NONE: "none",
    Role.FREE_BUSY_READER: "freeBusyReader",
    Role.READER: "reader",
    Role.WRITER: "writer",
    Role.OWNER: "owner",
}
_BY_WIRE = {name: role for role, name in _WIRE.items()}


@dataclass(frozen=True, slots=True)
class User:
    email: str
    name: str = ""

    @property
    def domain(self) -> str:
        return self.email.partition("@")[2]

    def to_json(self) -> dict[str, str]:
        return {"email": self.email, "name": self.name, "calendarId": self.email}


@dataclass
class Access:
    """The users, and each calendar's ACL (calendar id -> user email -> role).

    Emails are kept lowercase; the owner of a calendar is not in its ACL (``role`` knows it).
    """

    users: dict[str, User] = field(default_factory=dict)
    acl: dict[str, dict[str, Role]] = field(default_factory=dict)

    def add_user(self, email: str, name: str = "") -> User:
        user = self.users[email] = User(email, name)
        return user

    def is_user(self, email: str) -> bool:
        return email in self.users

    def role(self, calendar_id: str, email: str, owner: str) -> Role:
        email = email.lower()
        if email == owner.lower():
            return Role.OWNER
        return self.acl.get(calendar_id, {}).get(email, Role.NONE)

    def grant(self, calendar_id: str, email: str, role: Role) -> None:
        self.acl.setdefault(calendar_id, {})[email.lower()] = role

    def revoke(self, calendar_id: str, email: str) -> bool:
        rules = self.acl.get(calendar_id, {})
        found = rules.pop(email.lower(), None) is not None
        if not rules:
            self.acl.pop(calendar_id, None)
        return found

    def shared_with(self, email: str) -> dict[str, Role]:
        """The calendars whose ACL names ``email``, with its role there."""
        email = email.lower()
        return {calendar_id: rules[email] for calendar_id, rules in self.acl.items() if email in rules}

    def clear(self) -> None:
        self.users.clear()
        self.acl.clear()


# -- what each method needs --------------------------------------------------------------------

_AUTH = "https://www.googleapis.com/auth/"


def _scopes(*names: str) -> frozenset[str]:
    return frozenset(_AUTH + name for name in names)


@dataclass(frozen=True, slots=True)
class Need:
    """A role on the calendar, one of ``scopes``, and whether a caller without any access is
    told the calendar does not exist (reads: 404) or that they lack the role (writes: 403)."""

    role: Role
    scopes: frozenset[str]
    hide: bool


EVENTS_READ = Need(
    Role.READER,
    _scopes(
        "calendar",
        "calendar.readonly",
        "calendar.events",
        "calendar.events.readonly",
        "calendar.events.owned",
        "calendar.events.owned.readonly",
    ),
    hide=True,
)
EVENTS_WRITE = Need(Role.WRITER, _scopes("calendar", "calendar.events", "calendar.events.owned"), hide=False)
ACL_READ = Need(
    Role.WRITER, _scopes("calendar", "calendar.readonly", "calendar.acls", "calendar.acls.readonly"), hide=True
)
ACL_WRITE = Need(Role.OWNER, _scopes("calendar", "calendar.acls"), hide=False)
LIST_READ = Need(
    Role.NONE,
    _scopes("calendar", "calendar.readonly", "calendar.calendarlist", "calendar.calendarlist.readonly"),
    hide=True,
)


def check(need: Need, role: Role, scopes: frozenset[str]) -> None:
    """Raise Google's error unless a caller with ``role`` and ``scopes`` may do it."""
    if scopes and not scopes & need.scopes:
        raise GoogleError(403, "insufficientPermissions", "Request had insufficient authentication scopes.")
    if role >= need.role:
        return
    if need.hide and role < Role.FREE_BUSY_READER:
        raise not_found()
    raise GoogleError(
        403, "requiredAccessLevel", f"You need to have {need.role.wire} access to this calendar.", domain="calendar"
    )


# -- wire shapes -------------------------------------------------------------------------------


def etag(*parts: str) -> str:
    """A stable quoted etag for a resource whose state is ``parts``."""
    return '"' + hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:16] + '"'


def acl_rule(email: str, role: Role) -> dict[str, object]:
    """Google's AclRule resource for a user scope."""
    return {
        "kind": "calendar#aclRule",
        "etag": etag("acl", email, role.wire),
        "id": f"user:{email}",
        "scope": {"type": "user", "value": email},
        "role": role.wire,
    }
