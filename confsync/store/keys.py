"""Document ids for the Firestore store, without the Firestore client: the add-on API checks an
id fits before any side effect, and needs none of the client library for it."""

from __future__ import annotations

from urllib.parse import quote

__all__ = ["MAX_DOCUMENT_ID_BYTES", "doc_id", "document_id_fits"]

MAX_DOCUMENT_ID_BYTES = 1500  # Firestore's limit on a document id


def doc_id(natural: str) -> str:
    """A Firestore-safe document id that keeps ordinary ids readable."""
    escaped = quote(natural, safe="@+-_.:=,!~*'()")
    if escaped in (".", "..") or (escaped.startswith("__") and escaped.endswith("__")):
        escaped = "%" + escaped.encode().hex()
    return escaped


def document_id_fits(natural: str) -> bool:
    """Whether ``natural`` fits in a document id once escaped: checked before any side effect,
    since a write that fails after the conferencing service created a conference orphans it."""
    return len(doc_id(natural)) <= MAX_DOCUMENT_ID_BYTES  # escaped ids are ASCII
