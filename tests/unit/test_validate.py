"""Input validation: every error names the field and says why."""

from __future__ import annotations

import dataclasses

import pytest

from meshactors.errors import InvalidArgument
from meshactors.model import Instance, InstanceRef, LeaseSettings, validate_instance, validate_ref
from meshactors.model.validate import parse_status

GOOD = Instance(app="", instance_id="", host="127.0.0.1", vip="myservice", port=8080)


def test_defaults_are_filled_in() -> None:
    inst = validate_instance(GOOD)
    assert inst.app == "myservice"
    assert inst.instance_id == "127.0.0.1:8080"
    assert inst.lease == LeaseSettings(30, 90)
    svip_only = validate_instance(
        Instance(app="", instance_id="", host="h.example", svip="pay-secure", secure_port=8443)
    )
    assert svip_only.routing_name == "pay-secure" and svip_only.instance_id == "h.example:8443"


@pytest.mark.parametrize(
    "change, field, reason",
    [
        ({"vip": ""}, "vip", "VIP or an SVIP"),
        ({"vip": "My_Service"}, "vip", "lowercase DNS name"),
        ({"vip": "a" * 64}, "vip", "lowercase DNS name"),
        ({"vip": "x" * 254}, "vip", "longer than 253"),
        ({"vip": "-bad"}, "vip", "lowercase DNS name"),
        ({"port": 0}, "port", "out of range"),
        ({"port": 70000}, "port", "out of range"),
        ({"svip": "s", "secure_port": 0}, "secure_port", "out of range"),
        ({"svip": "myservice", "secure_port": 1}, "svip", "differ"),
        ({"secure_port": 8443}, "secure_port", "needs an SVIP"),
        ({"host": ""}, "host", "must not be empty"),
        ({"host": "not a host"}, "host", "neither an IP"),
        ({"instance_id": "a/b"}, "instance_id", "may hold only"),
        ({"app": "has space"}, "app", "may hold only"),
        ({"zone": "z one"}, "zone", "may hold only"),
        ({"version_label": "v 1"}, "version_label", "may hold only"),
        ({"weight": 0}, "weight", "out of range"),
        ({"weight": 10_001}, "weight", "out of range"),
        ({"metadata": {f"k{i}": "v" for i in range(33)}}, "metadata", "at most 32"),
        ({"metadata": {"k": "v" * 257}}, "metadata['k']", "at most 256"),
        ({"metadata": {"bad key": "v"}}, "metadata['bad key']", "key may hold only"),
        ({"metadata": {f"k{i}": "v" * 250 for i in range(20)}}, "metadata", "bytes in total"),
        ({"lease": LeaseSettings(0, 90)}, "lease.renewal_interval_s", "at least 1"),
        ({"lease": LeaseSettings(30, 30)}, "lease.duration_s", "longer than the renewal"),
        ({"lease": LeaseSettings(30, 4000)}, "lease.duration_s", "longer than 3600"),
        ({"status": "UP"}, "status", "unknown status"),
    ],
)
def test_bad_input_names_the_field(change: dict[str, object], field: str, reason: str) -> None:
    bad = dataclasses.replace(GOOD, **change)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument) as err:
        validate_instance(bad)
    assert err.value.field == field
    assert reason in err.value.reason
    assert str(err.value).startswith(f"{field}: ")


def test_refs_and_statuses() -> None:
    assert validate_ref(InstanceRef("svc", "i-1")) == InstanceRef("svc", "i-1")
    with pytest.raises(InvalidArgument, match="instance_id: must not be empty"):
        validate_ref(InstanceRef("svc", ""))
    with pytest.raises(InvalidArgument, match="vip: "):
        validate_ref(InstanceRef("", "i"))
    assert parse_status("out_of_service").value == "OUT_OF_SERVICE"
    with pytest.raises(InvalidArgument, match="unknown status 'SLEEPY'"):
        parse_status("SLEEPY")


@pytest.mark.parametrize(
    "change, field",
    [
        ({"vip": "myservice\n"}, "vip"),
        ({"svip": "pay-secure\n", "secure_port": 8443}, "svip"),
        ({"instance_id": "i-1\n"}, "instance_id"),
        ({"host": "h.example\n"}, "host"),
        ({"host": "127.0.0.1\n"}, "host"),
        ({"app": "orders\n"}, "app"),
        ({"zone": "z1\n"}, "zone"),
        ({"version_label": "v1\n"}, "version_label"),
        ({"metadata": {"team\n": "blue"}}, "metadata['team\\n']"),
    ],
)
def test_a_trailing_newline_is_refused(change: dict[str, object], field: str) -> None:
    # Python's `$` matches before a final "\n": every pattern must match the whole value.
    with pytest.raises(InvalidArgument) as err:
        validate_instance(dataclasses.replace(GOOD, **change))
    assert err.value.field == field, err.value.message


def test_a_ref_with_a_trailing_newline_is_refused() -> None:
    with pytest.raises(InvalidArgument) as err:
        validate_ref(InstanceRef("myservice", "i-1\n"))
    assert err.value.field == "instance_id"
    with pytest.raises(InvalidArgument) as err:
        validate_ref(InstanceRef("myservice\n", "i-1"))
    assert err.value.field == "vip"


def test_the_reserved_eureka_prefix_is_refused_naming_the_key() -> None:
    from meshactors.model.validate import refuse_reserved_metadata

    refuse_reserved_metadata({"team": "blue", "eureka": "x"}, "metadata")
    with pytest.raises(InvalidArgument) as err:
        refuse_reserved_metadata({"team": "blue", "eureka/hostName": "spoofed"}, "metadata")
    assert err.value.field == "metadata['eureka/hostName']" and "reserved" in err.value.reason
