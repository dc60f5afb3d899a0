"""The TokenService gRPC servicer: creates, revokes and lists API tokens (admin only), and says who a token is."""

from __future__ import annotations

import time

import grpc

from meshactors import log
from meshactors.auth.guard import Authenticator
from meshactors.auth.model import Role, TokenRecord, mint, require_admin
from meshactors.errors import InvalidArgument, MeshError, Unauthenticated
from meshactors.registry.service import grpc_code, identity
from meshactors.store.base import Store
from meshactors.store.keys import KeySchema
from meshactors.store.tokens import TokenStore
from meshactors.v1 import auth_pb2 as pb
from meshactors.v1 import auth_pb2_grpc as pb_grpc

_log = log.get("registry.token_api")

ROLE_TO_PB = {Role.ADMIN: pb.ROLE_ADMIN, Role.SERVICE: pb.ROLE_SERVICE, Role.PROXY: pb.ROLE_PROXY}
ROLE_FROM_PB = {v: k for k, v in ROLE_TO_PB.items()}


def info_to_pb(record: TokenRecord) -> pb.TokenInfo:
    return pb.TokenInfo(
        id=record.id, role=ROLE_TO_PB[record.role], service=record.service, vips=list(record.vips),
        node=record.node, description=record.description, created_ms=record.created_ms,
    )  # fmt: skip


async def _abort(context: grpc.aio.ServicerContext, exc: BaseException, method: str) -> None:
    if isinstance(exc, grpc.aio.AbortError):
        raise exc
    if isinstance(exc, MeshError):
        await context.abort(grpc_code(exc), exc.message)
    _log.exception("unexpected error in token API", method=method, error=repr(exc)[:200])
    await context.abort(grpc.StatusCode.INTERNAL, f"internal error in {method}")


class TokenService(pb_grpc.TokenServiceServicer):
    def __init__(self, store: Store, keys: KeySchema, auth: Authenticator) -> None:
        self.tokens = TokenStore(store, keys)
        self.auth = auth

    async def CreateToken(
        self, request: pb.CreateTokenRequest, context: grpc.aio.ServicerContext
    ) -> pb.CreateTokenResponse:
        try:
            who = identity(self.auth, context)
            require_admin(who, "token create")
            role = ROLE_FROM_PB.get(request.role)
            if role is None:
                raise InvalidArgument("role", "is required: admin, service or proxy")
            token, record = mint(
                role, service=request.service, vips=request.vips, node=request.node,
                description=request.description, created_ms=int(time.time() * 1000),
            )  # fmt: skip
            await self.tokens.create(record)
            _log.info("token created", id=record.id, role=role.value, service=record.service, by=who.principal)
            return pb.CreateTokenResponse(token=token, info=info_to_pb(record))
        except Exception as exc:
            await _abort(context, exc, "CreateToken")
            raise

    async def RevokeToken(
        self, request: pb.RevokeTokenRequest, context: grpc.aio.ServicerContext
    ) -> pb.RevokeTokenResponse:
        try:
            who = identity(self.auth, context)
            require_admin(who, "token revoke")
            revision = await self.tokens.revoke(request.id)
            _log.info("token revoked", id=request.id, by=who.principal)
            return pb.RevokeTokenResponse(revision=revision)
        except Exception as exc:
            await _abort(context, exc, "RevokeToken")
            raise

    async def ListTokens(
        self, request: pb.ListTokensRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListTokensResponse:
        try:
            require_admin(identity(self.auth, context), "token ls")
            return pb.ListTokensResponse(tokens=[info_to_pb(r) for r in await self.tokens.list()])
        except Exception as exc:
            await _abort(context, exc, "ListTokens")
            raise

    async def WhoAmI(self, request: pb.WhoAmIRequest, context: grpc.aio.ServicerContext) -> pb.WhoAmIResponse:
        try:
            who = identity(self.auth, context)
            record = self.auth.table.records.get(who.token_id)
            if record is None:  # revoked between the check and here
                raise Unauthenticated("unknown or revoked token")
            return pb.WhoAmIResponse(info=info_to_pb(record))
        except Exception as exc:
            await _abort(context, exc, "WhoAmI")
            raise
