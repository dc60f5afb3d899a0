"""PolicyStore: traffic policy documents in etcd, one key per VIP: validated in full, applied all or nothing, fenced.

An apply reads every stored document at one revision, validates the new ones against it (each VIP's document
merged over the `*` one; a new `*` document against every stored VIP document), and writes what changed in one
etcd transaction fenced on what it read, so a concurrent write makes it start over rather than leave an
inconsistent set. Unchanged documents are not written. `version_problems` are reported, never refused.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import yaml

from meshactors import log
from meshactors.errors import Conflict, InvalidArgument, NotFound
from meshactors.model import Status
from meshactors.policy import codec as policy_codec
from meshactors.policy.load import InvalidPolicy, PolicyError, load, merge, to_document
from meshactors.policy.model import MESH_WIDE, Policy
from meshactors.policy.problems import version_problems
from meshactors.store.base import MAX_TXN_OPS, KeyValue, Store, Txn
from meshactors.store.feed import load_instances
from meshactors.store.keys import KeySchema
from meshactors.store.policy_feed import StoredPolicy, _Decoder

_log = log.get("store.policies")

MAX_WRITES = MAX_TXN_OPS - 1  # the documents one apply may change: etcd also compares the `*` key
APPLY_ATTEMPTS = 3  # an apply that lost a race to another policy write is re-read and re-validated this often
_LOGGED_VIPS = 10
_CLIP = 64

Action = Literal["created", "updated", "unchanged"]


@dataclass(frozen=True, slots=True)
class PolicyChange:
    """What an apply does (or, dry, would do) to one VIP's document; `diff` is a unified diff of the YAML."""

    vip: str
    action: Action
    diff: str
    previous_revision: int  # the stored document's mod revision, 0 when there was none


@dataclass(frozen=True, slots=True)
class Problem:
    """Something an accepted policy cannot do with the instances the VIP has now (a warning, not an error)."""

    vip: str
    field: str
    reason: str


@dataclass(frozen=True, slots=True)
class ApplyResult:
    changes: tuple[PolicyChange, ...]
    problems: tuple[Problem, ...]
    revision: int  # the transaction's revision; the revision read when nothing was written (or a dry run)
    dry_run: bool


def document_yaml(policy: Policy) -> str:
    """The stored form of a document as YAML, fields in declaration order (what `get` prints and diffs show)."""
    return yaml.safe_dump(to_document(policy), sort_keys=False, default_flow_style=False)


def document_json(policy: Policy) -> str:
    return json.dumps(to_document(policy), separators=(",", ":"))


def _diff(vip: str, old: Policy | None, new: Policy, old_revision: int) -> str:
    before = document_yaml(old).splitlines(keepends=True) if old is not None else []
    after = document_yaml(new).splitlines(keepends=True)
    where = f"{vip} (revision {old_revision})" if old_revision else f"{vip} (none)"
    return "".join(difflib.unified_diff(before, after, fromfile=where, tofile=f"{vip} (applied)"))


def _clip(text: str) -> str:
    return text if len(text) <= _CLIP else f"{text[:_CLIP]}..."


def _vips_for_log(vips: list[str]) -> list[str]:
    return [_clip(v) for v in vips[:_LOGGED_VIPS]] + (
        [f"+{len(vips) - _LOGGED_VIPS}"] if len(vips) > _LOGGED_VIPS else []
    )


@dataclass(frozen=True, slots=True)
class _Read:
    """Every policy key at one revision: decoded documents, and the raw key values (a corrupt one still fences)."""

    documents: dict[str, StoredPolicy]
    raw: dict[str, KeyValue]
    revision: int


class PolicyStore:
    """Apply / get / list / delete policy documents under `keys.policies` (see the module docstring)."""

    def __init__(self, store: Store, keys: KeySchema) -> None:
        self.store = store
        self.keys = keys

    async def _read(self) -> _Read:
        kvs, revision = await self.store.list_prefix(self.keys.policies)
        decoder = _Decoder(self.keys, "policy-store", None)
        documents: dict[str, StoredPolicy] = {}
        for kv in kvs:
            put = decoder.put(kv.key, kv.value, kv.mod_revision)
            if put is not None:
                documents[put.vip] = StoredPolicy(put.vip, put.policy, kv.mod_revision, kv.create_revision)
        return _Read(documents, {kv.key: kv for kv in kvs}, revision)

    async def _up_versions(self) -> dict[str, list[str]]:
        """Version labels of every UP instance, by each VIP/SVIP name it serves."""
        items, _ = await load_instances(self.store, self.keys, name="policy-problems")
        out: dict[str, list[str]] = {}
        for item in items:
            inst = item.instance
            if inst.status is Status.UP:
                for name in inst.names():
                    out.setdefault(name, []).append(inst.version_label)
        return out

    async def problems(self, policies: list[Policy]) -> list[Problem]:
        """The version problems of these documents against the UP instances registered now."""
        vips = [p for p in policies if not p.mesh_wide and p.versions()]
        if not vips:
            return []
        up = await self._up_versions()
        return [
            Problem(p.vip, path, reason) for p in vips for path, reason in version_problems(p.vip, p, up.get(p.vip, ()))
        ]

    # ---- apply ---------------------------------------------------------------------------------------------

    async def apply(
        self, text: str, *, dry_run: bool = False, expected_revisions: Mapping[str, int] | None = None
    ) -> ApplyResult:
        """Validate every document of `text` against what is stored, then write the changed ones in one transaction.

        InvalidPolicy (nothing written) for any bad document; `expected_revisions` (VIP -> the mod revision its
        document must be at, 0: must not exist) fences the apply: Conflict when one moved. Without it an apply
        that lost a race to another policy write is re-read and re-validated (APPLY_ATTEMPTS times).
        """
        expected = dict(expected_revisions or {})
        for attempt in range(1, APPLY_ATTEMPTS + 1):
            try:
                return await self._apply_once(text, dry_run, expected)
            except _Raced as exc:
                if expected or attempt == APPLY_ATTEMPTS:
                    raise exc.conflict from None
                _log.info("policy apply raced another write; retrying", attempt=attempt, error=_clip(str(exc)))
        raise AssertionError("unreachable")

    async def _apply_once(self, text: str, dry_run: bool, expected: dict[str, int]) -> ApplyResult:
        read = await self._read()
        mesh_stored = read.documents.get(MESH_WIDE)
        policies = load(text, defaults=mesh_stored.policy if mesh_stored else None)
        by_vip = {p.vip: p for p in policies}
        self._check_expected(expected, by_vip, read)
        new_mesh = by_vip.get(MESH_WIDE)
        if new_mesh is not None:
            self._check_stored_against(new_mesh, read, by_vip)

        changes: list[PolicyChange] = []
        puts: dict[str, bytes] = {}
        for policy in policies:
            key = self.keys.policy(policy.vip)
            value = policy_codec.encode(policy)
            raw = read.raw.get(key)
            old = read.documents.get(policy.vip)
            if raw is not None and raw.value == value:
                changes.append(PolicyChange(policy.vip, "unchanged", "", raw.mod_revision))
                continue
            old_rev = raw.mod_revision if raw is not None else 0
            action: Action = "created" if raw is None else "updated"
            changes.append(
                PolicyChange(policy.vip, action, _diff(policy.vip, old and old.policy, policy, old_rev), old_rev)
            )
            puts[key] = value
        if len(puts) > MAX_WRITES:
            raise InvalidArgument(
                "document", f"{len(puts)} documents change, at most {MAX_WRITES} in one apply (split the file)"
            )
        problems = await self.problems(policies)
        changed = [c.vip for c in changes if c.action != "unchanged"]
        if dry_run or not puts:
            _log.info("policy apply", dry_run=dry_run, changed=_vips_for_log(changed), revision=read.revision)
            return ApplyResult(tuple(changes), tuple(problems), read.revision, dry_run)

        mesh_key = self.keys.policy(MESH_WIDE)
        fences = {key: (read.raw[key].mod_revision if key in read.raw else 0) for key in puts}
        fences[mesh_key] = read.raw[mesh_key].mod_revision if mesh_key in read.raw else 0
        txn = Txn(
            puts=puts,
            expect=fences,
            # a new `*` document was checked against every VIP document: none may have been written since
            quiet_prefix=self.keys.policies if mesh_key in puts else "",
            quiet_since=read.revision,
        )
        try:
            revision = await self.store.commit(txn)
        except Conflict as exc:
            raise _Raced(exc) from exc
        _log.info("policy apply", dry_run=False, changed=_vips_for_log(changed), revision=revision)
        return ApplyResult(tuple(changes), tuple(problems), revision, False)

    def _check_expected(self, expected: dict[str, int], by_vip: dict[str, Policy], read: _Read) -> None:
        errors = []
        for vip, rev in expected.items():
            if vip not in by_vip:
                errors.append(PolicyError(f"expected_revisions[{_clip(vip)!r}]", "names no document of this apply"))
            elif rev < 0:
                errors.append(PolicyError(f"expected_revisions[{vip!r}]", f"{rev} is not a revision (0: not stored)"))
        if errors:
            raise InvalidPolicy(errors)
        moved = []
        for vip, rev in expected.items():
            raw = read.raw.get(self.keys.policy(vip))
            now = raw.mod_revision if raw is not None else 0
            if now != rev:
                moved.append(f"the policy of {vip} is at revision {now}, expected {rev}" if now else
                             f"the policy of {vip} does not exist, expected revision {rev}")  # fmt: skip
        if moved:
            raise Conflict("; ".join(moved))

    def _check_stored_against(self, new_mesh: Policy, read: _Read, by_vip: dict[str, Policy]) -> None:
        """A new `*` document must merge with every stored VIP document this apply does not replace."""
        errors: list[PolicyError] = []
        for vip, stored in sorted(read.documents.items()):
            if vip == MESH_WIDE or vip in by_vip:
                continue
            try:
                merge(new_mesh, stored.policy)
            except InvalidPolicy as exc:
                errors += [
                    PolicyError(e.field, f"{e.reason} (the stored policy of {vip} over the new '*' document)", vip=vip)
                    for e in exc.errors
                ]
        if errors:
            raise InvalidPolicy(errors)

    # ---- read and delete -----------------------------------------------------------------------------------

    async def get(self, vip: str) -> StoredPolicy:
        """The stored document of `vip` (`*`: the mesh-wide one); NotFound if none, CodecError if unreadable."""
        key = self._key(vip)
        kv = await self.store.get(key)
        if kv is None:
            raise NotFound(f"no policy for {vip}")
        return StoredPolicy(vip, policy_codec.decode(kv.value), kv.mod_revision, kv.create_revision)

    async def list(self) -> tuple[list[StoredPolicy], int]:
        """Every stored (decodable) document, `*` first then by VIP, and the listing's revision."""
        read = await self._read()
        order = sorted(read.documents.values(), key=lambda s: (s.vip != MESH_WIDE, s.vip))
        return order, read.revision

    async def delete(self, vip: str, expected_revision: int | None = None) -> int:
        """Delete `vip`'s document; its revision. NotFound if none, Conflict if it is no longer at
        `expected_revision`. Deleting `*` is refused (InvalidPolicy) when a stored VIP document needs it."""
        key = self._key(vip)
        read = await self._read()
        raw = read.raw.get(key)
        if raw is None:
            raise NotFound(f"no policy for {vip}")
        if expected_revision is not None and raw.mod_revision != expected_revision:
            raise Conflict(f"the policy of {vip} is at revision {raw.mod_revision}, expected {expected_revision}")
        if vip == MESH_WIDE:
            errors: list[PolicyError] = []
            for other, stored in sorted(read.documents.items()):
                if other == MESH_WIDE:
                    continue
                try:
                    merge(None, stored.policy)
                except InvalidPolicy as exc:
                    errors += [
                        PolicyError(e.field, f"{e.reason} (the stored policy of {other} without '*')", vip=other)
                        for e in exc.errors
                    ]
            if errors:
                raise InvalidPolicy(errors)
        txn = Txn(
            deletes=(key,),
            expect={key: raw.mod_revision},
            quiet_prefix=self.keys.policies if vip == MESH_WIDE else "",
            quiet_since=read.revision,
        )
        revision = await self.store.commit(txn)
        _log.info("policy deleted", vip=_clip(vip), revision=revision)
        return revision

    def _key(self, vip: str) -> str:
        if not vip:
            raise InvalidArgument("vip", "must not be empty")
        return self.keys.policy(vip)


class _Raced(Exception):
    """The apply's transaction found a fenced key moved: read, validate and diff again."""

    def __init__(self, conflict: Conflict) -> None:
        super().__init__(conflict.message)
        self.conflict = conflict


def result_document(result: ApplyResult) -> dict[str, Any]:
    """An ApplyResult as plain data (for logs and `--json`)."""
    return {
        "dry_run": result.dry_run,
        "revision": result.revision,
        "changes": [{"vip": c.vip, "action": c.action, "diff": c.diff} for c in result.changes],
        "problems": [{"vip": p.vip, "field": p.field, "reason": p.reason} for p in result.problems],
    }
