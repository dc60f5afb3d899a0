"""`meshactors up` flags -> MeshSettings: defaults come from the records, every value lands, bad ones name the flag."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from meshactors import cli, defaults, flags
from meshactors.errors import ConfigError
from meshactors.registry.leases import SelfPreservationPolicy
from meshactors.registry.shard import ShardSettings
from meshactors.settings import MeshSettings
from meshactors.snapshot.publisher import BuilderSettings
from meshactors.snapshot.source import VipSourceSettings
from meshactors.xds.host import HostSettings
from meshactors.xds.types import Limits


def settings_of(*argv: str, etcd: str = "") -> MeshSettings:
    return flags.mesh_settings(cli.build_parser().parse_args(["up", *argv]), etcd=etcd)


def test_no_flags_give_the_records_defaults() -> None:
    s = settings_of()
    # the embedded default (a local Ray) runs every role in one mesh host
    assert s == MeshSettings(etcd="", xds_ports=(defaults.XDS_PORT, defaults.XDS_PORT + 1), colocate=True)
    assert (s.namespace, s.key_prefix, s.registry_host, s.xds_host) == (
        defaults.NAMESPACE, defaults.KEY_PREFIX, defaults.HOST, defaults.HOST,
    )  # fmt: skip
    assert (s.shards, s.builders, s.xds_servers) == (defaults.SHARDS, defaults.BUILDERS, defaults.XDS_SERVERS)
    assert (s.registry_port, s.eureka_port) == (defaults.REGISTRY_PORT, defaults.EUREKA_PORT)
    assert (s.shard, s.builder, s.xds) == (ShardSettings(), BuilderSettings(), HostSettings())


def test_the_shape_is_colocated_on_a_local_ray_and_separate_on_a_cluster_unless_named() -> None:
    assert settings_of().colocate and settings_of("--shape", "auto").colocate
    assert not settings_of("--ray-address", "10.0.0.1:6379").colocate
    assert settings_of("--ray-address", "10.0.0.1:6379", "--shape", "colocated").colocate
    assert not settings_of("--shape", "separate").colocate
    with pytest.raises(SystemExit):  # argparse names the choices
        settings_of("--shape", "together")
    with pytest.raises(ConfigError, match="--shape"):
        flags.colocate("together", None)


def test_every_flag_lands_in_its_field() -> None:
    s = settings_of(
        "--namespace", "ns1", "--key-prefix", "/k1", "--host", "10.0.0.1", "--registry-port", "0",
        "--eureka-port", "9761", "--shards", "3", "--shard-sweep-interval-s", "0.5", "--shard-ready-wait-s", "2",
        "--shard-etcd-retry-s", "4", "--self-preservation-ratio", "0.3", "--self-preservation-min-instances", "4",
        "--no-self-preservation", "--builders", "4", "--builder-coalesce-ms", "5", "--builder-orphan-grace-s", "12",
        "--xds-servers", "3", "--xds-port", "9000", "--max-new-streams-per-s", "20", "--xds-fetch-timeout-s", "7",
        "--xds-unsubscribe-grace-s", "9", "--xds-max-names-per-type", "100", "--xds-max-name-length", "64",
        "--xds-max-type-urls", "8", "--actor-resource", "meshactors=1", "--builder-names-coalesce-ms", "50",
        "--xds-max-unknown-vips", "77", "--shape", "separate",
        etcd="http://e:2379",
    )  # fmt: skip
    assert s == MeshSettings(
        etcd="http://e:2379", namespace="ns1", key_prefix="/k1", shards=3, registry_host="10.0.0.1",
        registry_port=0, eureka_port=9761,
        shard=ShardSettings(sweep_interval_s=0.5, ready_wait_s=2.0, etcd_retry_s=4.0,
                            policy=SelfPreservationPolicy(ratio=0.3, min_instances=4, enabled=False)),
        builders=4, builder=BuilderSettings(coalesce_s=0.005, orphan_grace_s=12.0, names_coalesce_s=0.05),
        xds_servers=3, xds_host="10.0.0.1", xds_ports=(9000, 9001, 9002),
        xds=HostSettings(limits=Limits(max_names_per_type=100, max_name_length=64, max_type_urls=8),
                         max_new_streams_per_s=20.0, fetch_timeout_s=7.0, unsubscribe_grace_s=9.0),
        vip_source=VipSourceSettings(max_unknown_vips=77), actor_resources=(("meshactors", 1.0),),
    )  # fmt: skip


def test_xds_port_zero_picks_free_ports_for_every_server() -> None:
    assert settings_of("--xds-port", "0", "--xds-servers", "3").xds_ports == (0, 0, 0)


@pytest.mark.parametrize(
    ("argv", "flag"),
    [
        (["--shards", "0"], "--shards"),
        (["--shards", "two"], "--shards"),
        (["--builders", "0"], "--builders"),
        (["--xds-servers", "-1"], "--xds-servers"),
        (["--registry-port", "70000"], "--registry-port"),
        (["--eureka-port", "-1"], "--eureka-port"),
        (["--xds-port", "65535"], "--xds-port"),  # two servers: the second would need 65536
        (["--builder-coalesce-ms", "-1"], "--builder-coalesce-ms"),
        (["--builder-orphan-grace-s", "soon"], "--builder-orphan-grace-s"),
        (["--max-new-streams-per-s", "0"], "--max-new-streams-per-s"),
        (["--self-preservation-ratio", "1.5"], "--self-preservation-ratio"),
        (["--xds-max-names-per-type", "0"], "--xds-max-names-per-type"),
        (["--key-prefix", "no-slash"], "--key-prefix"),
        (["--namespace", " "], "--namespace"),
        (["--actor-resource", "gpu"], "--actor-resource"),
    ],
)
def test_a_bad_value_is_a_config_error_naming_the_flag(argv: list[str], flag: str) -> None:
    with pytest.raises(ConfigError, match=f"^{flag}"):
        settings_of(*argv)


def test_up_with_a_bad_value_exits_2_with_one_line_naming_the_flag(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["up", "--builder-coalesce-ms", "-5"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "--builder-coalesce-ms" in err and "at least 0" in err
    assert cli.main(["up", "--etcd-port", "99999"]) == 2
    assert "--etcd-port" in capsys.readouterr().err


def test_up_options_carry_the_launcher_flags_and_the_settings(tmp_path: Path) -> None:
    args = cli.build_parser().parse_args(
        ["up", "--state-dir", str(tmp_path), "--etcd", "http://e:2379", "--etcd-port", "2400", "--ready-file",
         str(tmp_path / "r.json"), "--ray-address", "h:6379", "--builders", "3"]
    )  # fmt: skip
    opts = cli.up_options(args)
    assert (opts.state_dir, opts.etcd_port, opts.ray_address, opts.ready_file) == (
        tmp_path, 2400, "h:6379", tmp_path / "r.json",
    )  # fmt: skip
    assert opts.settings.etcd == "http://e:2379" and opts.settings.builders == 3


def _leaves(record: object, prefix: str) -> set[str]:
    out: set[str] = set()
    for f in dataclasses.fields(record):  # type: ignore[arg-type]
        value = getattr(record, f.name)
        path = f"{prefix}.{f.name}"
        out |= _leaves(value, path) if dataclasses.is_dataclass(value) else {path}
    return out


def test_every_component_setting_is_reachable_from_a_flag() -> None:
    s = MeshSettings(etcd="")
    reachable = {p for flag in flags.UP_FLAGS for p in flag.paths}
    wanted = _leaves(s.shard, "shard") | _leaves(s.builder, "builder") | _leaves(s.xds, "xds")
    wanted |= _leaves(s.vip_source, "vip_source")
    not_a_flag = {"shard.policy.late_factor"}  # how many renewal intervals make an instance late: Eureka's rule
    assert wanted - not_a_flag <= reachable, sorted(wanted - not_a_flag - reachable)


def test_every_flag_help_says_its_default_and_unit() -> None:
    for flag in flags.UP_FLAGS:
        if flag.kind is bool:
            continue
        text = flag.help_text()
        assert "(default " in text, flag.flag
        if flag.unit:
            assert f" {flag.unit}" in text, flag.flag
    assert (
        "(default 1 ms)" in flags.UP_FLAGS[[f.flag for f in flags.UP_FLAGS].index("--builder-coalesce-ms")].help_text()
    )


def test_every_settings_field_has_a_flag_or_says_how_it_is_set() -> None:
    fields = {f.name for f in dataclasses.fields(MeshSettings)}
    by_flag = {p.split(".")[0] for flag in flags.UP_FLAGS for p in flag.paths}
    assert fields - by_flag == set(flags.SET_ELSEWHERE), sorted(fields - by_flag ^ set(flags.SET_ELSEWHERE))
    # the secret is the one field that must not come from a command line: only a file's path does
    assert "cluster_secret" not in by_flag
    assert cli.build_parser().parse_args(["up", "--cluster-secret-file", "f"]).up_cluster_secret_file == "f"


def test_ca_flags_land_in_the_ca_and_builder_settings(tmp_path: Path) -> None:
    s = settings_of("--trust-domain", "prod.example", "--cert-ttl", "3600", "--ca-key-file", "rel/ca.key")
    assert (s.trust_domain, s.builder.trust_domain, s.cert_ttl_s) == ("prod.example", "prod.example", 3600)
    assert Path(s.ca_key_file).is_absolute() and s.ca_key_file.endswith("rel/ca.key")
    base = settings_of()
    assert (base.trust_domain, base.cert_ttl_s, base.ca_key_file) == (defaults.TRUST_DOMAIN, defaults.CERT_TTL_S, "")


@pytest.mark.parametrize(
    ("argv", "flag"),
    [
        (("--trust-domain", "Not_A.Domain"), "--trust-domain"),
        (("--trust-domain", "x" * 300), "--trust-domain"),
        (("--cert-ttl", "5"), "--cert-ttl"),
        (("--cert-ttl", str(31 * 86400)), "--cert-ttl"),
        (("--cert-ttl", "1.5"), "--cert-ttl"),
    ],
)
def test_bad_ca_flags_name_the_flag(argv: tuple[str, ...], flag: str) -> None:
    with pytest.raises(ConfigError, match=flag):
        settings_of(*argv)


def test_settings_refuse_a_bad_trust_domain_or_cert_ttl() -> None:
    with pytest.raises(ConfigError, match=r"builder\.trust_domain"):
        MeshSettings(etcd="", builder=BuilderSettings(trust_domain="UPPER"))
    with pytest.raises(ConfigError, match="cert_ttl_s"):
        MeshSettings(etcd="", cert_ttl_s=0)
