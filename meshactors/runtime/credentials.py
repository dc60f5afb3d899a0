"""The embedded default's own credentials: an admin and a proxy token, and the CA key file, 0600 in its state dir."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

from meshactors import log
from meshactors.auth.model import Role, mint, parse, verify
from meshactors.ca import sealing
from meshactors.errors import MeshError
from meshactors.store.etcd import EtcdStore
from meshactors.store.keys import KeySchema
from meshactors.store.tokens import TokenStore

_log = log.get("runtime.credentials")

ADMIN_TOKEN_FILE = "admin-token"
PROXY_TOKEN_FILE = "proxy-token"


def write_secret(path: Path, text: str) -> None:
    """Atomically, readable by its owner only."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text + "\n")
    os.replace(tmp, path)


def _read(path: Path) -> str:
    try:
        return path.read_text().strip()
    except OSError:
        return ""


async def _ensure(tokens: TokenStore, kept: str, role: Role, description: str) -> tuple[str, bool]:
    """(token, made): `kept` while etcd still holds its record; otherwise a new one, stored in etcd."""
    try:
        token_id, secret = parse(kept)
        record = await tokens.get(token_id)
        if record is not None and record.role is role:
            verify(record, secret)
            return kept, False
    except MeshError:
        pass  # missing, malformed, revoked or from another etcd: make a new one
    token, record = mint(role, description=description, created_ms=int(time.time() * 1000))
    await tokens.create(record)
    _log.info("token created", id=record.id, role=role.value)
    return token, True


async def _ensure_all(etcd: str, keys: KeySchema, kept: tuple[str, str]) -> tuple[tuple[str, bool], tuple[str, bool]]:
    async with EtcdStore.from_spec(etcd, timeout_s=10.0) as store:
        tokens = TokenStore(store, keys)
        admin = await _ensure(tokens, kept[0], Role.ADMIN, "meshactors up: the operator")
        proxy = await _ensure(tokens, kept[1], Role.PROXY, "meshactors up: local proxies")
    return admin, proxy


def ensure_tokens(etcd: str, keys: KeySchema, state_dir: Path) -> tuple[str, str]:
    """(admin token, proxy token) of this state dir, created on the first run and reused while etcd has them."""
    paths = (state_dir / ADMIN_TOKEN_FILE, state_dir / PROXY_TOKEN_FILE)
    results = asyncio.run(_ensure_all(etcd, keys, (_read(paths[0]), _read(paths[1]))))
    for path, (token, made) in zip(paths, results, strict=True):
        if made:
            write_secret(path, token)
    return results[0][0], results[1][0]


def ensure_ca_key_file(path: Path) -> Path:
    """The CA's key file at `path`: created (0600, a new random key) when missing, else checked (mode, format).
    The key seals the CA root's private key in etcd: losing it means a new root (every leaf re-issued)."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        kek = sealing.write_key_file(path)
        _log.info("ca key file created", path=str(path), kek_id=kek.kek_id)
        return path
    sealing.read_key_file(path)  # a ConfigError naming the file when it is unusable, before anything starts
    return path
