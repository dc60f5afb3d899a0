"""Loading policy documents: YAML/JSON text in, validated `Policy` values out; merge with `*`; back to documents.

Errors: every problem found is reported, each as a `PolicyError` (an `InvalidArgument` whose `field` is the path
in the document, e.g. `routing.split[1].weight`, plus the document's number and VIP when the text held several).
`load` and `from_document` raise one `InvalidPolicy` (also an `InvalidArgument`, carrying the first error's field
and reason and all errors in `errors`) or return every policy: an apply of several documents is all or nothing.

Two levels of checks: a document on its own (types, bounds, unknown fields, weights, ...), and the effective
policy of a VIP, the `*` document merged with the VIP's (a hash key needs a hashing load balancer, hedging needs
a per-try timeout, ...): `merge` runs the second level, so a store applying a VIP document checks it against
the stored `*` document, and a new `*` document against every stored VIP document.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from decimal import Decimal, InvalidOperation
from typing import Any

import yaml

from meshactors.errors import InvalidArgument, MeshError
from meshactors.model.validate import validate_vip_name
from meshactors.policy.model import (
    HASH_LB_POLICIES,
    MESH_WIDE,
    Backoff,
    ConsistentHash,
    FaultAbort,
    Policy,
    RouteMatch,
    Routing,
    Spec,
    WeightedVersion,
    _Node,
    is_empty,
    specs,
)

MAX_TEXT_BYTES = 1 << 20
MAX_DOCUMENTS = 256
MAX_HEADER_NAME_LEN = 128
MAX_HEADER_VALUE_LEN = 256
MAX_TOKEN_LEN = 128
MAX_PREFIX_LEN = 256

_DURATION_RE = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")
_UNIT_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000}
_HEADER_RE = re.compile(r"[a-z0-9!#$%&'*+.^_`|~-]+")
_TOKEN_RE = re.compile(r"[A-Za-z0-9!#$%&'*+.^_`|~-]+")
_VERSION_RE = re.compile(r"[A-Za-z0-9._+-]{1,64}")
_PRINTABLE_RE = re.compile(r"[\x20-\x7e]*")
_MESH_WIDE_ONLY_PER_VIP = ("split", "routes", "mirror")


class PolicyError(InvalidArgument):
    """One problem of one document: `field` is its path, `document` its 1-based number when several were given."""

    def __init__(self, field: str, reason: str, document: int | None = None, vip: str = "") -> None:
        super().__init__(field, reason)
        self.document = document
        self.vip = vip
        if document is not None:
            where = f"document {document}" + (f" (vip {vip!r})" if vip else "")
            self.message = f"{where}: {field}: {reason}"
            self.args = (self.message,)


class InvalidPolicy(InvalidArgument):
    """Every problem of an apply; `field` and `reason` are the first one's, `errors` holds them all."""

    def __init__(self, errors: Sequence[PolicyError]) -> None:
        if not errors:
            raise ValueError("InvalidPolicy needs at least one error")
        super().__init__(errors[0].field, errors[0].reason)
        self.errors = tuple(errors)
        self.message = "; ".join(e.message for e in self.errors)
        self.args = (self.message,)


# --- durations and percentages ----------------------------------------------------------------------------


def parse_duration(text: str) -> int:
    """`100ms`, `2s`, `1.5s`, `1m`, `1h` -> whole milliseconds. ValueError for anything else."""
    m = _DURATION_RE.fullmatch(text) if isinstance(text, str) else None
    if m is None:
        raise ValueError(f"{text!r} is not a duration (a number and ms, s, m or h: 100ms, 2s, 1m)")
    try:
        ms = Decimal(m.group(1)) * _UNIT_MS[m.group(2)]
    except InvalidOperation:
        raise ValueError(f"{text!r} is not a duration") from None
    if ms != ms.to_integral_value():
        raise ValueError(f"{text!r} is not a whole number of milliseconds")
    return int(ms)


def format_duration(ms: int) -> str:
    """The shortest exact document form of a duration: 3600000 -> 1h, 60000 -> 1m, 2000 -> 2s, 1500 -> 1500ms."""
    for unit in ("h", "m", "s"):
        if ms % _UNIT_MS[unit] == 0:
            return f"{ms // _UNIT_MS[unit]}{unit}"
    return f"{ms}ms"


def _number_out(value: float) -> int | float:
    return int(value) if float(value).is_integer() else float(value)


# --- parsing one document ---------------------------------------------------------------------------------


class _Errors:
    def __init__(self) -> None:
        self.items: list[tuple[str, str]] = []

    def add(self, path: str, reason: str) -> None:
        self.items.append((path, reason))


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _kind(value: Any) -> str:
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a map"
    return type(value).__name__


def _bounded(value: float, s: Spec, path: str, errs: _Errors, unit: str = "") -> bool:
    if (s.lo is not None and value < s.lo) or (s.hi is not None and value > s.hi):
        lo = _number_out(s.lo) if s.lo is not None else "-"
        hi = _number_out(s.hi) if s.hi is not None else "-"
        if unit == "ms":
            lo = format_duration(int(s.lo)) if s.lo is not None else lo
            hi = format_duration(int(s.hi)) if s.hi is not None else hi
            shown = format_duration(int(value))
        else:
            shown = _number_out(value)
        errs.add(path, f"{shown} is out of range {lo}-{hi}")
        return False
    return True


def _scalar_str(value: Any, path: str, errs: _Errors, what: str) -> str | None:
    if not isinstance(value, str):
        errs.add(path, f"must be {what}, got {_kind(value)}")
        return None
    return value


def _parse_value(s: Spec, value: Any, path: str, errs: _Errors) -> Any:
    kind = s.kind
    if value is None:
        errs.add(path, "has no value (leave the field out instead)")
        return None
    if kind == "bool":
        if not isinstance(value, bool):
            errs.add(path, f"must be true or false, got {_kind(value)}")
            return None
        return value
    if kind == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            errs.add(path, f"must be a whole number, got {_kind(value)}")
            return None
        return value if _bounded(value, s, path, errs) else None
    if kind == "percent":
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            errs.add(path, f"must be a percentage (a number 0-100), got {_kind(value)}")
            return None
        return float(value) if _bounded(value, s, path, errs) else None
    if kind == "duration":
        text = _scalar_str(value, path, errs, "a duration like 100ms, 2s or 1m")
        if text is None:
            return None
        try:
            ms = parse_duration(text)
        except ValueError as exc:
            errs.add(path, str(exc))
            return None
        if ms == 0:
            errs.add(path, "must be longer than 0")
            return None
        return ms if _bounded(ms, s, path, errs, "ms") else None
    if kind == "enum":
        text = _scalar_str(value, path, errs, f"one of {', '.join(s.choices)}")
        if text is None:
            return None
        if text not in s.choices:
            errs.add(path, f"unknown value {text!r} (one of {', '.join(s.choices)})")
            return None
        return text
    if kind in ("header", "token", "prefix", "version", "vip"):
        text = _scalar_str(value, path, errs, "a string")
        return None if text is None else _check_name(kind, text, path, errs)
    if kind == "headers":
        return _parse_headers(s, value, path, errs)
    if kind == "object":
        return _parse_object(s.item, value, path, errs)
    if kind == "list":
        return _parse_list(s, value, path, errs)
    raise AssertionError(f"unknown spec kind {kind!r}")


def _check_name(kind: str, text: str, path: str, errs: _Errors) -> str | None:
    if kind == "header":
        if not 0 < len(text) <= MAX_HEADER_NAME_LEN or not _HEADER_RE.fullmatch(text):
            errs.add(path, f"{text!r} is not a lowercase HTTP header name (at most {MAX_HEADER_NAME_LEN} characters)")
            return None
    elif kind == "token":
        if not 0 < len(text) <= MAX_TOKEN_LEN or not _TOKEN_RE.fullmatch(text):
            errs.add(path, f"{text!r} is not a cookie or parameter name (at most {MAX_TOKEN_LEN} characters)")
            return None
    elif kind == "prefix":
        if not text.startswith("/") or len(text) > MAX_PREFIX_LEN or not _PRINTABLE_RE.fullmatch(text) or " " in text:
            errs.add(path, f"{text!r} is not a path prefix (starts with '/', at most {MAX_PREFIX_LEN} characters)")
            return None
    elif kind == "version":
        if not _VERSION_RE.fullmatch(text):
            errs.add(path, f"{text!r} is not a version label (letters, digits and . _ + -, 1-64 characters)")
            return None
    elif kind == "vip":
        try:
            validate_vip_name(text, path)
        except InvalidArgument as exc:
            errs.add(exc.field, exc.reason)
            return None
    return text


def _parse_headers(s: Spec, value: Any, path: str, errs: _Errors) -> tuple[tuple[str, str], ...] | None:
    if not isinstance(value, dict):
        errs.add(path, f"must be a map of header name to value, got {_kind(value)}")
        return None
    if not value:
        errs.add(path, "must not be empty (leave the field out instead)")
        return None
    if len(value) > s.max_items:
        errs.add(path, f"{len(value)} headers, at most {s.max_items} allowed")
        return None
    out: list[tuple[str, str]] = []
    ok = True
    for name, raw in value.items():
        where = f"{path}[{name!r}]"
        if not isinstance(name, str) or _check_name("header", name, where, errs) is None:
            if not isinstance(name, str):
                errs.add(where, f"header name must be a string, got {_kind(name)}")
            ok = False
            continue
        if not isinstance(raw, str):
            hint = " (quote it)" if isinstance(raw, bool | int | float) else ""
            errs.add(where, f"value must be a string{hint}, got {_kind(raw)}")
            ok = False
        elif len(raw) > MAX_HEADER_VALUE_LEN or not _PRINTABLE_RE.fullmatch(raw):
            errs.add(where, f"value must be printable ASCII, at most {MAX_HEADER_VALUE_LEN} characters")
            ok = False
        else:
            out.append((name, raw))
    return tuple(sorted(out)) if ok else None


def _parse_list(s: Spec, value: Any, path: str, errs: _Errors) -> tuple[Any, ...] | None:
    if not isinstance(value, list):
        errs.add(path, f"must be a list, got {_kind(value)}")
        return None
    if not value:
        errs.add(path, "must not be empty (leave the field out instead)")
        return None
    if len(value) > s.max_items:
        errs.add(path, f"{len(value)} entries, at most {s.max_items} allowed")
        return None
    before = len(errs.items)
    out = [_parse_value(s.item, item, f"{path}[{i}]", errs) for i, item in enumerate(value)]
    if len(errs.items) != before:
        return None
    if s.item.kind != "object":
        for i, item in enumerate(out):
            if item in out[:i]:
                errs.add(f"{path}[{i}]", f"{item!r} is listed twice")
                return None
    return tuple(out)


def _parse_object(cls: type[_Node], value: Any, path: str, errs: _Errors) -> Any:
    if not isinstance(value, dict):
        errs.add(path or "document", f"must be a map, got {_kind(value)}")
        return None
    known = {s.doc: (name, s) for name, s in specs(cls)}
    before = len(errs.items)
    values: dict[str, Any] = {}
    failed: set[str] = set()
    for key, raw in value.items():
        if not isinstance(key, str) or key not in known:
            errs.add(_join(path, str(key)), f"unknown field (known here: {', '.join(known)})")
            continue
        name, s = known[key]
        parsed = _parse_value(s, raw, _join(path, key), errs)
        if parsed is not None:
            values[name] = parsed
        else:
            failed.add(name)
    for name, s in specs(cls):
        if s.required and s.doc not in value:
            errs.add(_join(path, s.doc), "is required")
            failed.add(name)
    node = cls(**values)
    _check_node(node, path, errs, failed)
    return None if len(errs.items) != before else node


def _check_node(node: _Node, path: str, errs: _Errors, failed: set[str]) -> None:
    """The rules of one object beyond its fields' own (skipped where a field they read already failed)."""
    if isinstance(node, Routing):
        if "split" not in failed:
            _check_split(node.split or (), _join(path, "split"), errs)
        return
    if failed:
        return
    if isinstance(node, ConsistentHash):
        keys = [k for k in ("header", "cookie", "sourceIp", "queryParameter") if _doc_value(node, k) is not None]
        if len(keys) != 1:
            errs.add(path, f"needs exactly one of header, cookie, sourceIp, queryParameter, got {len(keys)}")
        if node.source_ip is False:
            errs.add(_join(path, "sourceIp"), "set it to true or leave it out")
        if node.cookie_ttl_ms is not None and node.cookie is None:
            errs.add(_join(path, "cookieTtl"), "applies only to a cookie key")
    elif isinstance(node, RouteMatch):
        if node.headers is None and node.prefix is None:
            errs.add(path, "needs headers or a prefix (the split is the route for everything else)")
    elif isinstance(node, FaultAbort):
        if (node.http_status is None) == (node.grpc_status is None):
            errs.add(path, "needs exactly one of httpStatus, grpcStatus")
    elif isinstance(node, Backoff):
        if node.max_interval_ms is not None and node.max_interval_ms < (node.base_interval_ms or 0):
            errs.add(_join(path, "maxInterval"), "must not be shorter than baseInterval")


def _doc_value(node: _Node, doc: str) -> Any:
    for name, s in specs(type(node)):
        if s.doc == doc:
            return getattr(node, name)
    raise KeyError(doc)


def _check_split(split: Sequence[WeightedVersion], path: str, errs: _Errors) -> None:
    if not split:
        return
    seen: dict[str, int] = {}
    for i, entry in enumerate(split):
        if entry.version in seen:
            errs.add(f"{path}[{i}].version", f"version {entry.version} is already split[{seen[entry.version]}]")
        else:
            seen[str(entry.version)] = i
    total = sum(entry.weight or 0 for entry in split)
    if total != 100:
        errs.add(f"{path}[{len(split) - 1}].weight", f"weights must add up to 100, got {total}")


def _check_policy(policy: Policy, errs: _Errors) -> None:
    routing = policy.routing
    if policy.mesh_wide and routing is not None:
        for name in _MESH_WIDE_ONLY_PER_VIP:
            if getattr(routing, name) is not None:
                errs.add(f"routing.{name}", "names versions or VIPs of one service: not allowed in the '*' document")


def _parse_policy(doc: Any, errs: _Errors) -> Policy | None:
    if not isinstance(doc, dict):
        errs.add("document", f"must be a map with a vip, got {_kind(doc)}")
        return None
    raw_vip = doc.get("vip")
    if raw_vip == MESH_WIDE:
        # `*` is no VIP name: parse the rest under a valid stand-in, then put `*` back.
        doc = {k: v for k, v in doc.items() if k != "vip"}
        policy = _parse_object(Policy, {**doc, "vip": "placeholder"}, "", errs)
        policy = None if policy is None else Policy(MESH_WIDE, policy.destination, policy.routing)
    else:
        policy = _parse_object(Policy, doc, "", errs)
    if policy is not None:
        _check_policy(policy, errs)
    return policy


# --- effective policy: the `*` document merged with a VIP's -----------------------------------------------


def check_effective(policy: Policy) -> list[tuple[str, str]]:
    """The (field path, reason) problems of an effective policy (after `merge`) that no single document shows."""
    out: list[tuple[str, str]] = []
    dest, routing = policy.destination, policy.routing
    if dest is not None:
        lb = dest.load_balancer
        if dest.consistent_hash is not None and lb is not None and lb not in HASH_LB_POLICIES:
            out.append(("destination.consistentHash", f"needs loadBalancer RING_HASH or MAGLEV, got {lb}"))
        if lb in HASH_LB_POLICIES and dest.consistent_hash is None:
            out.append(("destination.loadBalancer", f"{lb} needs destination.consistentHash (the key to hash)"))
    if routing is not None:
        retries = routing.retries
        per_try = retries.per_try_timeout_ms if retries is not None else None
        if routing.hedging is not None and routing.hedging.on_per_try_timeout and per_try is None:
            out.append(("routing.hedging.onPerTryTimeout", "needs routing.retries.perTryTimeout"))
        if per_try is not None and routing.timeout_ms is not None and per_try >= routing.timeout_ms:
            out.append(
                (
                    "routing.retries.perTryTimeout",
                    f"{format_duration(per_try)} is not shorter than routing.timeout "
                    f"({format_duration(routing.timeout_ms)}): no retry could start",
                )
            )
        if routing.faults is not None and routing.faults.delay is None and routing.faults.abort is None:
            out.append(("routing.faults", "needs a delay or an abort"))
        if routing.mirror is not None and routing.mirror.vip == policy.vip:
            out.append(("routing.mirror.vip", "a VIP cannot mirror to itself"))
    return out


def _merge_node(base: Any, over: Any) -> Any:
    if over is None:
        return base
    if base is None or not isinstance(over, _Node) or over.ATOMIC:
        return over
    values = {name: _merge_node(getattr(base, name), getattr(over, name)) for name, _ in specs(type(over))}
    return type(over)(**values)


def merge(defaults: Policy | None, policy: Policy) -> Policy:
    """The effective policy of `policy.vip`: the mesh-wide `defaults` overridden field by field by `policy`.

    Objects merge field by field (circuitBreaker, outlierDetection, retries, faults, ...); lists and the
    objects that only make sense whole (consistentHash, mirror, faults.delay, faults.abort, split entries,
    routes, backoff, successRate, failurePercentage) are replaced. Raises InvalidPolicy when the result is
    inconsistent (`check_effective`), naming the fields of the merged document.
    """
    if defaults is not None and not defaults.mesh_wide:
        raise InvalidArgument("vip", f"defaults must be the mesh-wide '*' document, got {defaults.vip!r}")
    merged = policy if defaults is None else _merge_node(defaults, policy)
    merged = Policy(policy.vip, merged.destination, merged.routing)
    problems = check_effective(merged)
    if problems:
        raise InvalidPolicy([PolicyError(path, reason, vip=policy.vip) for path, reason in problems])
    return merged


# --- text and documents -----------------------------------------------------------------------------------


class _Loader(yaml.SafeLoader):
    """SafeLoader that refuses a key given twice in one map (PyYAML silently keeps the last one)."""


def _construct_mapping(loader: _Loader, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        try:
            duplicate = key in seen
            seen.add(key)
        except TypeError:
            continue  # an unhashable key: construct_mapping reports it
        if duplicate:
            raise yaml.constructor.ConstructorError(
                "while reading a map", node.start_mark, f"found the key {key!r} twice", key_node.start_mark
            )
    return loader.construct_mapping(node, deep=deep)


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _documents(text: str) -> list[Any]:
    if len(text.encode()) > MAX_TEXT_BYTES:
        raise InvalidPolicy([PolicyError("document", f"longer than {MAX_TEXT_BYTES} bytes")])
    try:
        raw = [doc for doc in yaml.load_all(text, Loader=_Loader) if doc is not None]
    except yaml.YAMLError as exc:
        raise InvalidPolicy([PolicyError("document", f"not valid YAML or JSON: {_yaml_problem(exc)}")]) from None
    docs: list[Any] = []
    for doc in raw:
        docs.extend(doc if isinstance(doc, list) else [doc])  # a JSON array of documents
    if not docs:
        raise InvalidPolicy([PolicyError("document", "holds no policy document")])
    if len(docs) > MAX_DOCUMENTS:
        raise InvalidPolicy([PolicyError("document", f"{len(docs)} documents, at most {MAX_DOCUMENTS} allowed")])
    return docs


def _yaml_problem(exc: yaml.YAMLError) -> str:
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    mark = getattr(exc, "problem_mark", None)
    return f"{problem} (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else problem


def from_document(doc: Any) -> Policy:
    """One document (a decoded YAML/JSON map) -> a validated Policy; raises InvalidPolicy with every problem.

    Only the document's own rules are checked here; `merge` checks the effective policy.
    """
    errs = _Errors()
    policy = _parse_policy(doc, errs)
    if errs.items or policy is None:
        raise InvalidPolicy([PolicyError(path, reason) for path, reason in errs.items])
    return policy


def load(text: str, *, defaults: Policy | None = None) -> list[Policy]:
    """Every policy document of `text` (YAML, `---`-separated, or JSON), validated in full, in order.

    All or nothing: raises one InvalidPolicy listing every problem of every document, or returns them all.
    Besides each document's own rules: a VIP given twice is an error, and each VIP's effective policy (merged
    with the `*` document of the same text, else with `defaults`, the stored one) must be consistent, as must
    the `*` document on its own (it applies to VIPs without a document too).
    """
    docs = _documents(text)
    numbered = len(docs) > 1
    errors: list[PolicyError] = []
    policies: list[Policy] = []
    first_of: dict[str, int] = {}
    for n, doc in enumerate(docs, start=1):
        vip = doc.get("vip") if isinstance(doc, dict) and isinstance(doc.get("vip"), str) else ""
        errs = _Errors()
        policy = _parse_policy(doc, errs)
        if vip and vip in first_of:
            errs.add("vip", f"{vip} is also document {first_of[vip]}: one document per VIP")
        elif vip:
            first_of[vip] = n
        errors += [PolicyError(path, reason, n if numbered else None, vip) for path, reason in errs.items]
        if policy is not None and not errs.items:
            policies.append(policy)
    if not errors:
        mesh = [p for p in policies if p.mesh_wide]
        base = mesh[0] if mesh else defaults
        for policy in policies:
            try:
                merge(None if policy.mesh_wide else base, policy)
            except InvalidPolicy as exc:
                n = first_of[policy.vip] if numbered else None
                errors += [PolicyError(e.field, e.reason, n, policy.vip) for e in exc.errors]
    if errors:
        raise InvalidPolicy(errors)
    return policies


def to_document(node: Any) -> Any:
    """A Policy (or any part of one) back to its camelCase document: unset fields are left out."""
    if isinstance(node, _Node):
        out: dict[str, Any] = {}
        for name, s in specs(type(node)):
            value = getattr(node, name)
            if value is not None:
                out[s.doc] = _value_out(s, value)
        return out
    raise TypeError(f"not a policy node: {type(node).__name__}")


def _value_out(s: Spec, value: Any) -> Any:
    if s.kind == "object":
        return to_document(value)
    if s.kind == "list":
        return [_value_out(s.item, v) for v in value]
    if s.kind == "headers":
        return dict(value)
    if s.kind == "duration":
        return format_duration(value)
    if s.kind == "percent":
        return _number_out(value)
    return value


def errors_of(exc: MeshError) -> list[tuple[str, str]]:
    """(field path, reason) of every problem an InvalidPolicy (or a plain InvalidArgument) carries."""
    if isinstance(exc, InvalidPolicy):
        return [(e.field, e.reason) for e in exc.errors]
    if isinstance(exc, InvalidArgument):
        return [(exc.field, exc.reason)]
    return []


__all__ = [
    "InvalidPolicy",
    "PolicyError",
    "check_effective",
    "errors_of",
    "format_duration",
    "from_document",
    "is_empty",
    "load",
    "merge",
    "parse_duration",
    "to_document",
]
