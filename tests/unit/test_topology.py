"""The topology's actor names: every kind's names round-trip through parse, and foreign names are OTHER."""

from __future__ import annotations

import pytest

from meshactors.runtime import topology as t
from meshactors.settings import MeshSettings


@pytest.mark.parametrize("kind", sorted(t.INDEXED))
@pytest.mark.parametrize("index", [0, 1, 17])
def test_indexed_names_round_trip(kind: str, index: int) -> None:
    name = t.name_of(kind, index)
    assert t.parse(name) == (kind, index)
    assert t.kind_of(name) == kind


@pytest.mark.parametrize("kind", [k for k in t.KINDS if k not in t.INDEXED])
def test_singleton_names_are_their_kind(kind: str) -> None:
    assert t.name_of(kind) == kind
    assert t.parse(kind) == (kind, None)


def test_the_named_functions_agree_with_name_of() -> None:
    assert t.shard_name(3) == t.name_of(t.REGISTRY_SHARD, 3) == "registry-shard-3"
    assert t.builder_name(2) == t.name_of(t.SNAPSHOT_BUILDER, 2) == "snapshot-builder-2"
    assert t.xds_server_name(0) == t.name_of(t.XDS_SERVER, 0) == "xds-server-0"
    assert (t.REGISTRY_API, t.EUREKA_API, t.CONTROLLER) == ("registry-api", "eureka-api", "controller")
    assert t.builder_map(3).shards == tuple(t.builder_name(i) for i in range(3))


@pytest.mark.parametrize(
    "name",
    ["", "registry-shard", "registry-shard-", "registry-shard-x", "registry-shard-01", "xds-server--1",
     "controller-0", "registry-api-1", "my-actor", "snapshot-builder-1-2"],
)  # fmt: skip
def test_foreign_names_are_other(name: str) -> None:
    assert t.parse(name) == (t.OTHER, None)


def test_name_of_refuses_what_cannot_be_a_name() -> None:
    for args in [(t.REGISTRY_SHARD,), (t.XDS_SERVER, -1), (t.CONTROLLER, 0), ("nope",)]:
        with pytest.raises(ValueError):
            t.name_of(*args)


def test_deployment_names_cover_every_kind_but_the_controller() -> None:
    settings = MeshSettings(etcd="http://127.0.0.1:2379", shards=3, builders=2, xds_servers=2)
    names = t.deployment_names(settings)
    assert names == [
        "registry-shard-0", "registry-shard-1", "registry-shard-2", "snapshot-builder-0", "snapshot-builder-1",
        "xds-server-0", "xds-server-1", "registry-api", "eureka-api", "dashboard",
    ]  # fmt: skip
    assert {t.kind_of(n) for n in names} == set(t.KINDS) - {t.CONTROLLER}
    assert t.names_of_kind(names, t.XDS_SERVER) == ["xds-server-0", "xds-server-1"]


def test_the_controller_keeps_exactly_the_deployment_names() -> None:
    from meshactors.runtime.controller import actor_specs

    settings = MeshSettings(etcd="http://127.0.0.1:2379", shards=2, builders=3, xds_servers=1)
    assert list(actor_specs(settings)) == t.deployment_names(settings)
