"""Retention in the infrastructure: Firestore's TTL policies delete the records the store gives
an expiry (links, conferences), and no dead letter, attendee list and all, is kept longer than
its holding subscription keeps it for a replay."""

from __future__ import annotations

import re

from tests_support.terraform import ROOT, Parsed, resources, variables

from confsync.settings import Settings
from confsync.transport.topology import DEAD_LETTER_RETENTION_S, topology


def test_firestore_deletes_expired_links_and_conferences_on_its_own(parsed: Parsed) -> None:
    ttl = resources(parsed)["google_firestore_field.retention_ttl"]
    assert ttl["for_each"] == '${toset(["links", "conferences"])}'
    assert ttl["database"] == "${google_firestore_database.confsync.name}"
    assert (ttl["collection"], ttl["field"]) == ("${each.value}", "expires_at")
    assert ttl["ttl_config"], "a TTL policy on the field"
    (index,) = ttl["index_config"]
    assert "indexes" not in index, "not indexed: nothing queries it, and it grows with time"
    # the collections and field the store writes (no prefix in production)
    source = (ROOT / "confsync" / "store" / "firestore.py").read_text(encoding="utf-8")
    assert 'collection("links")' in source
    assert 'collection(f"{prefix}conferences")' in source
    assert '"expires_at": link.expires_at' in source
    assert '"expires_at": applied.expires_at' in source


def test_no_dead_letter_outlives_the_week_its_replay_needs(parsed: Parsed) -> None:
    topic = resources(parsed)["google_pubsub_topic.confsync"]
    dead_branch = re.search(
        r'contains\(local\.dead_letter_topics, each\.value\) \? "(\d+)s"', topic["message_retention_duration"]
    )
    assert dead_branch is not None
    assert int(dead_branch.group(1)) == DEAD_LETTER_RETENTION_S == 7 * 86400
    subscriptions = variables(parsed)["pubsub"]["default"]["subscriptions"]
    holding = {name: spec for name, spec in subscriptions.items() if spec["dead_letter_topic"] is None}
    assert set(holding) == {"calendar-changes-dead-hold", "conference-commands-dead-hold", "channel-work-dead-hold"}
    assert {spec["retention_seconds"] for spec in holding.values()} == {DEAD_LETTER_RETENTION_S}
    bootstrapped = topology(Settings())  # what `confsync pubsub bootstrap` creates on the emulator
    assert {s.retention_s for s in bootstrapped.subscriptions if s.dead_letter_topic is None} == {
        DEAD_LETTER_RETENTION_S
    }
