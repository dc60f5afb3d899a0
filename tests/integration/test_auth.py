"""Who may do what, against the running stack: the registry, policy and token APIs refuse missing, bad, revoked and
wrong-service credentials with the right code and write nothing, and a VIP hijack fails while traffic through a
real Envoy stays on the owner's backends."""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import pytest

from meshactors.envoy.process import EnvoyProcess
from meshactors.errors import PermissionDenied, Unauthenticated
from meshactors.model import InstanceRef, Status
from meshactors.registry.client import RegistryClient
from meshactors.registry.token_client import TokenClient
from meshactors.store.etcd import EtcdStore
from meshactors.testing.backends import get
from meshactors.testing.waits import until
from meshactors.v1 import auth_pb2, policy_pb2, policy_pb2_grpc
from meshactors.v1 import registry_pb2 as pb
from meshactors.v1 import registry_pb2_grpc as pb_grpc

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

LONG_LEASE = pb.LeaseSettings(renewal_interval_seconds=1200, duration_seconds=3600)


def _vip(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def _instance(vip: str, port: int, **kw: Any) -> pb.Instance:
    return pb.Instance(vip=vip, host="127.0.0.1", port=port, lease=LONG_LEASE, **kw)


@pytest.fixture(scope="module")
def tokens(stack: dict[str, Any]) -> TokenClient:
    with TokenClient(stack["registry"], token=stack["token"]) as client:
        yield client


def _service_token(tokens: TokenClient, service: str, *vips: str) -> tuple[str, str]:
    token, info = tokens.create("service", service=service, vips=list(vips) or None)
    return token, info.id


def _revoked_token(tokens: TokenClient, stack: dict[str, Any], service: str) -> str:
    """A service token that worked, then was revoked, and is known to be refused by the registry API now."""
    token, token_id = _service_token(tokens, service)
    with RegistryClient(stack["registry"], token=token) as client:
        client.list(vip=service)  # accepted while it exists
        tokens.revoke(token_id)

        def refused() -> bool:
            try:
                client.list(vip=service)
            except Unauthenticated:
                return True
            return False

        until(refused, 5, "the revocation reaches the registry API")
    return token


def _codes(stack: dict[str, Any], metadata: tuple[tuple[str, str], ...], vip: str) -> dict[str, grpc.StatusCode]:
    """The code each registry, policy and token method answers with these credentials."""
    ref = pb.InstanceRef(vip=vip, instance_id="127.0.0.1:1")
    registry_calls: dict[str, Callable[[Any], Any]] = {
        "Register": lambda s: s.Register(pb.RegisterRequest(instance=_instance(vip, 1)), timeout=10, metadata=metadata),
        "Heartbeat": lambda s: s.Heartbeat(pb.HeartbeatRequest(ref=ref), timeout=10, metadata=metadata),
        "HeartbeatBatch": lambda s: s.HeartbeatBatch(
            pb.HeartbeatBatchRequest(refs=[ref]), timeout=10, metadata=metadata
        ),
        "Deregister": lambda s: s.Deregister(pb.DeregisterRequest(ref=ref), timeout=10, metadata=metadata),
        "SetStatus": lambda s: s.SetStatus(
            pb.SetStatusRequest(ref=ref, status=pb.STATUS_OUT_OF_SERVICE), timeout=10, metadata=metadata
        ),
        "Update": lambda s: s.Update(pb.UpdateRequest(ref=ref, set_metadata={"a": "b"}), timeout=10, metadata=metadata),
        "List": lambda s: s.List(pb.ListRequest(vip=vip), timeout=10, metadata=metadata),
        "Watch": lambda s: next(iter(s.Watch(pb.WatchRequest(vip=vip), timeout=10, metadata=metadata))),
    }
    out: dict[str, grpc.StatusCode] = {}
    with grpc.insecure_channel(stack["registry"]) as channel:
        stub = pb_grpc.RegistryStub(channel)
        for name, call in registry_calls.items():
            try:
                resp = call(stub)
                code = grpc.StatusCode.OK
                if name == "HeartbeatBatch" and resp.results[0].code:
                    code = {c.value[0]: c for c in grpc.StatusCode}[resp.results[0].code]
                out[name] = code
            except grpc.RpcError as exc:
                out[name] = exc.code()
        policy = policy_pb2_grpc.PolicyServiceStub(channel)
        from meshactors.v1 import auth_pb2_grpc

        token_stub = auth_pb2_grpc.TokenServiceStub(channel)
        more: dict[str, Callable[[], Any]] = {
            "policy Apply": lambda: policy.Apply(
                policy_pb2.ApplyRequest(text=f"vip: {vip}\nrouting:\n  timeout: 2s\n"), timeout=10, metadata=metadata
            ),
            "policy Delete": lambda: policy.Delete(
                policy_pb2.DeletePolicyRequest(vip=vip), timeout=10, metadata=metadata
            ),
            "policy List": lambda: policy.List(policy_pb2.ListPoliciesRequest(), timeout=10, metadata=metadata),
            "token Create": lambda: token_stub.CreateToken(
                auth_pb2.CreateTokenRequest(role=auth_pb2.ROLE_ADMIN), timeout=10, metadata=metadata
            ),
            "token List": lambda: token_stub.ListTokens(auth_pb2.ListTokensRequest(), timeout=10, metadata=metadata),
            "token Revoke": lambda: token_stub.RevokeToken(
                auth_pb2.RevokeTokenRequest(id="0123456789abcdef"), timeout=10, metadata=metadata
            ),
        }
        for name, call in more.items():
            try:
                call()
                out[name] = grpc.StatusCode.OK
            except grpc.RpcError as exc:
                out[name] = exc.code()
    return out


async def test_no_bad_or_revoked_credentials_are_unauthenticated_and_write_nothing(
    stack: dict[str, Any], store: EtcdStore, tokens: TokenClient
) -> None:
    vip = _vip("authn")
    revoked = _revoked_token(tokens, stack, vip)
    before = await store.revision()
    cases = {
        "none": (),
        "not bearer": (("authorization", "Basic Zm9vOmJhcg=="),),
        "malformed": (("authorization", "Bearer not-a-token"),),
        "unknown": (("authorization", "Bearer ma1.0123456789abcdef." + "A" * 43),),
        "revoked": (("authorization", f"Bearer {revoked}"),),
    }
    for what, metadata in cases.items():
        codes = _codes(stack, metadata, vip)
        wrong = {m: c for m, c in codes.items() if c != grpc.StatusCode.UNAUTHENTICATED}
        assert not wrong, f"{what}: {wrong}"
    assert await store.revision() == before, "a refused call must not write"


async def test_a_token_of_another_service_is_denied_every_write_and_writes_nothing(
    stack: dict[str, Any], store: EtcdStore, tokens: TokenClient
) -> None:
    vip = _vip("owned")
    other, _ = _service_token(tokens, _vip("other"))
    proxy, _ = tokens.create("proxy")
    before = await store.revision()
    codes = _codes(stack, (("authorization", f"Bearer {other}"),), vip)
    denied = {"Register", "Heartbeat", "HeartbeatBatch", "Deregister", "SetStatus", "Update", "policy Apply",
              "policy Delete", "token Create", "token List", "token Revoke"}  # fmt: skip
    assert {m for m, c in codes.items() if c == grpc.StatusCode.PERMISSION_DENIED} == denied, codes
    assert codes["List"] == codes["Watch"] == codes["policy List"] == grpc.StatusCode.OK, codes
    assert await store.revision() == before, "a denied call must not write"
    codes = _codes(stack, (("authorization", f"Bearer {proxy}"),), vip)
    assert {m for m, c in codes.items() if c == grpc.StatusCode.PERMISSION_DENIED} == denied, codes
    assert await store.revision() == before


def test_a_vip_hijack_fails_and_traffic_stays_on_the_owners_backends(
    stack: dict[str, Any], tokens: TokenClient, envoy: EnvoyProcess, backends: Any
) -> None:
    vip = _vip("victim")
    owner_token, _ = _service_token(tokens, vip)
    rogue_token, _ = _service_token(tokens, _vip("rogue"))
    own, rogue = backends("owner"), backends("rogue")
    with (
        RegistryClient(stack["registry"], token=owner_token) as owner,
        RegistryClient(stack["registry"], token=rogue_token) as attacker,
    ):
        ref, stored = owner.register(_instance(vip, own.port, instance_id="web-1"))
        assert stored.registered_by == f"service:{vip}"
        until(lambda: get(envoy.listen, vip).body == "owner", 10, "the owner's backend is routable")
        with pytest.raises(PermissionDenied, match="does not own"):
            attacker.register(_instance(vip, rogue.port, instance_id="rogue-1", weight=10000))
        with pytest.raises(PermissionDenied, match="does not own"):
            attacker.register(_instance(vip, rogue.port, instance_id="web-1"))  # replace the owned id
        with pytest.raises(PermissionDenied):
            attacker.deregister(ref)
        with pytest.raises(PermissionDenied):
            attacker.set_status(ref, Status.OUT_OF_SERVICE)
        # A second identity that does own the VIP still cannot take over the first one's instance id.
        co_owner, _ = tokens.create("service", service=_vip("co"), vips=[vip])
        with RegistryClient(stack["registry"], token=co_owner) as co:
            with pytest.raises(PermissionDenied, match="registered by"):
                co.register(_instance(vip, rogue.port, instance_id="web-1"))
        seen = Counter(get(envoy.listen, vip).body for _ in range(50))
        assert seen == Counter({"owner": 50}), seen
        [listed] = owner.list(vip=vip)[0]
        assert (listed.instance_id, listed.port, listed.status) == ("web-1", own.port, pb.STATUS_UP)
        owner.deregister(InstanceRef(vip, "web-1"))


def test_admin_only_commands_and_token_cli(stack: dict[str, Any], tmp_path: Path) -> None:
    ready = str(Path(stack["state_dir"]) / "ready.json")
    vip = _vip("cli-auth")

    def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        import os

        base = {k: v for k, v in os.environ.items() if k != "MESHACTORS_TOKEN"}
        return subprocess.run(
            [sys.executable, "-m", "meshactors.cli", *args], capture_output=True, text=True, timeout=60,
            env={**base, **(env or {})}, check=False,
        )  # fmt: skip

    made = cli("token", "create", "--ready-file", ready, "--service", vip, "--description", "cli test")
    assert made.returncode == 0, made.stderr
    token = made.stdout.strip().splitlines()[-1]
    assert token.startswith("ma1.") and token not in made.stderr
    listed = cli("token", "ls", "--ready-file", ready)
    assert listed.returncode == 0 and vip in listed.stdout and token not in listed.stdout
    token_id = token.split(".")[1]
    assert token_id in listed.stdout
    # The service token registers its own VIP through MESHACTORS_TOKEN, but is no admin.
    reg = cli("register", "--registry", stack["registry"], "--vip", vip, "--host", "127.0.0.1", "--port", "9",
              "--once", env={"MESHACTORS_TOKEN": token})  # fmt: skip
    assert reg.returncode == 0, reg.stderr
    for args in (("token", "ls"), ("policy", "delete", vip), ("status",)):
        refused = cli(*args, "--ready-file", ready, "--token", token)
        assert refused.returncode == 1 and "admin token" in refused.stderr, (args, refused.stderr)
    nobody = cli("ls", "--registry", stack["registry"])
    assert nobody.returncode == 1 and "no credentials" in nobody.stderr, nobody.stderr
    revoke = cli("token", "revoke", token_id, "--ready-file", ready)
    assert revoke.returncode == 0, revoke.stderr
    until(
        lambda: "unknown or revoked" in cli("ls", "--registry", stack["registry"], "--token", token).stderr,
        10,
        "the revoked token is refused",
    )
    cli("deregister", "--ready-file", ready, "--vip", vip, "--instance-id", "127.0.0.1:9")
