"""Snapshot: the typed resources one source key (a VIP, an identity, ...) publishes, in xDS send order."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from meshactors.resources.types import (
    CLUSTER,
    DEFAULT_KIND,
    ENDPOINT,
    ENVOY_KIND,
    Ref,
    VersionedResource,
    send_rank,
)

# (type URL, name, variant) -> version: what a holder of a snapshot tells its source it has.
Versions = dict[tuple[str, str, str], str]


@dataclass(frozen=True, slots=True)
class Inconsistency:
    """One dangling reference: `referrer` (type URL, name) names `missing`, which the snapshot lacks."""

    referrer: Ref
    missing: Ref

    def __str__(self) -> str:
        return f"{_short(self.referrer[0])} {self.referrer[1]!r} names {_short(self.missing[0])} {self.missing[1]!r}"


# What a snapshot says of the policy it was compiled from is shown per session by `status`: bounded here, once.
MAX_POLICY_LEFT_OUT = 32  # left-out fields kept per variant (the rest counted as one last entry)
MAX_POLICY_TEXT_CHARS = 200  # per left-out entry, digest and document name


def _cut(text: str, limit: int = MAX_POLICY_TEXT_CHARS) -> str:
    return text if len(text) <= limit else f"{text[:limit]}...(+{len(text) - limit} chars)"


@dataclass(frozen=True, slots=True)
class PolicyVariant:
    """One client kind's variant of a compiled policy: what that kind was not sent ("field path: reason")."""

    kind: str  # ENVOY_KIND (the default variant, every kind without one of its own) or GRPC_KIND
    left_out: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class PolicySummary:
    """Which traffic policy a snapshot's resources were compiled from, with no protobuf: `digest` hashes the
    effective (merged) document, `revisions` are the etcd mod revisions of the documents merged into it (the VIP's
    and `*`), and each variant says what its client kind was not sent. Built with `of`, which bounds it."""

    digest: str
    revisions: tuple[tuple[str, int], ...] = ()
    variants: tuple[PolicyVariant, ...] = ()

    @classmethod
    def of(
        cls,
        digest: str,
        revisions: Iterable[tuple[str, int]] = (),
        left_out: Mapping[str, Iterable[str]] | None = None,
    ) -> PolicySummary:
        variants = []
        for kind, entries in sorted((left_out or {}).items()):
            items = list(dict.fromkeys(entries))
            kept = [_cut(e) for e in items[:MAX_POLICY_LEFT_OUT]]
            if len(items) > MAX_POLICY_LEFT_OUT:
                kept.append(f"... and {len(items) - MAX_POLICY_LEFT_OUT} more")
            variants.append(PolicyVariant(kind, tuple(kept)))
        revs = tuple((_cut(doc), int(rev)) for doc, rev in list(revisions)[:2])
        return cls(_cut(digest), revs, tuple(variants))

    def variant_for(self, kind: str) -> PolicyVariant:
        """The variant a session of client `kind` reads: its own, else the Envoy one (the default variant)."""
        for variant in self.variants:
            if variant.kind == kind:
                return variant
        for variant in self.variants:
            if variant.kind == ENVOY_KIND:
                return variant
        return PolicyVariant(ENVOY_KIND)


def _short(type_url: str) -> str:
    return type_url.rsplit(".", 1)[-1]


def _order(res: VersionedResource) -> tuple[int, str, str, str]:
    return (send_rank(res.type_url), res.type_url, res.name, res.variant)


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Every resource one key publishes, each versioned by a hash of its bytes, sorted in send order.

    Built by a source (e.g. the per-VIP builder) and shared read-only by every xDS session that holds it. `notes`
    carries what the builder wants logged (e.g. instances left out of the endpoints, with why); it takes part
    in no version and no comparison. `changed_at` is when the source saw the change a pushed snapshot carries
    (wall clock seconds; 0: unknown, e.g. an answer to a fetch): what convergence time is measured from; it
    takes part in no comparison either. `policy` says which traffic policy the resources were compiled from
    (None: none); it takes part in comparisons, so a new policy revision reaches the holders even when it
    changed no resource's bytes, but in no version.
    """

    key: str
    resources: tuple[VersionedResource, ...]
    notes: tuple[tuple[str, str], ...] = field(default=(), compare=False)
    changed_at: float = field(default=0.0, compare=False)
    policy: PolicySummary | None = None
    _index: dict[tuple[str, str, str], VersionedResource] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def of(
        cls,
        key: str,
        resources: Iterable[VersionedResource],
        notes: Iterable[tuple[str, str]] = (),
        policy: PolicySummary | None = None,
    ) -> Snapshot:
        ordered = tuple(sorted(resources, key=_order))
        index = {res.key: res for res in ordered}
        if len(index) != len(ordered):
            dupes = sorted({r.key for r in ordered if sum(1 for o in ordered if o.key == r.key) > 1})
            raise ValueError(f"snapshot {key!r} holds {dupes[0]} more than once")
        return cls(key, ordered, tuple(notes), 0.0, policy, index)

    def stamped(self, changed_at: float) -> Snapshot:
        """This snapshot carrying `changed_at` (the same resources, shared)."""
        return Snapshot(self.key, self.resources, self.notes, changed_at, self.policy, self._index)

    def get(self, type_url: str, name: str, kind: str = DEFAULT_KIND) -> VersionedResource | None:
        """The variant of (type URL, name) for a client `kind`, else the default variant, else None."""
        if kind != DEFAULT_KIND:
            found = self._index.get((type_url, name, kind))
            if found is not None:
                return found
        return self._index.get((type_url, name, DEFAULT_KIND))

    def has(self, type_url: str, name: str) -> bool:
        """True when some variant of (type URL, name) is present."""
        return any(r.type_url == type_url and r.name == name for r in self.resources)

    def names(self, type_url: str) -> list[str]:
        """The names of a type URL (each once, whatever its variants), in send order."""
        return list(dict.fromkeys(r.name for r in self.resources if r.type_url == type_url))

    def type_urls(self) -> list[str]:
        return list(dict.fromkeys(r.type_url for r in self.resources))

    def versions(self) -> Versions:
        return {res.key: res.version for res in self.resources}

    def differs(self, held: Mapping[tuple[str, str, str], str]) -> bool:
        """True when `held` (what someone has of this key) is not exactly this snapshot's versions."""
        return dict(held) != self.versions()

    def changed_since(self, old: Snapshot | None) -> list[Ref]:
        """The (type URL, name) pairs whose content (in any variant) differs from `old`, in send order."""
        before = old.versions() if old is not None else {}
        after = self.versions()
        changed = [k for k in after if before.get(k) != after[k]] + [k for k in before if k not in after]
        seen: dict[Ref, None] = {}
        for type_url, name, _variant in sorted(changed, key=lambda k: (send_rank(k[0]), k)):
            seen[(type_url, name)] = None
        return list(seen)

    def consistent(self, available: Iterable[Ref] = ()) -> list[Inconsistency]:
        """Every reference a resource makes that neither this snapshot nor `available` can satisfy.

        In the spirit of go-control-plane's `Snapshot.Consistent()`: every cluster a route or a weighted split
        names is present, every EDS cluster has its assignment, every secret a cluster or listener names is
        present. References are declared by the builder on each resource (`VersionedResource.refs`), so the
        rule holds for any type a source adds. Empty list: consistent.
        """
        have = {(r.type_url, r.name) for r in self.resources} | set(available)
        out: list[Inconsistency] = []
        for res in self.resources:
            for ref in res.refs:
                if ref not in have:
                    out.append(Inconsistency((res.type_url, res.name), ref))
        return out


def eds_refs(cluster_name: str) -> tuple[Ref, ...]:
    """What an EDS Cluster needs: its ClusterLoadAssignment (same name)."""
    return ((ENDPOINT, cluster_name),)


def cluster_refs(*cluster_names: str) -> tuple[Ref, ...]:
    """What a listener, route or virtual host needs: the clusters it routes to."""
    return tuple((CLUSTER, name) for name in cluster_names)
