"""Grants: refresh tokens go into the store sealed and come out as Secrets; rotation and
revocation are compare-and-set on the version read; nothing of a token reaches a log line."""

from __future__ import annotations

import io
import json
import logging
import threading
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import structlog

from accounts.grants import Grants, grant_context
from accounts.vault import AesGcmKey, Sealed, Vault, VaultError
from confsync.logs import configure_logging
from confsync.settings import Secret, Settings
from confsync.store import GrantStatus, OAuthProvider, User
from confsync.store.sqlite import SqliteStore

T0 = datetime(2026, 11, 24, 18, 0, tzinfo=UTC)
GOOGLE, VENDOR = OAuthProvider.GOOGLE, OAuthProvider.VENDOR
TOKEN = Secret("1//0first-refresh-token-of-alice")
SCOPES = ("https://www.googleapis.com/auth/calendar.events", "openid", "openid")


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        self.now += timedelta(seconds=1)
        return self.now


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqliteStore]:
    backend = SqliteStore(tmp_path / "state.sqlite")
    yield backend
    backend.close()


@pytest.fixture
def grants(store: SqliteStore) -> Grants:
    return Grants(store, Vault(AesGcmKey(b"k" * 32)), clock=Clock())


def test_a_saved_token_is_stored_sealed_and_read_back_as_a_secret(grants: Grants, store: SqliteStore) -> None:
    saved = grants.save("Alice@Example.com ", GOOGLE, TOKEN, SCOPES)
    assert (saved.user, saved.version, saved.status) == ("alice@example.com", 1, GrantStatus.ACTIVE)
    assert saved.scopes == ("https://www.googleapis.com/auth/calendar.events", "openid")
    assert grants.refresh_token("ALICE@example.com", GOOGLE) == TOKEN
    assert grants.refresh_token("alice@example.com", VENDOR) is None
    stored = store.get_grant("alice@example.com", GOOGLE)
    assert stored == saved
    assert TOKEN.reveal() not in stored.sealed_token.reveal()
    raw = store._db().execute("SELECT sealed_token FROM grants").fetchone()[0]
    assert TOKEN.reveal() not in raw
    assert Sealed.decode(raw).kek_id.startswith("local:")


def test_a_sealed_token_moved_to_another_users_row_does_not_open(grants: Grants, store: SqliteStore) -> None:
    alice = grants.save("alice@example.com", GOOGLE, TOKEN, SCOPES)
    grants.save("mallory@example.com", GOOGLE, Secret("1//0mallory"), SCOPES)
    mallory = store.get_grant("mallory@example.com", GOOGLE)
    assert mallory is not None
    assert store.put_grant(replace(mallory, sealed_token=alice.sealed_token), expected_version=mallory.version)
    with pytest.raises(VaultError):
        grants.refresh_token("mallory@example.com", GOOGLE)
    assert grant_context("Alice@Example.com", GOOGLE) == "grant:alice@example.com:google"


def test_a_reconnect_replaces_the_grant_and_reactivates_it(grants: Grants) -> None:
    first = grants.save("alice@example.com", VENDOR, TOKEN, ["meetings"], account_id="v-1", account_email="a@v.example")
    assert grants.mark_revoked("alice@example.com", VENDOR, first.version)
    assert grants.refresh_token("alice@example.com", VENDOR) is None, "a revoked grant gives no token"
    again = grants.save("alice@example.com", VENDOR, Secret("vendor-token-2"), ["meetings"])
    assert (again.version, again.status, again.account_id) == (3, GrantStatus.ACTIVE, None)
    assert grants.refresh_token("alice@example.com", VENDOR) == Secret("vendor-token-2")


def test_a_rotation_stores_the_successor_only_against_the_version_read(grants: Grants) -> None:
    saved = grants.save("alice@example.com", VENDOR, TOKEN, ["meetings"])
    rotated = grants.rotate("alice@example.com", VENDOR, saved.version, Secret("successor-1"))
    assert rotated is not None
    assert rotated.version == 2
    assert rotated.updated_at is not None
    assert saved.updated_at is not None
    assert rotated.updated_at > saved.updated_at
    assert grants.rotate("alice@example.com", VENDOR, saved.version, Secret("late-successor")) is None
    assert grants.refresh_token("alice@example.com", VENDOR) == Secret("successor-1")
    assert grants.rotate("nobody@example.com", VENDOR, 1, Secret("x")) is None


def test_two_workers_rotating_at_once_store_exactly_one_successor(grants: Grants) -> None:
    saved = grants.save("alice@example.com", VENDOR, TOKEN, ["meetings"])
    start = threading.Barrier(8)
    results: dict[int, bool] = {}

    def rotate(n: int) -> None:
        start.wait()
        results[n] = grants.rotate("alice@example.com", VENDOR, saved.version, Secret(f"successor-{n}")) is not None

    threads = [threading.Thread(target=rotate, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    (winner,) = [n for n, won in results.items() if won]
    assert grants.refresh_token("alice@example.com", VENDOR) == Secret(f"successor-{winner}")
    current = grants.get("alice@example.com", VENDOR)
    assert current is not None
    assert current.version == 2


def test_an_old_tokens_failure_does_not_revoke_a_newer_grant(grants: Grants) -> None:
    old = grants.save("alice@example.com", VENDOR, TOKEN, ["meetings"])
    grants.save("alice@example.com", VENDOR, Secret("after-reconnect"), ["meetings"])
    assert not grants.mark_revoked("alice@example.com", VENDOR, old.version)
    assert grants.refresh_token("alice@example.com", VENDOR) == Secret("after-reconnect")
    current = grants.get("alice@example.com", VENDOR)
    assert current is not None
    assert grants.mark_revoked("alice@example.com", VENDOR, current.version)
    assert not grants.mark_revoked("alice@example.com", VENDOR, current.version + 1), "already revoked"


def test_forget_removes_the_user_and_every_grant(grants: Grants, store: SqliteStore) -> None:
    store.ensure_user(User("alice@example.com", "example.com", T0))
    grants.save("alice@example.com", GOOGLE, TOKEN, SCOPES)
    grants.save("alice@example.com", VENDOR, Secret("vendor"), ["meetings"])
    grants.save("bob@example.com", GOOGLE, Secret("1//0bob"), SCOPES)
    grants.forget("Alice@example.com")
    assert store.get_user("alice@example.com") is None
    assert [g.user for g in store.list_grants()] == ["bob@example.com"]


def test_an_old_vault_key_still_opens_grants_after_rotation(store: SqliteStore) -> None:
    old, new = AesGcmKey(b"o" * 32), AesGcmKey(b"n" * 32)
    Grants(store, Vault(old), clock=Clock()).save("alice@example.com", GOOGLE, TOKEN, SCOPES)
    assert Grants(store, Vault(new, previous=[old])).refresh_token("alice@example.com", GOOGLE) == TOKEN
    with pytest.raises(VaultError, match="does not hold"):
        Grants(store, Vault(new)).refresh_token("alice@example.com", GOOGLE)


# -- logs -------------------------------------------------------------------------------------


@pytest.fixture
def json_lines() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    configure_logging(Settings(log_format="json", log_level="debug"), stream=stream)
    yield stream
    structlog.contextvars.clear_contextvars()
    structlog.reset_defaults()
    logging.getLogger().handlers.clear()


def test_a_grant_shows_no_token_in_its_repr(grants: Grants) -> None:
    saved = grants.save("alice@example.com", GOOGLE, TOKEN, SCOPES)
    shown = repr(saved) + str(saved)
    assert saved.sealed_token.reveal() not in shown
    assert "Secret('********')" in shown


def test_no_token_sealed_or_not_reaches_a_log_line(grants: Grants, json_lines: io.StringIO) -> None:
    saved = grants.save("alice@example.com", GOOGLE, TOKEN, SCOPES)
    sealed_text = saved.sealed_token.reveal()
    ciphertext = json.loads(sealed_text)["ct"]
    log = structlog.get_logger("confsync.test")
    log.info("grant", grant=saved, grants=[saved], token=TOKEN, refresh_token=TOKEN.reveal())
    log.info("sealed", sealed=Sealed.decode(sealed_text), sealed_token=sealed_text)
    message = f"got {saved!r} and {TOKEN}"  # a careless line formats the objects itself
    log.info(message)
    grants.rotate("alice@example.com", GOOGLE, saved.version, Secret("1//0successor-token-of-alice"))
    output = json_lines.getvalue()
    assert output.count("\n") >= 4
    assert "alice@example.com" in output, "the lines were written"
    for leaked in (TOKEN.reveal(), "1//0successor", sealed_text, ciphertext):
        assert leaked not in output
