"""The root key at rest: a key-encryption key (KEK) from a 0600 key file, and AES-256-GCM sealing of a private key.

Sealed blob: b"MAK1" | kek_id (8 bytes) | nonce (12 bytes) | AES-256-GCM(PKCS#8 DER of the key, aad=context) + tag.
`kek_id` is the first 8 bytes of SHA-256 over a fixed label and the KEK: it tells "sealed with another key file"
apart from "damaged" without revealing anything usable about the KEK. `context` binds a blob to what it belongs to
(the store passes the root's serial), so a sealed key moved onto another record does not open.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import stat
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from meshactors.errors import ConfigError, InvalidArgument

MAGIC = b"MAK1"
KEK_BYTES = 32
KEK_ID_BYTES = 8
NONCE_BYTES = 12
MAX_SEALED_BYTES = 4096  # a P-256 PKCS#8 key is ~140 bytes; anything far larger is not ours
KEY_FILE_MAX_BYTES = 256
_ID_LABEL = b"meshactors kek id v1\x00"


@dataclass(frozen=True, slots=True)
class Kek:
    """A 256-bit key-encryption key and where it came from (`source`, named in errors). Its bytes never print."""

    key: bytes = field(repr=False)
    source: str = "<memory>"

    def __post_init__(self) -> None:
        if not isinstance(self.key, bytes) or len(self.key) != KEK_BYTES:
            raise ConfigError(f"key file {self.source}: the key must be {KEK_BYTES} bytes")

    @property
    def kek_id(self) -> str:
        return hashlib.sha256(_ID_LABEL + self.key).digest()[:KEK_ID_BYTES].hex()

    @classmethod
    def generate(cls, source: str = "<memory>") -> Kek:
        return cls(secrets.token_bytes(KEK_BYTES), source)


def write_key_file(path: Path) -> Kek:
    """Create a new key file (0600, 64 hex digits and a newline); ConfigError if it exists already."""
    kek = Kek.generate(str(path))
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise ConfigError(
            f"key file {path} already exists; refusing to overwrite a key the CA may be sealed with"
        ) from None
    except OSError as exc:
        raise ConfigError(f"key file {path}: cannot create it: {exc.strerror}") from exc
    with os.fdopen(fd, "w", encoding="ascii") as fh:
        fh.write(kek.key.hex() + "\n")
    return kek


def read_key_file(path: Path) -> Kek:
    """Load the KEK from `path`. ConfigError naming the path when it is missing, readable by group/others, or not
    64 hex digits."""
    try:
        fd = os.open(path, os.O_RDONLY)  # a symlink is followed (mounted secrets are links); the target is checked
    except OSError as exc:
        raise ConfigError(f"key file {path}: cannot open it: {exc.strerror}") from exc
    with os.fdopen(fd, "rb") as fh:
        st = os.fstat(fh.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise ConfigError(f"key file {path}: not a regular file")
        if st.st_mode & 0o077:
            raise ConfigError(
                f"key file {path}: mode {stat.S_IMODE(st.st_mode):04o} lets others read it; chmod 600 {path}"
            )
        data = fh.read(KEY_FILE_MAX_BYTES + 1)
    text = data.strip()
    if len(data) > KEY_FILE_MAX_BYTES or len(text) != 2 * KEK_BYTES:
        raise ConfigError(f"key file {path}: expected {2 * KEK_BYTES} hex digits")
    try:
        key = bytes.fromhex(text.decode("ascii"))
    except (UnicodeDecodeError, ValueError):
        raise ConfigError(f"key file {path}: expected {2 * KEK_BYTES} hex digits") from None
    return Kek(key, str(path))


def seal(key: ec.EllipticCurvePrivateKey, kek: Kek, context: bytes = b"") -> bytes:
    """Encrypt `key` (PKCS#8 DER) under `kek`; `context` must be given again to unseal."""
    der = key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    nonce = secrets.token_bytes(NONCE_BYTES)
    return MAGIC + bytes.fromhex(kek.kek_id) + nonce + AESGCM(kek.key).encrypt(nonce, der, context)


def sealed_kek_id(sealed: bytes) -> str:
    """The id of the KEK a blob was sealed with (InvalidArgument if it is not a sealed blob)."""
    if not isinstance(sealed, bytes) or len(sealed) > MAX_SEALED_BYTES or not sealed.startswith(MAGIC):
        raise InvalidArgument("sealed_key", "not a sealed key (wrong magic or size)")
    if len(sealed) < len(MAGIC) + KEK_ID_BYTES + NONCE_BYTES + 16:
        raise InvalidArgument("sealed_key", "truncated")
    return sealed[len(MAGIC) : len(MAGIC) + KEK_ID_BYTES].hex()


def unseal(sealed: bytes, kek: Kek, context: bytes = b"") -> ec.EllipticCurvePrivateKey:
    """The private key sealed in `sealed`. ConfigError naming the key file when `kek` is not the key it was sealed
    with; InvalidArgument when the blob is damaged or bound to another context."""
    got_id = sealed_kek_id(sealed)
    if got_id != kek.kek_id:
        raise ConfigError(
            f"the CA root key was sealed with another key (key id {got_id}); key file {kek.source} has key id "
            f"{kek.kek_id}: pass the key file the CA was created with"
        )
    offset = len(MAGIC) + KEK_ID_BYTES
    nonce, body = sealed[offset : offset + NONCE_BYTES], sealed[offset + NONCE_BYTES :]
    try:
        der = AESGCM(kek.key).decrypt(nonce, body, context)
    except InvalidTag:
        raise InvalidArgument(
            "sealed_key", f"does not decrypt with key file {kek.source}: damaged, or bound to another root"
        ) from None
    key = serialization.load_der_private_key(der, password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise InvalidArgument("sealed_key", "the sealed key is not an EC key")
    return key
