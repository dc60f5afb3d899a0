"""The PolicyService gRPC servicer: traffic policy documents in and out of the PolicyStore, errors as gRPC codes."""

from __future__ import annotations

import grpc

from meshactors import log
from meshactors.auth.guard import Authenticator
from meshactors.auth.model import require_admin, require_discovery
from meshactors.errors import InvalidArgument, MeshError
from meshactors.policy.load import InvalidPolicy
from meshactors.registry.service import grpc_code, identity
from meshactors.store.base import Store
from meshactors.store.keys import KeySchema
from meshactors.store.policies import ApplyResult, PolicyStore, Problem, document_json
from meshactors.store.policy_feed import StoredPolicy
from meshactors.v1 import policy_pb2 as pb
from meshactors.v1 import policy_pb2_grpc as pb_grpc

_log = log.get("registry.policy_api")

MAX_REPORTED_ERRORS = 20  # errors spelled out in one INVALID_ARGUMENT message (the rest are counted)
MAX_MESSAGE_CHARS = 4000  # a status message travels in a trailer: keep it well under gRPC's 8 KiB metadata limit

_ACTIONS = {
    "created": pb.PolicyChange.ACTION_CREATED,
    "updated": pb.PolicyChange.ACTION_UPDATED,
    "unchanged": pb.PolicyChange.ACTION_UNCHANGED,
}


def error_message(exc: MeshError) -> str:
    """One line, bounded: every problem of an InvalidPolicy up to MAX_REPORTED_ERRORS, then how many more."""
    if isinstance(exc, InvalidPolicy) and len(exc.errors) > MAX_REPORTED_ERRORS:
        shown = "; ".join(e.message for e in exc.errors[:MAX_REPORTED_ERRORS])
        text = f"{shown}; ... and {len(exc.errors) - MAX_REPORTED_ERRORS} more"
    else:
        text = exc.message
    text = " ".join(text.splitlines())
    return text if len(text) <= MAX_MESSAGE_CHARS else f"{text[: MAX_MESSAGE_CHARS - 20]}... (truncated)"


async def _abort(context: grpc.aio.ServicerContext, exc: BaseException, method: str) -> None:
    if isinstance(exc, grpc.aio.AbortError):
        raise exc
    if isinstance(exc, MeshError):
        await context.abort(grpc_code(exc), error_message(exc))
    _log.exception("unexpected error in policy API", method=method, error=repr(exc)[:200])
    await context.abort(grpc.StatusCode.INTERNAL, f"internal error in {method}: {exc!r}"[:MAX_MESSAGE_CHARS])


def stored_to_pb(stored: StoredPolicy) -> pb.StoredPolicy:
    return pb.StoredPolicy(
        vip=stored.vip,
        document_json=document_json(stored.policy),
        mod_revision=stored.mod_revision,
        create_revision=stored.create_revision,
    )


def problem_to_pb(problem: Problem) -> pb.Problem:
    return pb.Problem(vip=problem.vip, field=problem.field, reason=problem.reason)


def apply_to_pb(result: ApplyResult) -> pb.ApplyResponse:
    return pb.ApplyResponse(
        changes=[
            pb.PolicyChange(vip=c.vip, action=_ACTIONS[c.action], diff=c.diff, previous_revision=c.previous_revision)
            for c in result.changes
        ],
        problems=[problem_to_pb(p) for p in result.problems],
        revision=result.revision,
    )


class PolicyService(pb_grpc.PolicyServiceServicer):
    """Apply and Delete need an admin token; Get and List any valid one."""

    def __init__(self, store: Store, keys: KeySchema, auth: Authenticator) -> None:
        self.policies = PolicyStore(store, keys)
        self.auth = auth

    async def Apply(self, request: pb.ApplyRequest, context: grpc.aio.ServicerContext) -> pb.ApplyResponse:
        try:
            require_admin(identity(self.auth, context), "policy Apply")
            if not request.text.strip():
                raise InvalidArgument("text", "holds no policy document")
            result = await self.policies.apply(
                request.text, dry_run=request.dry_run, expected_revisions=dict(request.expected_revisions)
            )
            return apply_to_pb(result)
        except Exception as exc:
            if isinstance(exc, InvalidPolicy):
                _log.info("policy apply refused", errors=len(exc.errors), first=exc.errors[0].message[:200])
            await _abort(context, exc, "Apply")
            raise

    async def Get(self, request: pb.GetPolicyRequest, context: grpc.aio.ServicerContext) -> pb.GetPolicyResponse:
        try:
            require_discovery(identity(self.auth, context), "policy Get")
            stored = await self.policies.get(request.vip)
            problems = await self.policies.problems([stored.policy])
            return pb.GetPolicyResponse(policy=stored_to_pb(stored), problems=[problem_to_pb(p) for p in problems])
        except Exception as exc:
            await _abort(context, exc, "Get")
            raise

    async def List(self, request: pb.ListPoliciesRequest, context: grpc.aio.ServicerContext) -> pb.ListPoliciesResponse:
        try:
            require_discovery(identity(self.auth, context), "policy List")
            items, revision = await self.policies.list()
            problems = await self.policies.problems([s.policy for s in items]) if request.problems else []
            return pb.ListPoliciesResponse(
                policies=[stored_to_pb(s) for s in items], revision=revision,
                problems=[problem_to_pb(p) for p in problems],
            )  # fmt: skip
        except Exception as exc:
            await _abort(context, exc, "List")
            raise

    async def Delete(
        self, request: pb.DeletePolicyRequest, context: grpc.aio.ServicerContext
    ) -> pb.DeletePolicyResponse:
        try:
            require_admin(identity(self.auth, context), "policy Delete")
            if request.expected_revision < 0:
                raise InvalidArgument("expected_revision", "must be 0 (any) or a revision")
            revision = await self.policies.delete(request.vip, request.expected_revision or None)
            return pb.DeletePolicyResponse(revision=revision)
        except Exception as exc:
            await _abort(context, exc, "Delete")
            raise
