"""The token vault: envelope encryption of secrets at rest (refresh tokens above all).

Each secret gets a fresh random 256-bit data key. The secret is sealed with AES-256-GCM under
that key (a random 96-bit nonce), and the data key is wrapped by a key-encryption key (KEK)
that never leaves its holder. Both steps authenticate a *context* string naming the secret's
owner and purpose (``"grant:{user}:{provider}"``): a ciphertext copied to another row does not
open there. Nothing here is a cipher of our own: AES-GCM is the ``cryptography`` package's
(https://cryptography.io/en/latest/hazmat/primitives/aead/), the envelope is the one Cloud KMS
describes (https://cloud.google.com/kms/docs/envelope-encryption).

The sealed form (``Sealed``, version 1) is self-describing, compact JSON with base64 fields::

    {"v": 1, "alg": "A256GCM", "kek": "<key id>", "wk": "<wrapped data key>",
     "n": "<nonce, 12 bytes>", "ct": "<ciphertext with its 16-byte tag>"}

The data key's associated data is ``b"confsync-vault/1/data\\0" + context``; the KEK wraps with
``b"confsync-vault/1/wrap\\0" + context``. A wrong key, an unknown key id, any changed byte or
another context raises ``VaultError``: opening never returns garbage.

KEKs (``KeyEncryptionKey``): ``AesGcmKey`` holds 32 bytes in memory and wraps with AES-GCM
(12-byte nonce + ciphertext + tag); ``LocalKeyFile`` is one read from a file, created (mode
0600) when missing: the embedded default. In production the KEK belongs in Cloud KMS (an
implementation calls KMS ``encrypt``/``decrypt`` with the wrap associated data as
``additional_authenticated_data``; its key id is the CryptoKey's resource name) or in Secret
Manager (read the 32 bytes, build an ``AesGcmKey``): both fit the protocol unchanged.

Rotation: seal with a new KEK and keep the old ones for opening, ``Vault(new, previous=[old])``;
``Vault.rewrap`` moves a sealed secret to the current KEK without touching its ciphertext.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import json
import os
import secrets
import stat
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from confsync.errors import ConfigError, PermanentError
from confsync.settings import Secret, Settings, default_vault_key_file

__all__ = [
    "KEY_BYTES",
    "SEALED_VERSION",
    "AesGcmKey",
    "KeyEncryptionKey",
    "LocalKeyFile",
    "Sealed",
    "Vault",
    "VaultError",
    "open_vault",
]

KEY_BYTES = 32  # AES-256, for data keys and local KEKs alike
SEALED_VERSION = 1
_ALGORITHM = "A256GCM"
_NONCE_BYTES = 12
_TAG_BYTES = 16
_DATA_AAD = b"confsync-vault/1/data\0"
_WRAP_AAD = b"confsync-vault/1/wrap\0"
_KEY_FILE_VARIABLE = "CONFSYNC_VAULT_KEY_FILE"


class VaultError(PermanentError):
    """A sealed secret that cannot be opened (wrong key, tampered, another owner's) or read."""


class KeyEncryptionKey(Protocol):
    """What wraps data keys. ``key_id`` is written into every sealed record, so a vault holding
    several KEKs (rotation) knows which one opens it; it must never change for a given key."""

    @property
    def key_id(self) -> str: ...

    def wrap(self, data_key: bytes, context: bytes) -> bytes:
        """The data key encrypted and authenticated together with ``context``."""
        ...

    def unwrap(self, wrapped: bytes, context: bytes) -> bytes:
        """The data key back; raises VaultError if this key did not wrap it for ``context``."""
        ...


class AesGcmKey:
    """A KEK held in memory: 32 bytes that wrap data keys with AES-256-GCM.

    The default key id is a fingerprint of the key (a domain-separated SHA-256), so the same
    key always has the same id and a rotated-out key is recognised by its bytes alone.
    """

    def __init__(self, key: bytes, *, key_id: str | None = None) -> None:
        if len(key) != KEY_BYTES:
            raise VaultError(f"a key-encryption key is {KEY_BYTES} bytes, not {len(key)}")
        self._aead = AESGCM(key)
        self._root = key
        self._key_id = key_id or "local:" + hashlib.sha256(b"confsync-vault/kek-id\0" + key).hexdigest()[:16]

    def __repr__(self) -> str:
        return f"{type(self).__name__}(key_id={self._key_id!r})"

    @property
    def key_id(self) -> str:
        return self._key_id

    def derive(self, purpose: str) -> bytes:
        """A 32-byte key for another use (``purpose`` names it), independent of this one (HKDF-SHA256)."""
        hkdf = HKDF(
            algorithm=hashes.SHA256(), length=KEY_BYTES, salt=None, info=b"confsync-derived/1\0" + purpose.encode()
        )
        return hkdf.derive(self._root)

    def wrap(self, data_key: bytes, context: bytes) -> bytes:
        nonce = secrets.token_bytes(_NONCE_BYTES)
        return nonce + self._aead.encrypt(nonce, data_key, _WRAP_AAD + context)

    def unwrap(self, wrapped: bytes, context: bytes) -> bytes:
        if len(wrapped) < _NONCE_BYTES + _TAG_BYTES:
            raise VaultError("the wrapped data key is cut short")
        try:
            return self._aead.decrypt(wrapped[:_NONCE_BYTES], wrapped[_NONCE_BYTES:], _WRAP_AAD + context)
        except InvalidTag as err:
            raise VaultError(
                f"key {self._key_id} does not unwrap this data key (another key, owner or a changed byte)"
            ) from err


class LocalKeyFile(AesGcmKey):
    """The embedded default KEK: exactly 32 raw bytes in a file only its owner may read.

    A missing file is created (``create=True``): 32 random bytes, mode 0600, in a directory made
    0700 if it is new, written to a temporary file and linked into place so that two processes
    starting together agree on one key. A file that group or others may read or write, that is
    not a regular file, or that does not hold exactly 32 bytes is refused (ConfigError naming
    CONFSYNC_VAULT_KEY_FILE). Pass ``create=False`` wherever several machines share one store
    (Firestore): each would otherwise make a key of its own, and none could open the others'
    secrets. Losing this file loses every secret sealed under it: back it up.
    """

    def __init__(self, path: Path, *, create: bool = True) -> None:
        self.path = path
        if create and not path.exists():
            _create_key_file(path)
        super().__init__(_read_key_file(path))


def _create_key_file(path: Path) -> None:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(descriptor, "wb") as out:
            out.write(secrets.token_bytes(KEY_BYTES))
            out.flush()
            os.fsync(out.fileno())
        with contextlib.suppress(FileExistsError):  # another process made it first: use theirs
            os.link(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)  # the key must survive a crash: every secret depends on it
    finally:
        os.close(directory)


def _read_key_file(path: Path) -> bytes:
    try:
        status = path.stat()
    except FileNotFoundError as err:
        raise ConfigError(f"no vault key file at {path}", variable=_KEY_FILE_VARIABLE) from err
    if not stat.S_ISREG(status.st_mode):
        raise ConfigError(f"the vault key {path} is not a regular file", variable=_KEY_FILE_VARIABLE)
    if status.st_mode & 0o077:
        raise ConfigError(
            f"the vault key {path} is open to group or others (mode {stat.S_IMODE(status.st_mode):04o}):"
            f" refused; `chmod 600 {path}` if it has not leaked",
            variable=_KEY_FILE_VARIABLE,
        )
    key = path.read_bytes()
    if len(key) != KEY_BYTES:
        raise ConfigError(
            f"the vault key {path} holds {len(key)} bytes, not {KEY_BYTES} raw random bytes",
            variable=_KEY_FILE_VARIABLE,
        )
    return key


@dataclass(frozen=True, slots=True)
class Sealed:
    """A sealed secret (format version 1, see the module docstring); only ids show in its repr."""

    kek_id: str
    wrapped_key: bytes = field(repr=False)
    nonce: bytes = field(repr=False)
    ciphertext: bytes = field(repr=False)
    version: int = SEALED_VERSION

    def encode(self) -> str:
        """The record as compact JSON text, ready to store."""
        record = {
            "v": self.version,
            "alg": _ALGORITHM,
            "kek": self.kek_id,
            "wk": _b64(self.wrapped_key),
            "n": _b64(self.nonce),
            "ct": _b64(self.ciphertext),
        }
        return json.dumps(record, separators=(",", ":"))

    @classmethod
    def decode(cls, text: str) -> Sealed:
        """Read a stored record; anything but a well-formed version-1 record raises VaultError."""
        try:
            record = json.loads(text)
        except ValueError as err:
            raise VaultError("not a sealed record: not JSON") from err
        if not isinstance(record, dict) or set(record) != {"v", "alg", "kek", "wk", "n", "ct"}:
            raise VaultError("not a sealed record: wrong fields")
        if record["v"] != SEALED_VERSION or record["alg"] != _ALGORITHM:
            raise VaultError(f"unknown sealed record version {record['v']!r} / algorithm {record['alg']!r}")
        if not isinstance(record["kek"], str) or not record["kek"]:
            raise VaultError("not a sealed record: no key id")
        sealed = cls(record["kek"], _unb64(record["wk"], "wk"), _unb64(record["n"], "n"), _unb64(record["ct"], "ct"))
        if len(sealed.nonce) != _NONCE_BYTES or len(sealed.ciphertext) < _TAG_BYTES:
            raise VaultError("not a sealed record: nonce or ciphertext of the wrong size")
        return sealed


class Vault:
    """Seals secrets under ``key`` and opens what ``key`` or any ``previous`` KEK sealed."""

    def __init__(self, key: KeyEncryptionKey, *, previous: Iterable[KeyEncryptionKey] = ()) -> None:
        self._key = key
        self._keys = {old.key_id: old for old in previous}
        self._keys[key.key_id] = key

    @property
    def key_id(self) -> str:
        """The id of the KEK new secrets are sealed under."""
        return self._key.key_id

    def seal(self, secret: Secret, context: str) -> Sealed:
        """``secret`` under a fresh data key, bound to ``context`` (its owner and purpose)."""
        data_key = AESGCM.generate_key(bit_length=8 * KEY_BYTES)
        nonce = secrets.token_bytes(_NONCE_BYTES)
        ciphertext = AESGCM(data_key).encrypt(nonce, secret.reveal().encode(), _DATA_AAD + context.encode())
        return Sealed(self._key.key_id, self._key.wrap(data_key, context.encode()), nonce, ciphertext)

    def derive(self, purpose: str) -> bytes:
        """A key for ``purpose`` derived from the current KEK (VaultError if that KEK cannot derive:
        a KMS key never leaves KMS, so a key held elsewhere is needed for that purpose)."""
        derive = getattr(self._key, "derive", None)
        if derive is None:
            raise VaultError(f"key {self._key.key_id} cannot derive other keys")
        key: bytes = derive(purpose)
        return key

    def open(self, sealed: Sealed, context: str) -> Secret:
        """The secret back, or VaultError: unknown KEK, another context, or a changed byte."""
        _, plain = self._open(sealed, context)
        try:
            return Secret(plain.decode())
        except UnicodeDecodeError as err:
            raise VaultError("the sealed secret is not text") from err

    def rewrap(self, sealed: Sealed, context: str) -> Sealed:
        """``sealed`` with its data key wrapped by the current KEK (the ciphertext unchanged),
        after checking that it opens; already current, it comes back as it is."""
        data_key, _ = self._open(sealed, context)
        if sealed.kek_id == self._key.key_id:
            return sealed
        return replace(sealed, kek_id=self._key.key_id, wrapped_key=self._key.wrap(data_key, context.encode()))

    def _open(self, sealed: Sealed, context: str) -> tuple[bytes, bytes]:
        kek = self._keys.get(sealed.kek_id)
        if kek is None:
            raise VaultError(f"sealed under key {sealed.kek_id}, which this vault does not hold")
        data_key = kek.unwrap(sealed.wrapped_key, context.encode())
        if len(data_key) != KEY_BYTES:
            raise VaultError("the unwrapped data key has the wrong size")
        try:
            plain = AESGCM(data_key).decrypt(sealed.nonce, sealed.ciphertext, _DATA_AAD + context.encode())
        except InvalidTag as err:
            raise VaultError("the sealed secret does not open: sealed for another owner, or changed") from err
        return data_key, plain


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(value: object, name: str) -> bytes:
    if not isinstance(value, str):
        raise VaultError(f"not a sealed record: {name} is not text")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as err:
        raise VaultError(f"not a sealed record: {name} is not base64") from err


def open_vault(settings: Settings) -> Vault:
    """The vault the settings describe: ``CONFSYNC_VAULT_KEY`` (Secret Manager) or else the key
    file, created when missing only beside a SQLite store (a shared store needs one key for all)."""
    if settings.vault_key is not None:
        try:
            key = base64.b64decode(settings.vault_key.reveal(), validate=True)
        except (binascii.Error, ValueError) as err:
            raise ConfigError("not base64", variable="CONFSYNC_VAULT_KEY") from err
        if len(key) != KEY_BYTES:
            raise ConfigError(f"{len(key)} bytes; a vault key is {KEY_BYTES}", variable="CONFSYNC_VAULT_KEY")
        return Vault(AesGcmKey(key))
    path = settings.vault_key_file or default_vault_key_file(settings.store_url)
    if not path:
        raise ConfigError(
            "the token vault needs CONFSYNC_VAULT_KEY or CONFSYNC_VAULT_KEY_FILE", variable="CONFSYNC_VAULT_KEY"
        )
    local = settings.store_url.startswith("sqlite:")
    return Vault(LocalKeyFile(Path(path), create=local))
