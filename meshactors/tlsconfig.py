"""Transport security of the public listeners: the loopback rule, and reading and checking PEM files for them.

The registry API, the Eureka API and the xDS servers serve TLS when a certificate is configured (`--tls-cert` and
`--tls-key`, on any host). Without one they may only listen on a loopback address, unless `--insecure` says that
plaintext on the network is meant (a warning then). Every problem is a ConfigError naming the flag, raised by
`up` before anything starts. Only the file names travel in the settings; each server reads the files itself.
"""

from __future__ import annotations

import ipaddress
import ssl
from pathlib import Path

from meshactors.errors import ConfigError

HOST_FLAG = "--host"  # the `up` flag that sets registry_host and xds_host
CERT_FLAG, KEY_FLAG, CA_FLAG, INSECURE_FLAG = "--tls-cert", "--tls-key", "--tls-ca", "--insecure"
MAX_PEM_BYTES = 1 << 20  # a certificate chain or key file larger than this is not one


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and "localhost" (the only addresses no other machine can reach)."""
    name = host.strip().strip("[]").lower().rstrip(".")
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def exposed_hosts(hosts: list[str]) -> list[str]:
    """The hosts of `hosts` that are not loopback addresses, each once, in order."""
    out: list[str] = []
    for host in hosts:
        if not is_loopback(host) and host not in out:
            out.append(host)
    return out


CERT_PEM = (b"-----BEGIN CERTIFICATE-----", "certificate", "-----BEGIN CERTIFICATE-----")
KEY_PEM = (b"PRIVATE KEY-----", "private key", "-----BEGIN ... PRIVATE KEY-----")


def read_pem(path: str, flag: str, kind: tuple[bytes, str, str] = CERT_PEM) -> bytes:
    """The bytes of a PEM file holding a `kind` block (CERT_PEM or KEY_PEM); a ConfigError naming `flag` otherwise."""
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_PEM_BYTES + 1)
    except OSError as exc:
        raise ConfigError(f"{flag}: cannot read {path}: {exc.strerror or exc}") from exc
    if len(data) > MAX_PEM_BYTES:
        raise ConfigError(f"{flag}: {path} is larger than {MAX_PEM_BYTES} bytes: not a PEM file")
    needle, what, line = kind
    if needle not in data:
        raise ConfigError(f"{flag}: {path} holds no PEM {what} (no '{line}' line)")
    return data


def _no_password() -> str:
    raise ConfigError(f"{KEY_FLAG}: the private key is encrypted; give an unencrypted PEM key (file mode 0600)")


def check_pair(cert: str, key: str) -> None:
    """Both given, readable, PEM, and the key belongs to the certificate; a ConfigError naming the flag otherwise."""
    if bool(cert) != bool(key):
        given, missing = (CERT_FLAG, KEY_FLAG) if cert else (KEY_FLAG, CERT_FLAG)
        raise ConfigError(f"{given} needs {missing} too: a certificate and its private key are given together")
    if not cert:
        return
    check_ca(cert, CERT_FLAG)  # each certificate of the chain parses
    read_pem(key, KEY_FLAG, KEY_PEM)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.load_cert_chain(cert, key, password=_no_password)
    except ssl.SSLError as exc:
        reason = exc.reason or str(exc)
        if "KEY_VALUES_MISMATCH" in str(exc).upper():
            raise ConfigError(f"{KEY_FLAG}: {key} is not the private key of the certificate in {cert}") from exc
        raise ConfigError(f"{KEY_FLAG}: {key} is not a usable PEM private key for {cert}: {reason}") from exc


def check_ca(path: str, flag: str = CA_FLAG) -> str:
    """A readable PEM bundle of certificates to trust; returns the path as given."""
    read_pem(path, flag, CERT_PEM)
    try:
        ssl.create_default_context(cafile=path)
    except ssl.SSLError as exc:
        raise ConfigError(f"{flag}: {path} holds a certificate that does not parse: {exc.reason or exc}") from exc
    return path


def check_listeners(hosts: list[str], cert: str, key: str, insecure: bool) -> list[str]:
    """The loopback rule for the public listeners on `hosts`: raises a ConfigError when it is broken; returns the
    warnings to show (plaintext on a network address because of --insecure)."""
    check_pair(cert, key)
    exposed = exposed_hosts(hosts)
    if cert or not exposed:
        return []
    where = ", ".join(exposed)
    if not insecure:
        raise ConfigError(
            f"{HOST_FLAG}: {where} is not a loopback address, and the registry, Eureka and xDS APIs would serve "
            f"it in plaintext: give {CERT_FLAG} FILE and {KEY_FLAG} FILE (TLS), or {INSECURE_FLAG} to accept that"
        )
    return [
        f"{INSECURE_FLAG}: the registry, Eureka and xDS APIs serve plaintext on {where}, a non-loopback address: "
        f"anyone on the network can read and change the registry; give {CERT_FLAG} and {KEY_FLAG} for TLS"
    ]


def absolute(path: str) -> str:
    """A file name the actors (whose working directory is Ray's) read the same way: absolute, `~` expanded."""
    return str(Path(path).expanduser().absolute()) if path else ""


def load_pair(cert: str, key: str) -> tuple[bytes, bytes]:
    """The certificate chain and key of a server, checked (what gRPC's server credentials take)."""
    check_pair(cert, key)
    return read_pem(cert, CERT_FLAG, CERT_PEM), read_pem(key, KEY_FLAG, KEY_PEM)


def server_context(cert: str, key: str) -> ssl.SSLContext:
    """A TLS server context (TLS 1.2 or later) for an HTTP listener."""
    check_pair(cert, key)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert, key, password=_no_password)
    return context
