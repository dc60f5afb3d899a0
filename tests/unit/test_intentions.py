"""Intentions without etcd: validation (errors name the field, nothing is written), the decision rule, the compiled
RBAC configs (golden files; every caller matches the one rule the decision names), the store, the feed and table."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from meshactors.errors import CodecError, InvalidArgument, NotFound
from meshactors.intentions.compile import rbac_config, rule_name
from meshactors.intentions.model import (
    DEFAULT_ACTION,
    MAX_SOURCES,
    Action,
    Rules,
    decide,
    decode_rules,
    encode_rules,
    parse_action,
    validate_destination,
    validate_source,
)
from meshactors.store.intentions import IntentionFeed, IntentionLoaded, IntentionStore, IntentionTable
from meshactors.store.keys import KeySchema
from tests.unit.test_envoy_bootstrap import as_json, check_golden
from tests.unit.test_policy_store import TxnStore
from tests.unit.test_svip_tls import TD

KEYS = KeySchema("/t")

# ---- validation and the decision rule ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("call", "field", "words"),
    [
        (lambda: parse_action("maybe"), "action", "is not allow or deny"),
        (lambda: parse_action(""), "action", "is not allow or deny"),
        (lambda: validate_source(""), "source", "must not be empty"),
        (lambda: validate_source("a" * 254), "source", "longer than 253"),
        (lambda: validate_source("Web"), "source", "lowercase DNS name"),
        (lambda: validate_destination(""), "destination", "must not be empty"),
        (lambda: validate_destination("*"), "destination", "set the mesh default"),
        (lambda: validate_destination("x" * 300), "destination", "longer than 253"),
    ],
)
def test_bad_input_is_refused_naming_the_field(call: Any, field: str, words: str) -> None:
    with pytest.raises(InvalidArgument) as err:
        call()
    assert err.value.field == field
    assert words in str(err.value)
    assert str(err.value).startswith(f"{field}: ")


def test_a_destination_holds_at_most_max_sources() -> None:
    Rules("orders", {f"s{i}": Action.ALLOW for i in range(MAX_SOURCES)})
    with pytest.raises(InvalidArgument, match="at most"):
        Rules("orders", {f"s{i}": Action.ALLOW for i in range(MAX_SOURCES + 1)})


def test_the_most_specific_rule_wins_then_star_then_the_mesh_default() -> None:
    rules = Rules("orders", {"web": Action.ALLOW, "*": Action.DENY})
    assert decide(rules, Action.ALLOW, "web") == (Action.ALLOW, "web")
    assert decide(rules, Action.ALLOW, "api") == (Action.DENY, "*")
    assert decide(Rules("orders", {"web": Action.DENY}), Action.ALLOW, "api") == (Action.ALLOW, "default")
    assert decide(None, Action.DENY, "api") == (Action.DENY, "default")
    assert DEFAULT_ACTION is Action.ALLOW  # what SVIPs did before intentions: nothing changes until one is set


def test_stored_form_round_trips_and_junk_is_a_codec_error() -> None:
    rules = Rules("orders", {"web": Action.ALLOW, "*": Action.DENY})
    assert decode_rules(encode_rules(rules)) == rules
    for junk in (b"{", b'{"destination":"orders","sources":{"web":"maybe"}}', b'{"destination":"*","sources":{}}'):
        with pytest.raises(CodecError):
            decode_rules(junk)


# ---- compilation: golden RBAC configs -------------------------------------------------------------------------------

CASES: dict[str, tuple[Rules | None, Action]] = {
    "intentions_none_default_allow.json": (None, Action.ALLOW),
    "intentions_none_default_deny.json": (None, Action.DENY),
    "intentions_mixed_default_deny.json": (Rules("orders", {"web": Action.ALLOW, "bad": Action.DENY}), Action.DENY),
    "intentions_star_deny_one_allowed.json": (Rules("orders", {"*": Action.DENY, "web": Action.ALLOW}), Action.ALLOW),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_compiled_rbac_configs_match_their_golden_files(name: str) -> None:
    rules, default = CASES[name]
    check_golden(name, as_json(rbac_config(rules, default, TD)))


def _matching(config: dict[str, Any], who: str) -> list[str]:
    """The rules (enforced and shadow) whose principal matches SPIFFE ID `who`: an evaluator of the principal forms
    the compiler uses, to check that every caller matches exactly one rule, the one `decide` names."""

    def match(p: dict[str, Any]) -> bool:
        if p.get("any"):
            return True
        if "authenticated" in p:
            return bool(p["authenticated"]["principal_name"]["exact"] == who)
        if "not_id" in p:
            return not match(p["not_id"])
        if "or_ids" in p:
            return any(match(q) for q in p["or_ids"]["ids"])
        raise AssertionError(p)

    out = []
    for section in ("rules", "shadow_rules"):
        for name, policy in config[section]["policies"].items():
            if any(match(p) for p in policy["principals"]):
                out.append(name)
    return out


@pytest.mark.parametrize("default", list(Action))
@pytest.mark.parametrize(
    "sources",
    [
        {},
        {"web": "allow"},
        {"web": "deny"},
        {"*": "deny", "web": "allow"},
        {"*": "allow", "web": "deny", "api": "deny"},
    ],
)
def test_every_caller_matches_exactly_the_rule_decide_names(default: Action, sources: dict[str, str]) -> None:
    rules = Rules("orders", {s: Action(a) for s, a in sources.items()})
    config = rbac_config(rules, default, TD)
    assert config["rules"]["action"] == "DENY" and config["shadow_rules"]["action"] == "ALLOW"
    for caller in ("web", "api", "other"):
        action, source = decide(rules, default, caller)
        expected = rule_name(action, source if source != "default" else "mesh-default")
        assert _matching(config, f"spiffe://{TD}/svc/{caller}") == [expected], (caller, config)
        enforced = expected in config["rules"]["policies"]
        assert enforced == (action is Action.DENY)


# ---- the store and the table ----------------------------------------------------------------------------------------


def _intention_keys(store: TxnStore) -> dict[str, bytes]:
    return {k: kv.value for k, kv in store.kvs.items() if k.startswith(KEYS.intentions)}


async def test_bad_input_writes_nothing() -> None:
    store = TxnStore()
    intentions = IntentionStore(store, KEYS)  # type: ignore[arg-type]
    for source, destination, action in [
        ("web", "orders", "maybe"), ("", "orders", "allow"), ("web", "", "deny"), ("web", "o" * 254, "allow"),
        ("w" * 254, "orders", "allow"), ("web", "*", "allow"), ("Web", "orders", "allow"),
    ]:  # fmt: skip
        with pytest.raises(InvalidArgument):
            await intentions.set(source, destination, action)
    with pytest.raises(InvalidArgument, match=r"^default: "):
        await intentions.set_default("open")
    assert _intention_keys(store) == {} and store.commits == []


async def test_set_replace_unchanged_delete_and_default() -> None:
    store = TxnStore()
    intentions = IntentionStore(store, KEYS)  # type: ignore[arg-type]
    rev, previous = await intentions.set("web", "orders", "allow")
    assert previous is None and rev > 0
    await intentions.set("*", "orders", "deny")
    _, previous = await intentions.set("web", "orders", "deny")
    assert previous is Action.ALLOW
    commits = len(store.commits)
    _, previous = await intentions.set("web", "orders", "deny")
    assert previous is Action.DENY and len(store.commits) == commits  # already so: not written
    listing = await intentions.list()
    assert [(i.source, i.destination, i.action) for i in listing.intentions] == [
        ("*", "orders", Action.DENY), ("web", "orders", Action.DENY)]  # fmt: skip
    assert (listing.default, listing.default_stored) == (Action.ALLOW, False)
    await intentions.set_default("deny")
    listing = await intentions.list()
    assert (listing.default, listing.default_stored) == (Action.DENY, True)
    with pytest.raises(NotFound, match="no intention from 'api'"):
        await intentions.delete("api", "orders")
    await intentions.delete("web", "orders")
    await intentions.delete("*", "orders")
    assert KEYS.intention("orders") not in store.kvs  # the last intention of a destination removes its key
    assert list(_intention_keys(store)) == [KEYS.intention("*")]


async def test_a_destination_past_max_sources_is_refused() -> None:
    store = TxnStore()
    intentions = IntentionStore(store, KEYS)  # type: ignore[arg-type]
    key = KEYS.intention("orders")
    store.put(key, encode_rules(Rules("orders", {f"s{i}": Action.ALLOW for i in range(MAX_SOURCES)})))
    with pytest.raises(InvalidArgument, match=r"^source: "):
        await intentions.set("one-more", "orders", "deny")
    await intentions.set("s1", "orders", "deny")  # changing an existing one is fine


async def test_the_feed_and_table_follow_rules_and_the_default_for_wanted_destinations_only() -> None:
    store = TxnStore()
    intentions = IntentionStore(store, KEYS)  # type: ignore[arg-type]
    await intentions.set("web", "orders", "deny")
    await intentions.set("web", "carts", "deny")
    await intentions.set_default("deny")
    store.put(KEYS.intentions + "junk-Key", b"x")  # outside the schema: skipped
    feed = IntentionFeed(store, KEYS, name="t", wants=lambda dst: dst == "orders")  # type: ignore[arg-type]
    table = IntentionTable()
    changes = aiter(feed)
    first = await asyncio.wait_for(anext(changes), 5)
    assert isinstance(first, IntentionLoaded)
    assert table.apply(first) == {"*"}
    assert list(table.rules) == ["orders"] and table.default is Action.DENY and table.default_stored
    await intentions.set("api", "orders", "allow")
    await intentions.set("api", "carts", "allow")  # not wanted: an empty batch or none
    touched: set[str] = set()
    while "orders" not in touched:
        touched |= table.apply(await asyncio.wait_for(anext(changes), 5))
    assert touched == {"orders"}
    rules = table.of("orders")
    assert rules is not None and rules.sources == {"web": Action.DENY, "api": Action.ALLOW}
    store.remove(KEYS.intention("*"))
    while not touched & {"*"}:
        touched = table.apply(await asyncio.wait_for(anext(changes), 5))
    assert table.default is DEFAULT_ACTION and not table.default_stored
