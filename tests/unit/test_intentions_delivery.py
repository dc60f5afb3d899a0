"""Intentions on their way to Envoy: real `envoy --mode validate` accepts the secure listener's ECDS filter and every
compiled config; the builder's snapshot is the compiled config's bytes; the VIP source serves the ECDS names from
their own keys, never provisionally, and an unregistered SVIP's against the unknown-VIP budget."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from meshactors.envoy.bootstrap import SecureInbound, envoy_bootstrap
from meshactors.envoy.resources import KNOWN_VIPS_FILTER, intentions_filter_name, intentions_rbac
from meshactors.errors import ConfigError
from meshactors.intentions.compile import rbac_config
from meshactors.intentions.model import Action, Rules
from meshactors.resources.types import CLUSTER, EXTENSION_CONFIG
from meshactors.snapshot.builder import build_intentions, build_known_vips, intentions_key, intentions_svip
from meshactors.snapshot.source import VipSource, VipSourceSettings
from tests.unit.test_intentions import CASES
from tests.unit.test_known_vips import _Transport
from tests.unit.test_svip_tls import TD, _identity_files, envoy_binary


def test_real_envoy_accepts_the_compiled_configs_and_the_ecds_filter(tmp_path: Path) -> None:
    """The secure listener as the sidecar writes it (the ECDS filter), and with each compiled config inline."""
    _identity_files(tmp_path / "meshactors-identity")
    secure = SecureInbound(("127.0.0.1", 18443), ("127.0.0.1", 18080), TD, svip="orders")
    docs = [envoy_bootstrap([("127.0.0.1", 18000)], "sidecar-1", secure_inbound=secure, stats_flush_s=5.0)]
    for rules, default in CASES.values():
        doc = envoy_bootstrap([("127.0.0.1", 18000)], "sidecar-1", secure_inbound=secure)
        listener = next(x for x in doc["static_resources"]["listeners"] if x["name"] == "meshactors_inbound_secure")
        filters = listener["filter_chains"][0]["filters"][0]["typed_config"]["http_filters"]
        assert filters[0] == {
            "name": intentions_filter_name("orders"),
            "config_discovery": {
                "config_source": {"ads": {}, "resource_api_version": "V3"},
                "type_urls": ["type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC"],
            },
        }
        filters[0] = {"name": "envoy.filters.http.rbac", "typed_config": rbac_config(rules, default, TD)}
        docs.append(doc)
    for i, doc in enumerate(docs):
        (tmp_path / f"envoy{i}.yaml").write_text(yaml.safe_dump(doc))
        cmd = [envoy_binary(), "--mode", "validate", "-c", f"envoy{i}.yaml", "--disable-hot-restart", "-l", "error"]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60, cwd=tmp_path)
        assert proc.returncode == 0, proc.stdout + proc.stderr


def test_a_secure_inbound_without_an_svip_has_no_authorization_filter_and_a_bad_svip_is_refused() -> None:
    doc = envoy_bootstrap(
        [("127.0.0.1", 18000)], "s", secure_inbound=SecureInbound(("127.0.0.1", 18443), ("127.0.0.1", 18080), TD)
    )
    text = json.dumps(doc)
    assert "meshactors_intentions/" not in text
    with pytest.raises(ConfigError, match="not an SVIP name"):
        SecureInbound(("127.0.0.1", 18443), ("127.0.0.1", 18080), TD, svip="Bad Name")


# ---- the builder's snapshot and the VIP source ----------------------------------------------------------------------


def test_the_intentions_snapshot_is_one_ecds_resource_of_the_compiled_config() -> None:
    rules = Rules("orders", {"web": Action.DENY})
    snap = build_intentions("orders", rules, Action.ALLOW, TD)
    assert snap.key == intentions_key("orders") == "@intentions/orders"
    assert intentions_svip(snap.key) == "orders" and intentions_svip("orders") is None
    (res,) = snap.resources
    assert (res.type_url, res.name) == (EXTENSION_CONFIG, "meshactors_intentions/orders")
    expected = {k: v for k, v in rbac_config(rules, Action.ALLOW, TD).items() if k != "@type"}
    expected["shadow_rules"].pop("action")  # ALLOW is the enum's zero: proto JSON leaves it out
    assert intentions_rbac(res.body or b"") == expected
    assert build_intentions("orders", rules, Action.ALLOW, TD) == snap  # same input, same bytes and version
    assert build_intentions("orders", rules, Action.DENY, TD).resources[0].version != res.version


def test_the_vip_source_serves_intentions_names_from_their_own_key_never_provisionally() -> None:
    source = VipSource(_Transport())
    name = intentions_filter_name("orders-secure")
    assert source.validate(EXTENSION_CONFIG, name) is None
    assert source.key_of(EXTENSION_CONFIG, name) == "@intentions/orders-secure"
    assert source.provisional("@intentions/orders-secure") is None
    for bad in ("meshactors_intentions/", "meshactors_intentions/Orders", "meshactors_intentions/a/b"):
        assert "extension configs are" in (source.validate(EXTENSION_CONFIG, bad) or ""), bad


class _IntentionsTransport:
    async def subscribe(self, keys: list[str]) -> list[Any]:
        return [build_intentions(intentions_svip(k) or "", None, Action.ALLOW, TD) for k in keys]

    async def unsubscribe(self, keys: list[str]) -> None:
        return None


async def test_intentions_of_unregistered_svips_count_against_the_unknown_vip_budget() -> None:
    source = VipSource(_IntentionsTransport(), VipSourceSettings(max_unknown_vips=1))
    (snap,) = await source.fetch([intentions_key("a")])
    source.observe(snap)  # teaches nothing: not the known-names snapshot
    assert source.statistics().unknown_vip_keys_held == 1
    assert "--xds-max-unknown-vips" in (source.validate(EXTENSION_CONFIG, intentions_filter_name("b")) or "")
    assert "--xds-max-unknown-vips" in (source.validate(CLUSTER, "b") or "")
    assert source.validate(EXTENSION_CONFIG, intentions_filter_name("a")) is None  # already held
    assert source.validate(EXTENSION_CONFIG, KNOWN_VIPS_FILTER) is None  # the guard is never budgeted
    source.observe(build_known_vips(["a", "b"]))
    assert source.statistics().unknown_vip_keys_held == 0
    assert source.validate(EXTENSION_CONFIG, intentions_filter_name("b")) is None  # registered now
    source.forget(intentions_key("a"))
    assert source.statistics().vip_keys_held == 0
