"""The IntentionService gRPC servicer: intentions in and out of the IntentionStore, errors as gRPC codes."""

from __future__ import annotations

import grpc

from meshactors import log
from meshactors.auth.guard import Authenticator
from meshactors.auth.model import require_admin, require_discovery, require_names
from meshactors.intentions.model import parse_action, validate_destination, validate_source
from meshactors.registry.policy_service import _abort
from meshactors.registry.service import identity
from meshactors.store.base import Store
from meshactors.store.intentions import IntentionStore
from meshactors.store.keys import KeySchema
from meshactors.v1 import intention_pb2 as pb
from meshactors.v1 import intention_pb2_grpc as pb_grpc

_log = log.get("registry.intention_api")


class IntentionService(pb_grpc.IntentionServiceServicer):
    """Set and Delete need an admin token or a service token owning the destination; SetDefault an admin token;
    List any valid one. Input is validated before the token's rights are checked against it, and before any
    write."""

    def __init__(self, store: Store, keys: KeySchema, auth: Authenticator) -> None:
        self.intentions = IntentionStore(store, keys)
        self.auth = auth

    async def Set(self, request: pb.SetIntentionRequest, context: grpc.aio.ServicerContext) -> pb.SetIntentionResponse:
        try:
            who = identity(self.auth, context)
            it = request.intention
            validate_source(it.source, "intention.source")
            validate_destination(it.destination, "intention.destination")
            parse_action(it.action, "intention.action")
            require_names(who, [it.destination], "intention Set")
            revision, previous = await self.intentions.set(it.source, it.destination, it.action)
            return pb.SetIntentionResponse(revision=revision, previous_action=previous.value if previous else "")
        except Exception as exc:
            await _abort(context, exc, "Set")
            raise

    async def Delete(
        self, request: pb.DeleteIntentionRequest, context: grpc.aio.ServicerContext
    ) -> pb.DeleteIntentionResponse:
        try:
            who = identity(self.auth, context)
            validate_source(request.source)
            validate_destination(request.destination)
            require_names(who, [request.destination], "intention Delete")
            revision = await self.intentions.delete(request.source, request.destination)
            return pb.DeleteIntentionResponse(revision=revision)
        except Exception as exc:
            await _abort(context, exc, "Delete")
            raise

    async def List(
        self, request: pb.ListIntentionsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListIntentionsResponse:
        try:
            require_discovery(identity(self.auth, context), "intention List")
            listing = await self.intentions.list()
            return pb.ListIntentionsResponse(
                intentions=[
                    pb.Intention(source=i.source, destination=i.destination, action=i.action.value)
                    for i in listing.intentions
                ],
                default_action=listing.default.value,
                default_stored=listing.default_stored,
                revision=listing.revision,
            )
        except Exception as exc:
            await _abort(context, exc, "List")
            raise

    async def SetDefault(
        self, request: pb.SetDefaultRequest, context: grpc.aio.ServicerContext
    ) -> pb.SetDefaultResponse:
        try:
            who = identity(self.auth, context)
            parse_action(request.action, "default")
            require_admin(who, "intention SetDefault (the mesh default)")
            return pb.SetDefaultResponse(revision=await self.intentions.set_default(request.action))
        except Exception as exc:
            await _abort(context, exc, "SetDefault")
            raise
