"""Port 0 is resolved once per deployment, and no two of its ports are ever the same."""

from __future__ import annotations

import itertools

import pytest

from meshactors.runtime import deploy
from meshactors.settings import MeshSettings


def test_every_resolved_port_is_distinct_even_when_free_ports_repeat(monkeypatch: pytest.MonkeyPatch) -> None:
    # a free port stays free until someone binds it: picks made back to back may repeat
    repeating = itertools.cycle([21000, 21000, 21001, 21001, 21002, 21003, 21004, 21005, 21006, 21007, 21008, 21009,
                                 21010, 21011, 21012, 21013, 21014])  # fmt: skip
    monkeypatch.setattr(deploy, "stable_port", lambda host="127.0.0.1": next(repeating))
    settings = deploy.resolve_ports(
        MeshSettings(etcd="http://127.0.0.1:2379", registry_port=0, eureka_port=0, xds_ports=(0, 0))
    )
    ports = [settings.registry_port, settings.eureka_port, *settings.xds_ports, *(p for _, p in settings.metrics_ports)]
    # the controller, shards, builders, xDS servers, the registry API, the Eureka API and the dashboard
    assert len(settings.metrics_ports) == 1 + settings.shards + settings.builders + 2 + 2 + 1
    assert len(ports) == len(set(ports)), ports
    assert all(ports)


def test_given_ports_are_kept_and_never_picked_again(monkeypatch: pytest.MonkeyPatch) -> None:
    picks = iter(range(7070, 7200))  # the first pick would be the registry's own port
    monkeypatch.setattr(deploy, "stable_port", lambda host="127.0.0.1": next(picks))
    settings = deploy.resolve_ports(
        MeshSettings(etcd="http://127.0.0.1:2379", registry_port=7070, eureka_port=0, xds_ports=(7080, 0))
    )
    assert settings.registry_port == 7070 and settings.xds_ports[0] == 7080
    assert settings.eureka_port not in (7070, 7080) and settings.xds_ports[1] not in (7070, 7080)
