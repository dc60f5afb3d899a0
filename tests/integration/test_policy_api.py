"""The PolicyService and `meshactors policy` against the running `up` stack, checked against etcd itself:
apply/get/ls/dry-run/delete, bad documents refused with their field path and nothing stored, all or nothing."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
import yaml

from meshactors.errors import Conflict, InvalidArgument, NotFound
from meshactors.model import Instance, InstanceRef
from meshactors.policy import codec as policy_codec
from meshactors.registry.client import RegistryClient
from meshactors.registry.policy_client import ACTION_NAMES, PolicyClient, document_of
from meshactors.store.base import Txn
from meshactors.store.etcd import EtcdStore
from meshactors.store.keys import KeySchema
from meshactors.testing.stack import bearer
from meshactors.v1 import policy_pb2, policy_pb2_grpc

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]


@pytest.fixture(scope="module")
def policies(stack: dict[str, Any]) -> Iterator[PolicyClient]:
    with PolicyClient(stack["registry"], token=stack["token"]) as client:
        yield client


@pytest.fixture(scope="module")
def keys(stack: dict[str, Any]) -> KeySchema:
    return KeySchema(stack.get("key_prefix") or "/meshactors")


def _vip(tag: str = "pol") -> str:
    return f"{tag}-{uuid.uuid4().hex[:8]}"


async def _stored(store: EtcdStore, keys: KeySchema, *vips: str) -> dict[str, Any]:
    """What etcd holds for these VIPs' policy keys (decoded), straight from etcd."""
    out = {}
    for vip in vips:
        kv = await store.get(keys.policy(vip))
        if kv is not None:
            out[vip] = policy_codec.decode(kv.value)
    return out


# ---- the store's transaction on a real etcd -------------------------------------------------------------------


async def test_commit_is_all_or_nothing_and_fenced_on_a_real_etcd(store: EtcdStore) -> None:
    p = f"/policytest/{uuid.uuid4().hex[:8]}/"
    rev = await store.commit(Txn(puts={p + "a": b"1", p + "b": b"2"}, expect={p + "a": 0, p + "b": 0}))
    a = await store.get(p + "a")
    assert a is not None and a.mod_revision == rev
    with pytest.raises(Conflict, match="already exists"):
        await store.commit(Txn(puts={p + "a": b"x", p + "c": b"3"}, expect={p + "a": 0}))
    assert await store.get(p + "c") is None and (await store.get(p + "a")).value == b"1"  # type: ignore[union-attr]
    # nothing under the prefix may have been written after `rev - 1`: a and b were written at rev
    with pytest.raises(Conflict, match="was written at revision"):
        await store.commit(Txn(puts={p + "c": b"3"}, quiet_prefix=p, quiet_since=rev - 1))
    assert await store.get(p + "c") is None
    rev2 = await store.commit(Txn(puts={p + "c": b"3"}, deletes=(p + "a",), quiet_prefix=p, quiet_since=rev))
    assert await store.get(p + "a") is None and (await store.get(p + "c")).mod_revision == rev2  # type: ignore[union-attr]
    empty = f"/policytest/{uuid.uuid4().hex[:8]}/"
    await store.commit(Txn(puts={empty + "x": b"1"}, quiet_prefix=empty, quiet_since=1))  # an empty range is quiet
    await store.delete_prefix(p)
    await store.delete_prefix(empty)


# ---- the API -------------------------------------------------------------------------------------------------


async def test_apply_get_ls_dry_run_delete(policies: PolicyClient, store: EtcdStore, keys: KeySchema) -> None:
    vip = _vip()
    text = f"vip: {vip}\ndestination:\n  loadBalancer: LEAST_REQUEST\nrouting:\n  timeout: 2s\n"
    applied = policies.apply(text)
    assert [(c.vip, ACTION_NAMES[c.action]) for c in applied.changes] == [(vip, "created")]
    assert "+  timeout: 2s" in applied.changes[0].diff
    kv = await store.get(keys.policy(vip))  # stored where the key schema says, as the codec encodes it
    assert kv is not None and kv.mod_revision == applied.revision
    assert policy_codec.decode(kv.value).routing.timeout_ms == 2000  # type: ignore[union-attr]

    got = policies.get(vip)
    assert document_of(got.policy) == {"vip": vip, "destination": {"loadBalancer": "LEAST_REQUEST"},
                                       "routing": {"timeout": "2s"}}  # fmt: skip
    assert got.policy.mod_revision == applied.revision
    listed, revision = policies.list()
    assert revision >= applied.revision and vip in [p.vip for p in listed]

    assert ACTION_NAMES[policies.apply(text).changes[0].action] == "unchanged"
    dry = policies.apply(text.replace("2s", "3s"), dry_run=True)
    assert ACTION_NAMES[dry.changes[0].action] == "updated"
    assert "-  timeout: 2s" in dry.changes[0].diff and "+  timeout: 3s" in dry.changes[0].diff
    after = await store.get(keys.policy(vip))
    assert after is not None and after.mod_revision == applied.revision  # the dry run wrote nothing

    with pytest.raises(Conflict):  # fenced on a revision it no longer has
        policies.apply(text.replace("2s", "3s"), expected_revisions={vip: applied.revision - 1})
    fenced = policies.apply(text.replace("2s", "3s"), expected_revisions={vip: applied.revision})
    assert ACTION_NAMES[fenced.changes[0].action] == "updated"

    policies.delete(vip)
    assert await store.get(keys.policy(vip)) is None
    with pytest.raises(NotFound):
        policies.get(vip)
    with pytest.raises(NotFound):
        policies.delete(vip)


BAD = [
    ("routing:\n  split: [{version: v1, weight: 90}, {version: v2, weight: 20}]\n",
     "routing.split[1].weight: weights must add up to 100, got 110"),
    ("routing:\n  timeout: 2d\n", "routing.timeout: "),
    ("routing:\n  timeut: 2s\n", "routing.timeut: "),
    ("routing:\n  retries: {attempts: 11}\n", "routing.retries.attempts: 11 is out of range 0-10"),
    ("routing:\n  hedging: {onPerTryTimeout: true}\n", "routing.hedging.onPerTryTimeout: needs routing.retries"),
    ("destination:\n  loadBalancer: RING_HASH\n", "destination.loadBalancer: RING_HASH needs"),
    ("routing:\n  mirror: {vip: Shadow}\n", "routing.mirror.vip: "),
    ("routing: [unclosed\n", "document: not valid YAML or JSON"),
]  # fmt: skip


@pytest.mark.parametrize(("body", "message"), BAD, ids=[m.split(":")[0] + str(i) for i, (_, m) in enumerate(BAD)])
async def test_bad_documents_are_refused_with_their_field_path_and_nothing_is_stored(
    stack: dict[str, Any], store: EtcdStore, keys: KeySchema, body: str, message: str
) -> None:
    vip = _vip("bad")
    text = body if body.startswith("routing: [") else f"vip: {vip}\n{body}"
    with grpc.insecure_channel(stack["registry"]) as channel:
        stub = policy_pb2_grpc.PolicyServiceStub(channel)
        with pytest.raises(grpc.RpcError) as info:
            stub.Apply(policy_pb2.ApplyRequest(text=text), timeout=10, metadata=bearer(stack))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert message in info.value.details(), info.value.details()
    assert await _stored(store, keys, vip) == {}


async def test_unknown_vips_are_not_found_and_bad_names_invalid(policies: PolicyClient) -> None:
    with pytest.raises(NotFound):
        policies.get(_vip("nobody"))
    with pytest.raises(InvalidArgument, match="vip"):
        policies.get("Not_A_Vip")


async def test_several_documents_are_applied_all_or_nothing(
    policies: PolicyClient, store: EtcdStore, keys: KeySchema
) -> None:
    a, b, c = _vip("multi"), _vip("multi"), _vip("multi")
    good = f"vip: {a}\nrouting: {{timeout: 1s}}\n---\nvip: {b}\nrouting: {{timeout: 2s}}\n---\nvip: {c}\n"
    bad = good.replace("timeout: 2s", "timeout: 0s")
    with pytest.raises(InvalidArgument) as info:
        policies.apply(bad)
    assert f"document 2 (vip '{b}'): routing.timeout: must be longer than 0" in str(info.value)
    assert await _stored(store, keys, a, b, c) == {}
    json_array = json.dumps([{"vip": a}, {"vip": b, "routing": {"split": [{"version": "v1", "weight": 101}]}}])
    with pytest.raises(InvalidArgument, match=r"routing\.split\[0\]\.weight"):
        policies.apply(json_array)
    assert await _stored(store, keys, a, b, c) == {}
    ok = policies.apply(good)
    assert [ACTION_NAMES[ch.action] for ch in ok.changes] == ["created"] * 3
    stored = [await store.get(keys.policy(v)) for v in (a, b, c)]
    assert {kv.mod_revision for kv in stored if kv is not None} == {ok.revision}  # one transaction
    for v in (a, b, c):
        policies.delete(v)


async def test_mesh_wide_document_is_checked_against_stored_vip_documents(
    policies: PolicyClient, store: EtcdStore, keys: KeySchema
) -> None:
    vip = _vip("mesh")
    before = await store.get(keys.policy("*"))
    assert before is None, "another test left a '*' document"
    policies.apply("vip: '*'\nrouting:\n  retries: {attempts: 2, perTryTimeout: 500ms}\n")
    try:
        policies.apply(f"vip: {vip}\nrouting:\n  hedging: {{onPerTryTimeout: true}}\n")  # valid over the `*`
        with pytest.raises(InvalidArgument, match=r"routing\.hedging\.onPerTryTimeout"):
            policies.apply("vip: '*'\nrouting:\n  timeout: 10s\n")  # would leave the VIP's hedging without it
        with pytest.raises(InvalidArgument, match=vip):
            policies.delete("*")
        mesh = await store.get(f"{keys.policies}_mesh")  # the key-safe spelling of '*'
        assert mesh is not None and policy_codec.decode(mesh.value).vip == "*"
        policies.delete(vip)
    finally:
        policies.delete("*")
    assert await store.get(keys.policy("*")) is None


async def _output(*argv: str) -> str:
    """stdout of a command run off the event loop; a failure shows its stderr."""
    proc = await asyncio.to_thread(subprocess.run, argv, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


async def test_a_split_naming_a_version_with_no_up_instance_is_reported_as_a_problem(
    policies: PolicyClient, registry: RegistryClient, store: EtcdStore, keys: KeySchema, stack: dict[str, Any]
) -> None:
    vip = _vip("split")
    ref, _ = registry.register(
        Instance(app=vip, instance_id="v1-a", host="127.0.0.1", vip=vip, port=18080, version_label="v1")
    )
    try:
        text = f"vip: {vip}\nrouting:\n  split: [{{version: v1, weight: 80}}, {{version: v2, weight: 20}}]\n"
        dry = policies.apply(text, dry_run=True)
        assert [(p.vip, p.field) for p in dry.problems] == [(vip, "routing.split[1].version")]
        applied = policies.apply(text)
        assert [(p.vip, p.field) for p in applied.problems] == [(vip, "routing.split[1].version")]
        assert "v2" in applied.problems[0].reason and "503" in applied.problems[0].reason
        assert vip in await _stored(store, keys, vip)  # a problem is a warning: the policy is stored
        assert [p.field for p in policies.get(vip).problems] == ["routing.split[1].version"]
        # ... and by `status`, with every other document's problems
        documents, listed = policies.problems()
        assert documents >= 1 and [(p.vip, p.field) for p in listed if p.vip == vip] == [
            (vip, "routing.split[1].version")
        ]
        ready = str(Path(stack["state_dir"]) / "ready.json")
        status = [sys.executable, "-m", "meshactors.cli", "status", "--ready-file", ready]
        doc = json.loads(await _output(*status, "--json"))
        mine = [p for p in doc["policies"]["problems"] if p["vip"] == vip]
        assert [p["field"] for p in mine] == ["routing.split[1].version"] and "v2" in mine[0]["reason"], doc["policies"]
        assert doc["policies"]["documents"] == documents
        table = await _output(*status)
        assert f"  {vip}: routing.split[1].version: " in table, table
        policies.delete(vip)
    finally:
        registry.deregister(InstanceRef(ref.vip, ref.instance_id))


# ---- the CLI -------------------------------------------------------------------------------------------------


def run(*args: str, stdin: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [sys.executable, "-m", "meshactors.cli", "policy", *args],
        input=stdin, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    if check and proc.returncode != 0:
        raise AssertionError(f"meshactors policy {args} failed ({proc.returncode}): {proc.stderr}")
    return proc


async def test_cli_apply_get_ls_delete_end_to_end(
    stack: dict[str, Any], store: EtcdStore, keys: KeySchema, tmp_path: Path
) -> None:
    vip = _vip("cli")
    ready = str(Path(stack["state_dir"]) / "ready.json")
    reg = ["--registry", stack["registry"], "--token", stack["token"]]
    file = tmp_path / "policy.yaml"
    file.write_text(f"vip: {vip}\nrouting:\n  timeout: 2s\n  retries: {{attempts: 3, perTryTimeout: 500ms}}\n")

    dry = run("apply", "-f", str(file), "--dry-run", *reg)
    assert f"{vip}: would be created" in dry.stdout and "dry run: nothing written" in dry.stdout
    assert await _stored(store, keys, vip) == {}
    out = run("apply", "-f", str(file), "--ready-file", ready)
    assert f"{vip}: created" in out.stdout and "+  timeout: 2s" in out.stdout
    assert vip in await _stored(store, keys, vip)

    got = run("get", vip, *reg).stdout
    retries = {"attempts": 3, "perTryTimeout": "500ms"}
    assert yaml.safe_load(got) == {"vip": vip, "routing": {"timeout": "2s", "retries": retries}}
    as_json = json.loads(run("get", vip, "--json", "--ready-file", ready).stdout)
    assert as_json == yaml.safe_load(got)
    # what `get` prints applies again unchanged (stdin this time)
    again = json.loads(run("apply", "-f", "-", "--json", *reg, stdin=got).stdout)
    assert [(c["vip"], c["action"]) for c in again["changes"]] == [(vip, "unchanged")]

    listed = json.loads(run("ls", "--json", *reg).stdout)
    assert vip in [p["vip"] for p in listed["policies"]]
    assert vip in run("ls", *reg).stdout

    bad = tmp_path / "bad.yaml"
    bad.write_text(f"vip: {vip}\nrouting:\n  split: [{{version: v1, weight: 90}}, {{version: v2, weight: 20}}]\n")
    refused = run("apply", "-f", str(bad), *reg, check=False)
    assert refused.returncode == 2, refused.stderr
    assert refused.stderr.strip().count("\n") == 0
    assert "routing.split[1].weight: weights must add up to 100, got 110" in refused.stderr
    assert (await _stored(store, keys, vip))[vip].routing.timeout_ms == 2000  # unchanged
    missing = run("apply", "-f", str(tmp_path / "nope.yaml"), *reg, check=False)
    assert missing.returncode == 2 and "cannot read policy file" in missing.stderr

    assert f"deleted the policy of {vip}" in run("delete", vip, *reg).stdout
    assert await _stored(store, keys, vip) == {}
    gone = run("get", vip, *reg, check=False)
    assert gone.returncode == 1 and "no policy" in gone.stderr and gone.stderr.strip().count("\n") == 0
    down = run("ls", "--registry", "127.0.0.1:1", check=False)
    assert down.returncode == 1 and "unavailable" in down.stderr


async def test_the_policy_feed_follows_applies_and_deletes_on_a_real_etcd(
    policies: PolicyClient, store: EtcdStore, keys: KeySchema
) -> None:
    import asyncio
    from contextlib import aclosing

    from meshactors.store.policy_feed import PolicyBatch, PolicyFeed, PolicyLoaded, PolicyPut, PolicyRemoved

    vip = _vip("feed")
    feed = PolicyFeed(store, keys, name="test", wants=lambda v: v == vip)
    seen: list[PolicyPut | PolicyRemoved] = []
    async with aclosing(feed.__aiter__()) as it:
        first = await asyncio.wait_for(anext(it), 10)
        assert isinstance(first, PolicyLoaded) and first.items == ()
        applied = policies.apply(f"vip: {vip}\nrouting: {{timeout: 2s}}\n")
        deleted = policies.delete(vip)
        while len(seen) < 2:
            batch = await asyncio.wait_for(anext(it), 10)
            assert isinstance(batch, PolicyBatch)
            seen.extend(batch.events)
    put, removed = seen
    assert isinstance(put, PolicyPut) and (put.vip, put.revision) == (vip, applied.revision)
    assert put.policy.routing is not None and put.policy.routing.timeout_ms == 2000
    assert isinstance(removed, PolicyRemoved) and (removed.vip, removed.revision) == (vip, deleted)
    assert removed.previous == put.policy
