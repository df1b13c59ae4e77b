"""Google's partial responses: the ``fields`` parameter of events.list, events.instances and
events.get (https://developers.google.com/calendar/api/guides/performance#partial-response).

``fields`` is a comma-separated list of selections: ``a/b`` selects ``b`` within ``a``,
``a(b,c)`` selects ``b`` and ``c`` within ``a``, ``*`` every field; a selection inside an array
applies to each element. A listing's items are stored as JSON bytes, so each item's projection
is kept (per ``fields``) for the next listing that asks the same.

Where it differs from Google: a name the resource does not carry selects nothing (Google answers
400 for a name the resource type does not know); other methods ignore ``fields``.
"""

from __future__ import annotations

import json
import re
from typing import Any

from sandbox.calendar.errors import GoogleError

__all__ = ["Partials", "Selection", "parse_fields", "project"]

# A field name and the fields below it; None below a name: the whole field.
Selection = dict[str, "Selection | None"]

_NAME = re.compile(r"[A-Za-z0-9_*@.$-]+")
_KEPT = 200_000  # projected items kept; all are dropped past this


def parse_fields(text: str) -> Selection:
    """The selection ``text`` writes; a 400 ``invalidParameter`` if it is not one."""
    parser = _Parser(text.replace(" ", ""))
    selection = parser.selection()
    if parser.pos != len(parser.text):
        raise parser.invalid()
    return selection


def project(value: Any, selection: Selection | None) -> Any:
    """What of ``value`` the selection selects (None: all of it)."""
    if selection is None:
        return value
    if isinstance(value, list):
        return [project(item, selection) for item in value]
    if not isinstance(value, dict):
        return value
    every = "*" in selection
    return {
        key: project(item, selection[key] if key in selection else selection["*"])
        for key, item in value.items()
        if key in selection or every
    }


class Partials:
    """Listings' items projected by ``fields``, each kept for the next listing that asks the same."""

    def __init__(self) -> None:
        self._kept: dict[tuple[str, bytes], bytes] = {}

    def items(self, fields: str, selection: Selection | None, items: list[bytes]) -> list[bytes]:
        if selection is None:
            return items
        if len(self._kept) > _KEPT:
            self._kept.clear()
        projected = []
        for item in items:
            found = self._kept.get((fields, item))
            if found is None:
                shaped = project(json.loads(item), selection)
                found = self._kept[fields, item] = json.dumps(
                    shaped, separators=(",", ":"), ensure_ascii=False
                ).encode()
            projected.append(found)
        return projected


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def invalid(self) -> GoogleError:
        return GoogleError(400, "invalidParameter", f"Invalid field selection {self.text}", location="fields")

    def _peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def _name(self) -> str:
        match = _NAME.match(self.text, self.pos)
        if match is None:
            raise self.invalid()
        self.pos = match.end()
        return match.group()

    def selection(self) -> Selection:
        selected: Selection = {}
        while True:
            self._term(selected)
            if self._peek() != ",":
                return selected
            self.pos += 1

    def _term(self, selected: Selection) -> None:
        path = [self._name()]
        while self._peek() == "/":
            self.pos += 1
            path.append(self._name())
        below: Selection | None = None
        if self._peek() == "(":
            self.pos += 1
            below = self.selection()
            if self._peek() != ")":
                raise self.invalid()
            self.pos += 1
        for name in reversed(path[1:]):
            below = {name: below}
        first = path[0]
        selected[first] = _merged(selected[first], below) if first in selected else below


def _merged(one: Selection | None, other: Selection | None) -> Selection | None:
    if one is None or other is None:
        return None  # the whole field, whatever else was asked of it
    merged = dict(one)
    for name, below in other.items():
        merged[name] = _merged(merged[name], below) if name in merged else below
    return merged
