"""A small synchronous client of the PolicyService (CLI, tests): pure gRPC, gRPC codes mapped to our errors."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import grpc

from meshactors.errors import InvalidArgument
from meshactors.registry.client import error_from_rpc
from meshactors.v1 import policy_pb2 as pb
from meshactors.v1 import policy_pb2_grpc as pb_grpc

ACTION_NAMES = {
    pb.PolicyChange.ACTION_CREATED: "created",
    pb.PolicyChange.ACTION_UPDATED: "updated",
    pb.PolicyChange.ACTION_UNCHANGED: "unchanged",
}


def document_of(stored: pb.StoredPolicy) -> dict[str, Any]:
    """The stored document of a StoredPolicy as a map (camelCase, as in policy files)."""
    return json.loads(stored.document_json)


class PolicyClient:
    """PolicyService on the registry API's address (the same `--registry HOST:PORT`)."""

    def __init__(self, target: str, timeout_s: float = 10.0) -> None:
        self.target = target
        self.timeout_s = timeout_s
        self.channel = grpc.insecure_channel(target)
        self.stub = pb_grpc.PolicyServiceStub(self.channel)

    def close(self) -> None:
        self.channel.close()

    def __enter__(self) -> PolicyClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(self, method: str, request: Any) -> Any:
        try:
            return getattr(self.stub, method)(request, timeout=self.timeout_s)
        except grpc.RpcError as exc:
            raise error_from_rpc(exc, self.target) from exc

    def apply(
        self, text: str, *, dry_run: bool = False, expected_revisions: Mapping[str, int] | None = None
    ) -> pb.ApplyResponse:
        if not text.strip():
            raise InvalidArgument("text", "holds no policy document")
        req = pb.ApplyRequest(text=text, dry_run=dry_run, expected_revisions=dict(expected_revisions or {}))
        return self._call("Apply", req)

    def get(self, vip: str) -> pb.GetPolicyResponse:
        return self._call("Get", pb.GetPolicyRequest(vip=vip))

    def list(self) -> tuple[list[pb.StoredPolicy], int]:
        resp = self._call("List", pb.ListPoliciesRequest())
        return list(resp.policies), int(resp.revision)

    def delete(self, vip: str, expected_revision: int = 0) -> int:
        return int(self._call("Delete", pb.DeletePolicyRequest(vip=vip, expected_revision=expected_revision)).revision)
