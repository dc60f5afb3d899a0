"""The `--etcd` spec: endpoints, user:password, https with CA/cert/key files; and that a password never shows."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from meshactors import cli
from meshactors.errors import ConfigError
from meshactors.runtime.embedded import summary, write_ready_file
from meshactors.settings import MeshSettings
from meshactors.store.etcd import EtcdStore, parse_endpoints
from meshactors.store.etcdspec import EtcdSpec, redact, with_tls_files
from meshactors.store.server import load_or_create_credentials


def test_plain_specs_parse_as_before() -> None:
    assert parse_endpoints("http://127.0.0.1:2379") == [("127.0.0.1", 2379)]
    assert parse_endpoints("127.0.0.1:2379, http://10.0.0.2:2380") == [("127.0.0.1", 2379), ("10.0.0.2", 2380)]
    spec = EtcdSpec.parse("http://127.0.0.1:2379")
    assert (spec.tls, spec.user, spec.password, spec.url()) == (False, "", "", "http://127.0.0.1:2379")


def test_user_password_and_tls_files() -> None:
    spec = EtcdSpec.parse("https://app:p%40ss%2Cw@h1:2379,h2:2380?ca=/etc/ca.pem&cert=/c.pem&key=/k.pem")
    assert spec.endpoints == (("h1", 2379), ("h2", 2380))
    assert (spec.tls, spec.user, spec.password) == (True, "app", "p@ss,w")
    assert (spec.ca, spec.cert, spec.key) == ("/etc/ca.pem", "/c.pem", "/k.pem")
    assert EtcdSpec.parse(spec.url()) == spec  # the one string round-trips, password and all
    # the same credentials repeated on every endpoint are one user
    assert EtcdSpec.parse("http://a:b@h1:1,http://a:b@h2:2").user == "a"


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("", "no etcd endpoint"),
        ("ftp://h:1", "only http:// and https://"),
        ("http://h", "needs a host and a port"),
        ("http://h:99999", "h:99999"),
        ("http://h:1/path", "path"),
        ("http://root@h:1", "needs a password"),
        ("http://a:b@h1:1,http://c:d@h2:2", "different users"),
        ("http://h1:1,https://h2:2", "mixes http:// and https://"),
        ("http://h:1?ca=/ca.pem", "needs an https:// URL"),
        ("https://h:1?cert=/c.pem", "needs its key"),
        ("https://h:1?cafile=/ca.pem", "unknown option 'cafile'"),
        ("http://h:1," * 2000, "characters long"),
    ],
)
def test_bad_specs_say_why(text: str, says: str) -> None:
    with pytest.raises(ConfigError) as err:
        EtcdSpec.parse(text)
    assert says in err.value.message


def test_bad_spec_errors_never_show_the_password() -> None:
    for text in ("http://root:s3cret@h", "http://root:s3cret@h:1/x", "ftp://root:s3cret@h:1",
                 "http://a:s3cret@h1:1,http://b:s3cret@h2:2", "http://root:s3cret@h:1?bad=1"):  # fmt: skip
        with pytest.raises(ConfigError) as err:
            EtcdSpec.parse(text)
        assert "s3cret" not in err.value.message, err.value.message


def test_redaction_everywhere_a_spec_is_shown() -> None:
    url = "http://root:s3cret@127.0.0.1:2379"
    assert redact(url) == "http://root:***@127.0.0.1:2379"
    assert redact("http://a:x@h1:1,http://a:y@h2:2") == "http://a:***@h1:1,http://a:***@h2:2"
    assert redact("http://127.0.0.1:2379") == "http://127.0.0.1:2379"
    spec = EtcdSpec.parse(url)
    assert "s3cret" not in f"{spec} {spec!r} {spec.redacted()}"
    assert "s3cret" not in repr(EtcdStore.from_spec(url))
    settings = MeshSettings(etcd=url)
    assert "s3cret" not in repr(settings) and "root:***@127.0.0.1:2379" in repr(settings)
    assert "s3cret" not in str(settings)
    info = {"registry": "r:1", "xds": ["x:1"], "eureka": "http://e", "etcd": url, "ray_address": "ray:1",
            "namespace": "ns", "state_dir": "/s", "log_dir": "/s/logs", "etcd_data": "/s/etcd/data",
            "etcd_credentials": "/s/etcd/credentials"}  # fmt: skip
    text = summary(info, 1.0, True)
    assert "s3cret" not in text and "root:***@127.0.0.1:2379" in text and "/s/etcd/credentials" in text


def test_tls_flags_fold_into_the_spec(tmp_path: Path) -> None:
    args = cli.build_parser().parse_args(
        ["up", "--etcd", "https://u:p@h:2379", "--etcd-ca", "/ca.pem", "--etcd-cert", "/c.pem", "--etcd-key", "/k.pem"]
    )
    spec = EtcdSpec.parse(cli.up_options(args).settings.etcd)
    assert (spec.user, spec.password, spec.ca, spec.cert, spec.key) == ("u", "p", "/ca.pem", "/c.pem", "/k.pem")
    assert with_tls_files("http://h:1") == "http://h:1"  # nothing to fold: as given
    with pytest.raises(ConfigError, match="need --etcd"):
        with_tls_files("", ca="/ca.pem")
    with pytest.raises(ConfigError, match="needs an https:// URL"):
        with_tls_files("http://h:1", ca="/ca.pem")
    with pytest.raises(ConfigError, match="needs a host and a port"):
        cli.up_options(cli.build_parser().parse_args(["up", "--etcd", "http://nohost"]))


def test_unreadable_tls_file_is_named(tmp_path: Path) -> None:
    store = EtcdStore.from_spec(f"https://h:1?ca={tmp_path}/missing.pem")
    with pytest.raises(ConfigError, match=r"ca file .*missing\.pem"):
        store.spec.read_tls_files()


def test_credentials_file_is_made_once_and_private(tmp_path: Path) -> None:
    path = tmp_path / "etcd" / "credentials"
    user, password = load_or_create_credentials(path)
    assert user == "root" and len(password) >= 32
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_or_create_credentials(path) == (user, password)  # later starts reuse it
    os.chmod(path, 0o644)
    load_or_create_credentials(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    path.write_text("[]")
    with pytest.raises(ConfigError, match="needs a JSON object"):
        load_or_create_credentials(path)


def test_ready_file_is_private(tmp_path: Path) -> None:
    path = tmp_path / "ready.json"
    (tmp_path / "ready.json.tmp").write_text("left over")
    os.chmod(tmp_path / "ready.json.tmp", 0o644)
    write_ready_file(path, {"etcd": "http://root:x@h:1"})
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
