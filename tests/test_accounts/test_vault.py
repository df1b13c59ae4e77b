"""The token vault: secrets sealed with AES-GCM under per-secret data keys, bound to their owner;
anything wrong (key, byte, owner, key file) is refused loudly, never opened into garbage."""

from __future__ import annotations

import base64
import json
import os
import stat
import threading
from dataclasses import replace
from pathlib import Path

import pytest

from accounts.vault import KEY_BYTES, AesGcmKey, LocalKeyFile, Sealed, Vault, VaultError
from confsync.errors import ConfigError
from confsync.settings import Secret, Settings

CT = "AAAAAAAAAAAAAAAAAAAAAA=="  # 16 bytes: a tag's length
NONCE = "AAAAAAAAAAAAAAAA"  # 12 bytes
TOKEN = Secret("1//0refresh-token-of-alice-at-google")
CONTEXT = "grant:alice@example.com:google"


def key(n: int) -> AesGcmKey:
    return AesGcmKey(bytes([n]) * KEY_BYTES)


def flip(data: bytes, at: int = 0) -> bytes:
    return data[:at] + bytes([data[at] ^ 0x01]) + data[at + 1 :]


def test_a_sealed_secret_opens_to_itself_and_only_there() -> None:
    vault = Vault(key(1))
    sealed = vault.seal(TOKEN, CONTEXT)
    assert vault.open(sealed, CONTEXT) == TOKEN
    assert TOKEN.reveal().encode() not in sealed.ciphertext
    again = vault.seal(TOKEN, CONTEXT)
    assert (again.nonce, again.wrapped_key, again.ciphertext) != (sealed.nonce, sealed.wrapped_key, sealed.ciphertext)


def test_the_stored_form_is_versioned_self_describing_json() -> None:
    vault = Vault(key(1))
    text = vault.seal(TOKEN, CONTEXT).encode()
    record = json.loads(text)
    assert set(record) == {"v", "alg", "kek", "wk", "n", "ct"}
    assert (record["v"], record["alg"], record["kek"]) == (1, "A256GCM", vault.key_id)
    assert len(base64.b64decode(record["n"])) == 12
    assert TOKEN.reveal() not in text
    assert vault.open(Sealed.decode(text), CONTEXT) == TOKEN


def test_a_sealed_record_never_shows_its_bytes() -> None:
    sealed = Vault(key(1)).seal(TOKEN, CONTEXT)
    shown = repr(sealed) + str(sealed)
    assert base64.b64encode(sealed.ciphertext).decode() not in shown
    assert "ciphertext" not in shown
    assert "wrapped_key" not in shown


def test_another_key_does_not_open_it() -> None:
    sealed = Vault(key(1)).seal(TOKEN, CONTEXT)
    with pytest.raises(VaultError, match="does not hold"):
        Vault(key(2)).open(sealed, CONTEXT)
    impostor = AesGcmKey(bytes([2]) * KEY_BYTES, key_id=key(1).key_id)  # claims the right id
    with pytest.raises(VaultError, match="does not unwrap"):
        Vault(impostor).open(sealed, CONTEXT)


@pytest.mark.parametrize("part", ["nonce", "ciphertext", "wrapped_key"])
@pytest.mark.parametrize("at", [0, -1])
def test_a_changed_byte_anywhere_is_refused(part: str, at: int) -> None:
    vault = Vault(key(1))
    sealed = vault.seal(TOKEN, CONTEXT)
    original: bytes = getattr(sealed, part)
    tampered = replace(sealed, **{part: flip(original, at % len(original))})
    with pytest.raises(VaultError):
        vault.open(tampered, CONTEXT)


def test_a_ciphertext_moved_to_another_owner_is_refused() -> None:
    vault = Vault(key(1))
    sealed = vault.seal(TOKEN, CONTEXT)
    for elsewhere in ("grant:mallory@example.com:google", "grant:alice@example.com:vendor", ""):
        with pytest.raises(VaultError):
            vault.open(sealed, elsewhere)
    bob = vault.seal(Secret("bob's token"), "grant:bob@example.com:google")
    spliced = replace(bob, nonce=sealed.nonce, ciphertext=sealed.ciphertext)  # alice's secret, bob's key
    with pytest.raises(VaultError):
        vault.open(spliced, "grant:bob@example.com:google")


@pytest.mark.parametrize(
    "text",
    [
        "",
        "not json",
        "[]",
        '{"v": 1}',
        '{"v": 2, "alg": "A256GCM", "kek": "k", "wk": "", "n": "", "ct": ""}',
        '{"v": 1, "alg": "A128CBC", "kek": "k", "wk": "", "n": "", "ct": ""}',
        f'{{"v": 1, "alg": "A256GCM", "kek": "k", "wk": "!!", "n": "{NONCE}", "ct": "{CT}"}}',
        f'{{"v": 1, "alg": "A256GCM", "kek": "k", "wk": "AA==", "n": "AA==", "ct": "{CT}"}}',
        f'{{"v": 1, "alg": "A256GCM", "kek": "", "wk": "AA==", "n": "{NONCE}", "ct": "{CT}"}}',
        f'{{"v": 1, "alg": "A256GCM", "kek": "k", "wk": "AA==", "n": "{NONCE}", "ct": "AA=="}}',
        f'{{"v": "1", "alg": "A256GCM", "kek": "k", "wk": "AA==", "n": "{NONCE}", "ct": "{CT}"}}',
        f'{{"v": 1, "alg": "A256GCM", "kek": "k", "wk": 7, "n": "{NONCE}", "ct": "{CT}"}}',
    ],
)
def test_a_malformed_record_is_refused_before_any_decryption(text: str) -> None:
    with pytest.raises(VaultError):
        Sealed.decode(text)


def test_an_old_key_still_opens_what_it_sealed_after_rotation() -> None:
    old, new = key(1), key(2)
    sealed_before = Vault(old).seal(TOKEN, CONTEXT)
    rotated = Vault(new, previous=[old])
    assert rotated.key_id == new.key_id
    assert rotated.open(sealed_before, CONTEXT) == TOKEN
    assert rotated.seal(TOKEN, CONTEXT).kek_id == new.key_id, "new secrets go under the new key"

    moved = rotated.rewrap(sealed_before, CONTEXT)
    assert (moved.kek_id, moved.ciphertext, moved.nonce) == (new.key_id, sealed_before.ciphertext, sealed_before.nonce)
    assert Vault(new).open(moved, CONTEXT) == TOKEN, "rewrapped: the old key is no longer needed"
    assert rotated.rewrap(moved, CONTEXT) is moved
    with pytest.raises(VaultError):
        rotated.rewrap(sealed_before, "grant:mallory@example.com:google")


def test_a_key_id_is_a_stable_fingerprint_of_the_key() -> None:
    assert key(1).key_id == key(1).key_id != key(2).key_id
    assert key(1).key_id.startswith("local:")
    assert bytes([1]).hex() * 4 not in key(1).key_id
    assert "key_id" in repr(key(1))
    with pytest.raises(VaultError, match="32 bytes"):
        AesGcmKey(b"short")


# -- the local key file -----------------------------------------------------------------------


def test_a_missing_key_file_is_made_readable_by_its_owner_only(tmp_path: Path) -> None:
    path = tmp_path / "new-dir" / "vault.key"
    made = LocalKeyFile(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert len(path.read_bytes()) == KEY_BYTES
    assert [p.name for p in path.parent.iterdir()] == ["vault.key"], "no temporary file left behind"
    sealed = Vault(made).seal(TOKEN, CONTEXT)
    assert Vault(LocalKeyFile(path)).open(sealed, CONTEXT) == TOKEN, "read again, the same key"


def test_processes_starting_together_agree_on_one_key(tmp_path: Path) -> None:
    path = tmp_path / "vault.key"
    start = threading.Barrier(6)
    ids: list[str] = []

    def open_key() -> None:
        start.wait()
        ids.append(LocalKeyFile(path).key_id)

    threads = [threading.Thread(target=open_key) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(ids)) == 1
    assert len(ids) == 6


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o620, 0o666])
def test_a_key_file_others_may_read_or_write_is_refused(tmp_path: Path, mode: int) -> None:
    path = tmp_path / "vault.key"
    path.write_bytes(os.urandom(KEY_BYTES))
    path.chmod(mode)
    with pytest.raises(ConfigError, match="open to group or others") as caught:
        LocalKeyFile(path)
    assert caught.value.variable == "CONFSYNC_VAULT_KEY_FILE"
    assert f"{mode:04o}" in str(caught.value)


@pytest.mark.parametrize("size", [0, 16, 31, 33, 44])
def test_a_key_file_of_the_wrong_size_is_refused(tmp_path: Path, size: int) -> None:
    path = tmp_path / "vault.key"
    path.write_bytes(b"k" * size)
    path.chmod(0o600)
    with pytest.raises(ConfigError, match=f"holds {size} bytes"):
        LocalKeyFile(path)


def test_a_key_file_is_never_made_where_creating_is_not_allowed(tmp_path: Path) -> None:
    path = tmp_path / "vault.key"
    with pytest.raises(ConfigError, match="no vault key file"):
        LocalKeyFile(path, create=False)
    assert not path.exists()
    path.mkdir()
    with pytest.raises(ConfigError, match="not a regular file"):
        LocalKeyFile(path)


# -- the setting ------------------------------------------------------------------------------


def test_the_key_file_defaults_to_beside_the_sqlite_store() -> None:
    settings = Settings.from_env({"HOME": "/home/ada"})
    assert settings.vault_key_file == "/home/ada/.local/share/confsync/vault.key"
    assert Settings.from_env({"CONFSYNC_STORE_URL": "sqlite:///state/c.sqlite"}).vault_key_file == "state/vault.key"
    assert "vault_key_file" not in settings.from_environment


def test_a_shared_store_gets_no_local_key_file_unless_one_is_named() -> None:
    assert Settings.from_env({"CONFSYNC_STORE_URL": "firestore://prod"}).vault_key_file is None
    named = Settings.from_env({"CONFSYNC_STORE_URL": "firestore://prod", "CONFSYNC_VAULT_KEY_FILE": "/run/key"})
    assert named.vault_key_file == "/run/key"
    listed = {info.env: info for info in named.describe()}
    assert listed["CONFSYNC_VAULT_KEY_FILE"].shown == "/run/key"
    assert listed["CONFSYNC_VAULT_KEY_FILE"].help.endswith(".")
