"""TLS of the public listeners: the loopback rule, the PEM checks naming their flag, the settings and ready-file
pieces, and the TLS bootstraps (golden files, and a real `envoy --mode validate`)."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import pytest
import yaml
from cryptography.hazmat.primitives import serialization

from meshactors import cli, flags, tlsconfig
from meshactors.envoy.bootstrap import envoy_bootstrap, grpc_bootstrap
from meshactors.errors import ConfigError
from meshactors.settings import MeshSettings
from meshactors.testing.certs import CertFiles, make_ca, make_server_cert
from tests.unit.test_envoy_bootstrap import as_json, check_golden, envoy_validate


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> tuple[CertFiles, CertFiles]:
    d = tmp_path_factory.mktemp("pki")
    ca = make_ca(d)
    return ca, make_server_cert(ca, d)


# --- the loopback rule ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True), ("127.3.4.5", True), ("::1", True), ("[::1]", True), ("localhost", True),
        ("LOCALHOST", True), ("0.0.0.0", False), ("::", False), ("10.0.0.1", False), ("192.168.1.2", False),
        ("myhost.example", False), ("128.0.0.1", False), ("localhost.example", False),
    ],
)  # fmt: skip
def test_loopback_is_127_8_ipv6_one_and_localhost(host: str, loopback: bool) -> None:
    assert tlsconfig.is_loopback(host) is loopback


def test_loopback_without_a_certificate_is_plaintext_without_a_warning() -> None:
    assert tlsconfig.check_listeners(["127.0.0.1", "localhost"], "", "", insecure=False) == []


def test_a_network_host_without_a_certificate_is_refused_naming_the_flag_and_the_ways_out() -> None:
    with pytest.raises(ConfigError) as err:
        tlsconfig.check_listeners(["127.0.0.1", "0.0.0.0"], "", "", insecure=False)
    text = str(err.value)
    assert text.startswith("--host: 0.0.0.0 is not a loopback address")
    assert "--tls-cert" in text and "--tls-key" in text and "--insecure" in text


def test_insecure_allows_a_network_host_with_a_warning() -> None:
    warnings = tlsconfig.check_listeners(["0.0.0.0", "0.0.0.0"], "", "", insecure=True)
    assert len(warnings) == 1
    assert "plaintext on 0.0.0.0" in warnings[0] and "--tls-cert" in warnings[0]


def test_a_certificate_means_tls_on_any_host_and_no_warning(pki: tuple[CertFiles, CertFiles]) -> None:
    _, server = pki
    for host in ("127.0.0.1", "0.0.0.0"):
        assert tlsconfig.check_listeners([host], str(server.cert), str(server.key), insecure=False) == []
    settings = MeshSettings(etcd="", tls_cert=str(server.cert), tls_key=str(server.key))
    assert settings.tls and settings.eureka_url.startswith("https://127.0.0.1:")
    assert not MeshSettings(etcd="").tls and MeshSettings(etcd="").eureka_url.startswith("http://")


# --- bad PEM input names its flag -------------------------------------------------------------------------


def test_a_certificate_without_its_key_or_the_reverse_names_both_flags(pki: tuple[CertFiles, CertFiles]) -> None:
    _, server = pki
    with pytest.raises(ConfigError, match=r"^--tls-cert needs --tls-key"):
        tlsconfig.check_listeners(["127.0.0.1"], str(server.cert), "", insecure=False)
    with pytest.raises(ConfigError, match=r"^--tls-key needs --tls-cert"):
        tlsconfig.check_listeners(["127.0.0.1"], "", str(server.key), insecure=True)


def test_unreadable_files_name_their_flag(pki: tuple[CertFiles, CertFiles], tmp_path: Path) -> None:
    _, server = pki
    with pytest.raises(ConfigError, match=r"^--tls-cert: cannot read .*nope\.pem"):
        tlsconfig.check_pair(str(tmp_path / "nope.pem"), str(server.key))
    with pytest.raises(ConfigError, match=r"^--tls-key: cannot read"):
        tlsconfig.check_pair(str(server.cert), str(tmp_path))  # a directory
    with pytest.raises(ConfigError, match=r"^--tls-ca: cannot read"):
        tlsconfig.check_ca(str(tmp_path / "nope.pem"))


def test_bad_pem_names_its_flag(pki: tuple[CertFiles, CertFiles], tmp_path: Path) -> None:
    ca, server = pki
    garbled = tmp_path / "garbled.pem"
    garbled.write_text("-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n")
    with pytest.raises(ConfigError, match=r"^--tls-cert: .*server\.key holds no PEM certificate"):
        tlsconfig.check_pair(str(server.key), str(server.key))
    with pytest.raises(ConfigError, match=r"^--tls-key: .*server\.pem holds no PEM private key"):
        tlsconfig.check_pair(str(server.cert), str(server.cert))
    with pytest.raises(ConfigError, match=r"^--tls-cert: .*garbled\.pem holds a certificate that does not parse"):
        tlsconfig.check_pair(str(garbled), str(server.key))
    with pytest.raises(ConfigError, match=r"^--tls-ca: .*garbled\.pem"):
        tlsconfig.check_ca(str(garbled))
    with pytest.raises(ConfigError, match=r"^--tls-key: .*is not the private key of the certificate"):
        tlsconfig.check_pair(str(server.cert), str(ca.key))


def test_an_encrypted_key_is_refused_without_asking_for_a_password(
    pki: tuple[CertFiles, CertFiles], tmp_path: Path
) -> None:
    _, server = pki
    key = serialization.load_pem_private_key(server.key.read_bytes(), password=None)
    encrypted = tmp_path / "encrypted.key"
    encrypted.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"secret"),
        )
    )
    with pytest.raises(ConfigError, match=r"^--tls-key: the private key is encrypted"):
        tlsconfig.check_pair(str(server.cert), str(encrypted))


# --- `up`: flags, options, and the refusal before anything starts -----------------------------------------


def _up_args(*argv: str) -> object:
    return cli.build_parser().parse_args(["up", *argv])


def test_tls_flags_land_in_the_settings_as_absolute_paths(
    pki: tuple[CertFiles, CertFiles], monkeypatch: pytest.MonkeyPatch
) -> None:
    ca, server = pki
    monkeypatch.chdir(server.cert.parent)
    settings = flags.mesh_settings(_up_args("--tls-cert", server.cert.name, "--tls-key", server.key.name))
    assert (settings.tls_cert, settings.tls_key) == (str(server.cert), str(server.key))
    assert not settings.insecure and flags.mesh_settings(_up_args("--insecure")).insecure
    opts = cli.up_options(
        _up_args("--tls-cert", server.cert.name, "--tls-key", server.key.name, "--tls-ca", ca.cert.name)
    )
    assert opts.tls_ca == str(ca.cert) and opts.settings.tls


def test_up_options_refuse_a_network_host_without_tls(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"^--host: 0\.0\.0\.0 is not a loopback address"):
        cli.up_options(_up_args("--host", "0.0.0.0", "--state-dir", str(tmp_path)))
    opts = cli.up_options(_up_args("--host", "0.0.0.0", "--insecure", "--state-dir", str(tmp_path)))
    assert opts.settings.insecure and not opts.settings.tls


def test_up_tls_ca_needs_a_certificate(pki: tuple[CertFiles, CertFiles]) -> None:
    ca, _ = pki
    with pytest.raises(ConfigError, match=r"^--tls-ca names the CA"):
        cli.up_options(_up_args("--tls-ca", str(ca.cert)))


def test_up_on_a_network_host_without_tls_exits_2_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """(tests/integration/test_listener_tls.py runs the real command and shows it starts nothing.)"""
    state = tmp_path / "state"
    assert cli.main(["up", "--host", "0.0.0.0", "--state-dir", str(state)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "--host: 0.0.0.0 is not a loopback address" in err and "--insecure" in err
    assert not state.exists()


# --- clients: the ready file's TLS is picked up -----------------------------------------------------------


def _ready(tmp_path: Path, **info: object) -> Path:
    path = tmp_path / "ready.json"
    base = {"pid": os.getpid(), "hostname": socket.gethostname(), "xds": ["127.0.0.1:18000", "127.0.0.1:18001"]}
    path.write_text(json.dumps({**base, **info}))
    return path


def test_bootstrap_from_a_tls_ready_file_uses_its_ca(pki: tuple[CertFiles, CertFiles], tmp_path: Path) -> None:
    ca, _ = pki
    ready = _ready(tmp_path, tls=True, tls_ca=str(ca.cert))
    args = cli.build_parser().parse_args(["bootstrap", "--ready-file", str(ready), "--node-id", "n1"])
    doc = yaml.safe_load(cli.bootstrap_text(args))
    tls = doc["static_resources"]["clusters"][0]["transport_socket"]["typed_config"]
    assert tls["common_tls_context"]["validation_context"]["trusted_ca"] == {"filename": str(ca.cert)}
    args = cli.build_parser().parse_args(["bootstrap", "--grpc", "--ready-file", str(ready), "--node-id", "n1"])
    creds = json.loads(cli.bootstrap_text(args))["xds_servers"][0]["channel_creds"]
    assert creds == [{"type": "tls", "config": {"ca_certificate_file": str(ca.cert)}}]


def test_bootstrap_of_a_plain_ready_file_or_given_addresses_is_plaintext(
    pki: tuple[CertFiles, CertFiles], tmp_path: Path
) -> None:
    ca, _ = pki
    args = cli.build_parser().parse_args(["bootstrap", "--ready-file", str(_ready(tmp_path)), "--node-id", "n1"])
    assert "transport_socket" not in yaml.safe_load(cli.bootstrap_text(args))["static_resources"]["clusters"][0]
    args = cli.build_parser().parse_args(
        ["bootstrap", "--xds", "127.0.0.1:18000", "--node-id", "n1", "--tls-ca", str(ca.cert)]
    )
    assert "transport_socket" in yaml.safe_load(cli.bootstrap_text(args))["static_resources"]["clusters"][0]


def test_a_tls_ready_file_without_a_ca_is_an_error_naming_the_flag(tmp_path: Path) -> None:
    args = cli.build_parser().parse_args(
        ["bootstrap", "--ready-file", str(_ready(tmp_path, tls=True)), "--node-id", "n1"]
    )
    with pytest.raises(ConfigError, match="--tls-ca"):
        cli.bootstrap_text(args)


def test_registry_commands_take_the_ca_from_the_ready_file_or_the_flag(
    pki: tuple[CertFiles, CertFiles], tmp_path: Path
) -> None:
    ca, _ = pki
    ready = _ready(tmp_path, tls=True, tls_ca=str(ca.cert))
    args = cli.build_parser().parse_args(["ls", "--ready-file", str(ready)])
    args.registry = "127.0.0.1:7070"
    conn = cli._registry_conn(args)
    assert (conn["target"], conn["tls_ca"]) == ("127.0.0.1:7070", None)  # explicit: as given
    args = cli.build_parser().parse_args(["ls", "--registry", "127.0.0.1:7070", "--tls-ca", str(ca.cert)])
    assert cli._registry_conn(args)["tls_ca"] == str(ca.cert)


def test_the_up_summary_says_whether_tls_is_on() -> None:
    from meshactors.runtime.embedded import summary

    base = {"registry": "r", "xds": ["x"], "eureka": "e", "etcd": "etcd", "ray_address": "ray", "namespace": "n",
            "state_dir": "/s", "log_dir": "/s/logs"}  # fmt: skip
    assert "TLS           on" in summary({**base, "tls": True, "tls_ca": "/ca.pem"}, 1.0, True)
    assert "/ca.pem" in summary({**base, "tls": True, "tls_ca": "/ca.pem"}, 1.0, True)
    assert "NON-LOOPBACK" in summary({**base, "tls": False, "insecure_exposed": True}, 1.0, True)
    assert "TLS           off" in summary({**base, "tls": False}, 1.0, True)


# --- the TLS bootstraps -----------------------------------------------------------------------------------

GOLDEN_CA = "/etc/meshactors/ca.pem"


def test_envoy_tls_bootstrap_golden() -> None:
    config = envoy_bootstrap([("127.0.0.1", 18000), ("127.0.0.1", 18001)], "sidecar-1", tls_ca=GOLDEN_CA)
    check_golden("envoy_bootstrap_tls.json", as_json(config))


def test_grpc_tls_bootstrap_golden() -> None:
    config = grpc_bootstrap([("127.0.0.1", 18000)], "grpc-client-1", tls_ca=GOLDEN_CA)
    check_golden("grpc_bootstrap_tls.json", as_json(config))


def test_envoy_tls_verifies_the_host_it_dials() -> None:
    ip = envoy_bootstrap([("127.0.0.1", 18000)], "s", tls_ca=GOLDEN_CA)["static_resources"]["clusters"][0]
    context = ip["transport_socket"]["typed_config"]
    assert context["common_tls_context"]["validation_context"]["match_typed_subject_alt_names"] == [
        {"san_type": "IP_ADDRESS", "matcher": {"exact": "127.0.0.1"}}
    ]
    assert "sni" not in context  # SNI carries a name, never an address
    assert context["common_tls_context"]["alpn_protocols"] == ["h2"]
    name = envoy_bootstrap([("cp.example", 18000), ("cp.example", 18001)], "s", tls_ca=GOLDEN_CA)
    context = name["static_resources"]["clusters"][0]["transport_socket"]["typed_config"]
    assert context["sni"] == "cp.example"
    assert context["common_tls_context"]["validation_context"]["match_typed_subject_alt_names"] == [
        {"san_type": "DNS", "matcher": {"exact": "cp.example"}}
    ]


def test_tls_bootstraps_need_a_ca_file_name() -> None:
    with pytest.raises(ConfigError, match="tls_ca"):
        envoy_bootstrap([("127.0.0.1", 18000)], "s", tls_ca="")
    with pytest.raises(ConfigError, match="tls_ca"):
        grpc_bootstrap([("127.0.0.1", 18000)], "s", tls_ca="")


def test_real_envoy_validates_the_tls_bootstrap(pki: tuple[CertFiles, CertFiles], tmp_path: Path) -> None:
    ca, _ = pki
    for xds in ([("127.0.0.1", 18000), ("127.0.0.1", 18001)], [("localhost", 18000)]):
        proc = envoy_validate(envoy_bootstrap(xds, "sidecar-1", tls_ca=str(ca.cert)), tmp_path)
        assert proc.returncode == 0, proc.stdout + proc.stderr
    missing = envoy_validate(envoy_bootstrap(xds, "sidecar-1", tls_ca=str(tmp_path / "missing.pem")), tmp_path)
    assert missing.returncode != 0  # Envoy reads the CA file: a wrong path fails at start, not at the first TLS
