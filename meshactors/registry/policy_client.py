"""A small synchronous client of the PolicyService (CLI, tests): pure gRPC, gRPC codes mapped to our errors."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from meshactors.errors import InvalidArgument
from meshactors.registry.client import GrpcClient
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


class PolicyClient(GrpcClient):
    """PolicyService on the registry API's address (the same `--registry HOST:PORT`)."""

    stub_class = pb_grpc.PolicyServiceStub

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

    def problems(self) -> tuple[int, list[pb.Problem]]:
        """How many documents are stored, and their problems against the instances registered now."""
        resp = self._call("List", pb.ListPoliciesRequest(problems=True))
        return len(resp.policies), list(resp.problems)

    def delete(self, vip: str, expected_revision: int = 0) -> int:
        return int(self._call("Delete", pb.DeletePolicyRequest(vip=vip, expected_revision=expected_revision)).revision)
