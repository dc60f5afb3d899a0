"""A small synchronous client of the IntentionService (CLI, tests): pure gRPC, gRPC codes mapped to our errors."""

from __future__ import annotations

from meshactors.registry.client import GrpcClient
from meshactors.v1 import intention_pb2 as pb
from meshactors.v1 import intention_pb2_grpc as pb_grpc


class IntentionClient(GrpcClient):
    """IntentionService on the registry API's address (the same `--registry HOST:PORT`)."""

    stub_class = pb_grpc.IntentionServiceStub

    def set(self, source: str, destination: str, action: str) -> pb.SetIntentionResponse:
        req = pb.SetIntentionRequest(intention=pb.Intention(source=source, destination=destination, action=action))
        return self._call("Set", req)

    def delete(self, source: str, destination: str) -> int:
        resp = self._call("Delete", pb.DeleteIntentionRequest(source=source, destination=destination))
        return int(resp.revision)

    def list(self) -> pb.ListIntentionsResponse:
        return self._call("List", pb.ListIntentionsRequest())

    def set_default(self, action: str) -> int:
        return int(self._call("SetDefault", pb.SetDefaultRequest(action=action)).revision)
