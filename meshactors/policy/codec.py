"""Encodes a stored policy as msgpack `[schema_version, "policy", document]`; decoding re-validates the document.

The same record shape as the registry's values (meshactors.store.codec), kept here so the store stays unaware of
policies. The payload is the camelCase document (`to_document`), so a later schema can read older records.
"""

from __future__ import annotations

import msgpack

from meshactors.errors import CodecError, InvalidArgument
from meshactors.policy.load import from_document, to_document
from meshactors.policy.model import Policy

SCHEMA_VERSION = 1
KIND_POLICY = "policy"


def encode(policy: Policy) -> bytes:
    """Deterministic bytes for one policy: equal policies give equal bytes (a store can skip no-op writes)."""
    return msgpack.packb([SCHEMA_VERSION, KIND_POLICY, to_document(policy)], use_bin_type=True)


def decode(data: bytes) -> Policy:
    """The policy of a stored record; CodecError for a record this build cannot read or that no longer validates."""
    try:
        obj = msgpack.unpackb(data, raw=False, strict_map_key=True)
    except (ValueError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError) as exc:
        raise CodecError(f"stored policy is not valid msgpack: {exc}") from exc
    if not isinstance(obj, list) or len(obj) != 3:
        raise CodecError("stored policy is not a [schema_version, kind, document] record")
    version, kind, document = obj
    if version != SCHEMA_VERSION:
        raise CodecError(f"stored policy has schema version {version!r}; this build reads version {SCHEMA_VERSION}")
    if kind != KIND_POLICY:
        raise CodecError(f"stored value is a {kind!r} record, expected {KIND_POLICY!r}")
    try:
        return from_document(document)
    except InvalidArgument as exc:
        raise CodecError(f"stored policy no longer validates: {exc.message}") from exc
