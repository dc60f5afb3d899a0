"""The IntentionService against an in-memory store: who may write which destination, bad input as INVALID_ARGUMENT
naming the field with nothing written, the default for admins only, listing for any token."""

from __future__ import annotations

import grpc
import pytest

from meshactors.auth.model import Identity, Role
from meshactors.registry.intention_service import IntentionService
from meshactors.v1 import intention_pb2 as pb
from tests.unit.test_cert_service import KEYS, Aborted, Auth, Context
from tests.unit.test_policy_store import TxnStore

ADMIN = Identity("0123456789abcdef", Role.ADMIN)
OWNER = Identity("1123456789abcdef", Role.SERVICE, "orders", frozenset({"orders-secure"}))
OTHER = Identity("2123456789abcdef", Role.SERVICE, "web", frozenset({"web"}))
PROXY = Identity("3123456789abcdef", Role.PROXY)


def _svc(store: TxnStore, who: Identity) -> IntentionService:
    return IntentionService(store, KEYS, Auth(who))  # type: ignore[arg-type]


def _set(source: str, destination: str, action: str) -> pb.SetIntentionRequest:
    return pb.SetIntentionRequest(intention=pb.Intention(source=source, destination=destination, action=action))


async def test_admins_and_the_destinations_owner_write_others_are_refused_and_anyone_lists() -> None:
    store = TxnStore()
    ctx = Context()
    got = await _svc(store, OWNER).Set(_set("web", "orders-secure", "deny"), ctx)  # type: ignore[arg-type]
    assert got.previous_action == "" and got.revision > 0
    got = await _svc(store, ADMIN).Set(_set("web", "orders-secure", "allow"), ctx)  # type: ignore[arg-type]
    assert got.previous_action == "deny"
    for who in (OTHER, PROXY):
        with pytest.raises(Aborted) as err:
            await _svc(store, who).Set(_set("web", "orders-secure", "deny"), ctx)  # type: ignore[arg-type]
        assert err.value.code is grpc.StatusCode.PERMISSION_DENIED
        with pytest.raises(Aborted) as err:
            req = pb.DeleteIntentionRequest(source="web", destination="orders-secure")
            await _svc(store, who).Delete(req, ctx)  # type: ignore[arg-type]
        assert err.value.code is grpc.StatusCode.PERMISSION_DENIED
    for who in (OWNER, OTHER):
        with pytest.raises(Aborted, match="admin token") as err:
            await _svc(store, who).SetDefault(pb.SetDefaultRequest(action="deny"), ctx)  # type: ignore[arg-type]
        assert err.value.code is grpc.StatusCode.PERMISSION_DENIED
    listed = await _svc(store, PROXY).List(pb.ListIntentionsRequest(), ctx)  # type: ignore[arg-type]
    assert [(i.source, i.destination, i.action) for i in listed.intentions] == [("web", "orders-secure", "allow")]
    assert (listed.default_action, listed.default_stored) == ("allow", False)
    await _svc(store, ADMIN).SetDefault(pb.SetDefaultRequest(action="deny"), ctx)  # type: ignore[arg-type]
    listed = await _svc(store, OTHER).List(pb.ListIntentionsRequest(), ctx)  # type: ignore[arg-type]
    assert (listed.default_action, listed.default_stored) == ("deny", True)


@pytest.mark.parametrize(
    ("source", "destination", "action", "message"),
    [
        ("web", "orders-secure", "maybe", "intention.action: 'maybe' is not allow or deny"),
        ("", "orders-secure", "allow", "intention.source: must not be empty"),
        ("web", "", "allow", "intention.destination: must not be empty"),
        ("w" * 254, "orders-secure", "allow", "intention.source: longer than 253 characters"),
        ("web", "*", "allow", "intention.destination: must name one VIP"),
    ],
)
async def test_bad_input_is_invalid_argument_naming_the_field_and_writes_nothing(
    source: str, destination: str, action: str, message: str
) -> None:
    store = TxnStore()
    with pytest.raises(Aborted) as err:
        await _svc(store, ADMIN).Set(_set(source, destination, action), Context())  # type: ignore[arg-type]
    assert err.value.code is grpc.StatusCode.INVALID_ARGUMENT
    assert err.value.details.startswith(message), err.value.details
    assert store.commits == [] and store.kvs == {}
