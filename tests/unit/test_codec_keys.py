"""Codec round trips and schema-version rejection; the etcd key schema."""

from __future__ import annotations

import msgpack
import pytest

from meshactors.errors import CodecError, ConfigError, InvalidArgument
from meshactors.model import Instance, InstanceRef, LeaseSettings, Status
from meshactors.store import codec
from meshactors.store.keys import KeySchema


def _inst(**kw: object) -> Instance:
    base = dict(
        app="shop", instance_id="i-1", host="10.0.0.1", vip="shop", port=8080, svip="shop-secure",
        secure_port=8443, zone="us-east-1a", status=Status.STARTING, version_label="v2", weight=7,
        metadata={"team": "pay", "k/x": ""}, lease=LeaseSettings(5, 20), registered_at_ms=123,
    )  # fmt: skip
    base.update(kw)
    return Instance(**base)  # type: ignore[arg-type]


def test_instance_round_trip_keeps_every_field() -> None:
    inst = _inst()
    assert codec.decode_instance(codec.encode_instance(inst)) == inst


def test_value_carries_schema_version_and_kind() -> None:
    raw = msgpack.unpackb(codec.encode_instance(_inst()), raw=False)
    assert raw[0] == codec.SCHEMA_VERSION
    assert raw[1] == "instance"


def test_unknown_schema_version_is_rejected_with_the_version_named() -> None:
    data = codec.encode(codec.KIND_INSTANCE, _inst().to_dict(), version=codec.SCHEMA_VERSION + 1)
    with pytest.raises(CodecError, match=f"schema version {codec.SCHEMA_VERSION + 1}"):
        codec.decode_instance(data)


@pytest.mark.parametrize(
    "data, message",
    [
        (b"\xc1", "not valid msgpack"),
        (msgpack.packb({"a": 1}), "record"),
        (codec.encode("policy", {}), "expected 'instance'"),
        (codec.encode("instance", {"app": "x"}), "malformed"),
        (codec.encode("instance", {"app": "x", "instance_id": "i", "host": "h", "lease": 5}), "malformed"),
    ],
)
def test_garbage_is_a_codec_error(data: bytes, message: str) -> None:
    with pytest.raises(CodecError, match=message):
        codec.decode_instance(data)


def test_key_schema_builds_and_parses_instance_keys() -> None:
    keys = KeySchema("/mesh/test")
    ref = InstanceRef("shop", "10.0.0.1:8080")
    key = keys.instance(ref)
    assert key == "/mesh/test/instances/shop/10.0.0.1:8080"
    assert key.startswith(keys.instances) and key.startswith(keys.vip_instances("shop"))
    assert keys.parse_instance(key) == ref


@pytest.mark.parametrize("key", ["/other/instances/a/b", "/mesh/test/instances/a", "/mesh/test/instances/a/b/c"])
def test_key_schema_rejects_foreign_keys(key: str) -> None:
    with pytest.raises(InvalidArgument):
        KeySchema("/mesh/test").parse_instance(key)


@pytest.mark.parametrize("prefix", ["", "mesh", "/mesh/", "/me sh", "//x"])
def test_bad_prefix_is_a_config_error(prefix: str) -> None:
    with pytest.raises(ConfigError):
        KeySchema(prefix)


def test_a_key_prefix_with_a_trailing_newline_is_refused() -> None:
    with pytest.raises(ConfigError):
        KeySchema("/meshactors\n")
