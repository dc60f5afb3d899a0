"""EtcdSpec: what an `--etcd` value says (endpoints, TLS, user and password, CA/cert/key files), and its redaction.

    http://host:port[,host:port...]                        plain, no auth (a test etcd)
    http://user:password@host:port[,host:port...]          etcd user/password auth
    https://user:password@host:port,...?ca=FILE&cert=FILE&key=FILE   TLS (CA to verify etcd; cert+key: client TLS)

A password with `@ : / , ? % #` in it is percent-encoded. The spec travels as one string (settings, ready file),
so every component that reads it authenticates the same way; whatever prints or logs it shows `redact(spec)`.
Pure: no etcd client here (meshactors.store.etcd is the one module that talks to etcd).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit

from meshactors.errors import ConfigError

MAX_SPEC_CHARS = 8192
_TLS_FILES = ("ca", "cert", "key")
# scheme://user:password@ -> scheme://user:***@ ; over-redacting a malformed spec is fine, leaking is not
_USERINFO = re.compile(r"(?P<head>://[^:@/,?]*):(?P<password>[^@]*)@")


def redact(text: str) -> str:
    """`text` (an etcd spec, or a message quoting one) with every URL password replaced by ***."""
    return _USERINFO.sub(lambda m: f"{m.group('head')}:***@", text)


@dataclass(frozen=True)
class EtcdSpec:
    endpoints: tuple[tuple[str, int], ...]
    tls: bool = False
    user: str = ""
    password: str = field(default="", repr=False)
    ca: str = ""  # PEM file of the CA that signed etcd's server certificate ("": the system's roots)
    cert: str = ""  # client certificate (PEM) when etcd asks for one (--client-cert-auth)
    key: str = ""  # its private key (PEM)

    def __post_init__(self) -> None:
        if not self.endpoints:
            raise ConfigError("no etcd endpoint given")
        if bool(self.user) != bool(self.password):
            raise ConfigError(
                f"etcd {self.redacted()}: a user needs a password and a password a user (user:password@host:port)"
            )
        if (self.ca or self.cert or self.key) and not self.tls:
            raise ConfigError(f"etcd {self.redacted()}: a CA, client certificate or key needs an https:// URL")
        if bool(self.cert) != bool(self.key):
            raise ConfigError(f"etcd {self.redacted()}: a client certificate needs its key and a key its certificate")

    @classmethod
    def parse(cls, text: str, *, ca: str = "", cert: str = "", key: str = "") -> EtcdSpec:
        """Parse an `--etcd` value; `ca`/`cert`/`key` (from flags) win over the same `?ca=...` in the URL."""
        if len(text) > MAX_SPEC_CHARS:
            raise ConfigError(f"etcd spec is {len(text)} characters long (at most {MAX_SPEC_CHARS})")
        base, _, query = text.strip().partition("?")
        files = _query_files(query, redact(text))
        schemes: set[str] = set()
        users: set[tuple[str, str]] = set()
        endpoints: list[tuple[str, int]] = []
        for part in (p.strip() for p in base.split(",")):
            if not part:
                continue
            shown = redact(part)
            try:
                url = urlsplit(part if "://" in part else f"//{part}")
                port = url.port
            except ValueError as exc:
                raise ConfigError(f"etcd endpoint {shown!r}: {redact(str(exc))}") from None
            if url.scheme:
                if url.scheme not in ("http", "https"):
                    raise ConfigError(f"etcd endpoint {shown!r}: only http:// and https:// endpoints are supported")
                schemes.add(url.scheme)
            if url.path not in ("", "/"):
                raise ConfigError(f"etcd endpoint {shown!r}: a URL path is not allowed (just host:port)")
            if not url.hostname or not port:
                raise ConfigError(f"etcd endpoint {shown!r} needs a host and a port, e.g. http://127.0.0.1:2379")
            if url.username is not None or url.password is not None:
                users.add((unquote(url.username or ""), unquote(url.password or "")))
            endpoints.append((url.hostname, port))
        if len(schemes) > 1:
            raise ConfigError(f"etcd {redact(text)!r}: mixes http:// and https:// endpoints")
        if len(users) > 1:
            raise ConfigError(f"etcd {redact(text)!r}: endpoints name different users or passwords")
        user, password = users.pop() if users else ("", "")
        return cls(
            endpoints=tuple(endpoints),
            tls="https" in schemes,
            user=user,
            password=password,
            ca=ca or files.get("ca", ""),
            cert=cert or files.get("cert", ""),
            key=key or files.get("key", ""),
        )

    def with_credentials(self, user: str, password: str) -> EtcdSpec:
        return replace(self, user=user, password=password)

    def url(self, *, show_password: bool = True) -> str:
        """The spec as one string that parses back to this spec (with the password unless told otherwise)."""
        scheme = "https" if self.tls else "http"
        auth = ""
        if self.user:
            auth = f"{quote(self.user, safe='')}:{quote(self.password, safe='') if show_password else '***'}@"
        hosts = ",".join(f"[{h}]:{p}" if ":" in h else f"{h}:{p}" for h, p in self.endpoints)
        files = {name: getattr(self, name) for name in _TLS_FILES if getattr(self, name)}
        return f"{scheme}://{auth}{hosts}" + (f"?{urlencode(files, safe='/')}" if files else "")

    def redacted(self) -> str:
        return self.url(show_password=False)

    def __str__(self) -> str:
        return self.redacted()

    def read_tls_files(self) -> tuple[bytes | None, bytes | None, bytes | None]:
        """The CA, client certificate and key as bytes (None for those not set); ConfigError naming a bad file."""
        out: list[bytes | None] = []
        for name in _TLS_FILES:
            path = getattr(self, name)
            if not path:
                out.append(None)
                continue
            try:
                out.append(Path(path).read_bytes())
            except OSError as exc:
                raise ConfigError(f"etcd {name} file {path}: cannot read it ({exc.strerror or exc})") from exc
        return out[0], out[1], out[2]


def _query_files(query: str, shown: str) -> dict[str, str]:
    files: dict[str, str] = {}
    for name, value in parse_qsl(query, keep_blank_values=True):
        if name not in _TLS_FILES:
            raise ConfigError(f"etcd {shown!r}: unknown option {name!r} (known: {', '.join(_TLS_FILES)})")
        if not value:
            raise ConfigError(f"etcd {shown!r}: option {name!r} needs a file path")
        files[name] = value
    return files


def with_tls_files(spec: str, ca: str = "", cert: str = "", key: str = "") -> str:
    """`spec` (checked) with the CA/cert/key files of the `--etcd-ca/--etcd-cert/--etcd-key` flags folded in (as
    given when none is set), so the one string carries everything to every component."""
    if not (ca or cert or key):
        if spec:
            EtcdSpec.parse(spec)  # a bad value fails here, naming what is wrong
        return spec
    if not spec:
        raise ConfigError("--etcd-ca, --etcd-cert and --etcd-key need --etcd (the embedded etcd needs none)")
    return EtcdSpec.parse(spec, ca=ca, cert=cert, key=key).url()
