"""Who is who in the Calendar sandbox: its users and who may read or write which calendar.

A user (``POST /_sandbox/users``) has a primary calendar whose id is their email; the part
after ``@`` is their domain. A calendar's owner has the owner role on it; others have the role
its ACL gives them (``calendars/{id}/acl``), or none.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum

__all__ = ["Access", "Role", "User"]


class Role(IntEnum):
    """Calendar ACL roles, ordered: each includes the rights of those below it."""

    NONE = 0
    FREE_BUSY_READER = 1
    READER = 2
    WRITER = 3
    OWNER = 4


@dataclass(frozen=True, slots=True)
class User:
    email: str
    name: str = ""

    @property
    def domain(self) -> str:
        return self.email.partition("@")[2]


@dataclass
class Access:
    """The users, and each calendar's ACL (calendar id -> user email -> role)."""

    users: dict[str, User] = field(default_factory=dict)
    acl: dict[str, dict[str, Role]] = field(default_factory=dict)

    def add_user(self, email: str, name: str = "") -> User:
        user = self.users[email] = User(email, name)
        return user

    def is_user(self, email: str) -> bool:
        return email in self.users
