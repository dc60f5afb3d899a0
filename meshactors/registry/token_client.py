"""A small synchronous client of the TokenService (CLI, tests): gRPC codes mapped to our errors."""

from __future__ import annotations

from meshactors.registry.client import GrpcClient
from meshactors.v1 import auth_pb2 as pb
from meshactors.v1 import auth_pb2_grpc as pb_grpc

ROLE_NAMES = {pb.ROLE_ADMIN: "admin", pb.ROLE_SERVICE: "service", pb.ROLE_PROXY: "proxy"}
ROLES = {name: role for role, name in ROLE_NAMES.items()}


class TokenClient(GrpcClient):
    """TokenService on the registry API's address."""

    stub_class = pb_grpc.TokenServiceStub

    def create(
        self, role: str, service: str = "", vips: list[str] | None = None, node: str = "", description: str = ""
    ) -> tuple[str, pb.TokenInfo]:
        req = pb.CreateTokenRequest(
            role=ROLES[role], service=service, vips=vips or [], node=node, description=description
        )
        resp = self._call("CreateToken", req)
        return resp.token, resp.info

    def revoke(self, token_id: str) -> int:
        return int(self._call("RevokeToken", pb.RevokeTokenRequest(id=token_id)).revision)

    def list(self) -> list[pb.TokenInfo]:
        return list(self._call("ListTokens", pb.ListTokensRequest()).tokens)

    def whoami(self) -> pb.TokenInfo:
        return self._call("WhoAmI", pb.WhoAmIRequest()).info
