"""Fault injection shared by the sandboxes: ``POST /_sandbox/faults``, ``DELETE /_sandbox/faults``.

A rule is JSON with every key optional except ``path``::

    {"method": "GET", "path": "<regex searched in the URL path>", "status": 503,
     "reason": "backendError", "probability": 0.5, "count": 10, "latency_ms": 0,
     "retry_after": 1}

A request that matches a live rule (same method if one is given, the regex found in its
path, a draw under ``probability``) waits ``latency_ms`` and, when the rule has a
``status``, is answered with that error instead of being served; ``count`` bounds how many
requests a rule may hit. Rules are tried in the order they were added; the first that fires
wins. A malformed rule is refused with a ValueError naming the key.
"""

from __future__ import annotations

import random
import re
import threading
from dataclasses import dataclass, field
from typing import Any

__all__ = ["FaultRule", "Faults"]

_KEYS = frozenset({"method", "path", "status", "reason", "probability", "count", "latency_ms", "retry_after"})


@dataclass
class FaultRule:
    path: re.Pattern[str]
    method: str | None = None
    status: int | None = None
    reason: str | None = None
    probability: float = 1.0
    count: int | None = None
    latency_ms: int = 0
    retry_after: int | None = None
    hits: int = field(default=0)

    @classmethod
    def from_json(cls, value: object) -> FaultRule:
        if not isinstance(value, dict):
            raise ValueError("a fault rule is a JSON object")  # noqa: TRY004 - bad input: the API maps ValueError to 400
        unknown = set(value) - _KEYS
        if unknown:
            raise ValueError(f"unknown key(s): {', '.join(sorted(unknown))}")
        if not isinstance(value.get("path"), str):
            raise ValueError("path: a regular expression string is required")  # noqa: TRY004 - as above
        try:
            pattern = re.compile(value["path"])
        except re.error as err:
            raise ValueError(f"path: not a regular expression: {err}") from err
        status = _optional_int(value, "status", 100, 599)
        probability = value.get("probability", 1.0)
        if isinstance(probability, bool) or not isinstance(probability, int | float) or not 0 <= probability <= 1:
            raise ValueError("probability: a number from 0 to 1")
        method = value.get("method")
        if method is not None and not isinstance(method, str):
            raise ValueError("method: a string such as GET")
        reason = value.get("reason")
        if reason is not None and not isinstance(reason, str):
            raise ValueError("reason: a string")
        return cls(
            path=pattern,
            method=method.upper() if method else None,
            status=status,
            reason=reason,
            probability=float(probability),
            count=_optional_int(value, "count", 0, 2**31),
            latency_ms=_optional_int(value, "latency_ms", 0, 600_000) or 0,
            retry_after=_optional_int(value, "retry_after", 0, 86_400),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "path": self.path.pattern,
            "status": self.status,
            "reason": self.reason,
            "probability": self.probability,
            "count": self.count,
            "latency_ms": self.latency_ms,
            "retry_after": self.retry_after,
            "hits": self.hits,
        }


def _optional_int(value: dict[str, Any], key: str, low: int, high: int) -> int | None:
    item = value.get(key)
    if item is None:
        return None
    if isinstance(item, bool) or not isinstance(item, int) or not low <= item <= high:
        raise ValueError(f"{key}: a whole number from {low} to {high}")
    return item


class Faults:
    """The live fault rules of one sandbox; thread-safe; seeded for reproducible runs."""

    def __init__(self, seed: int | None = None) -> None:
        self._rules: list[FaultRule] = []
        self._lock = threading.Lock()
        self._random = random.Random(seed)  # noqa: S311 - fault draws, not cryptography

    def add(self, value: object) -> FaultRule:
        rule = FaultRule.from_json(value)
        with self._lock:
            self._rules.append(rule)
        return rule

    def clear(self) -> None:
        with self._lock:
            self._rules.clear()

    def rules(self) -> list[dict[str, Any]]:
        with self._lock:
            return [rule.to_json() for rule in self._rules]

    def match(self, method: str, path: str) -> FaultRule | None:
        """The rule that fires for this request, if any (its hit is counted)."""
        with self._lock:
            for rule in self._rules:
                if rule.count is not None and rule.hits >= rule.count:
                    continue
                if rule.method and rule.method != method.upper():
                    continue
                if not rule.path.search(path):
                    continue
                if rule.probability < 1 and self._random.random() >= rule.probability:
                    continue
                rule.hits += 1
                return rule
        return None
