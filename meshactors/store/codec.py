"""Encodes values stored in etcd as msgpack `[schema_version, kind, payload]`; refuses unknown versions."""

from __future__ import annotations

from typing import Any

import msgpack

from meshactors.errors import CodecError
from meshactors.model import Instance

SCHEMA_VERSION = 1
KIND_INSTANCE = "instance"


def encode(kind: str, payload: dict[str, Any], version: int = SCHEMA_VERSION) -> bytes:
    return msgpack.packb([version, kind, payload], use_bin_type=True)


def decode(data: bytes, kind: str) -> dict[str, Any]:
    """Decode a value of the expected kind written by a compatible schema version."""
    try:
        obj = msgpack.unpackb(data, raw=False, strict_map_key=True)
    except (ValueError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError) as exc:
        raise CodecError(f"stored value is not valid msgpack: {exc}") from exc
    if not isinstance(obj, list) or len(obj) != 3:
        raise CodecError("stored value is not a [schema_version, kind, payload] record")
    version, got_kind, payload = obj
    if version != SCHEMA_VERSION:
        raise CodecError(f"stored value has schema version {version!r}; this build reads version {SCHEMA_VERSION}")
    if got_kind != kind:
        raise CodecError(f"stored value is a {got_kind!r} record, expected {kind!r}")
    if not isinstance(payload, dict):
        raise CodecError(f"stored {kind} payload is not a map")
    return payload


def encode_instance(inst: Instance) -> bytes:
    return encode(KIND_INSTANCE, inst.to_dict())


def decode_instance(data: bytes) -> Instance:
    payload = decode(data, KIND_INSTANCE)
    try:
        return Instance.from_dict(payload)
    except (AttributeError, KeyError, TypeError, ValueError) as exc:  # e.g. a `lease` that is not a map
        raise CodecError(f"stored instance record is malformed: {exc!r}") from exc
