"""xDS-enabled gRPC servers' Listener names (gRFC A36): `grpc/server?xds.resource.listening_address=IP:PORT`.

A proxyless gRPC server (`grpc.server(..., xds=True)`) asks for the Listener the bootstrap's
`server_listener_resource_name_template` names, `%s` replaced by the address it listens on as gRPC prints it:
an IP literal and a port, IPv6 in brackets (`[::1]:50051`). The Listener it gets must carry that same address
(gRPC compares `address:port` joined the same way, else the server stays NOT_SERVING). Pure: no protobuf, no I/O.
"""

from __future__ import annotations

import socket

SERVER_LISTENER_PREFIX = "grpc/server?xds.resource.listening_address="
SERVER_LISTENER_TEMPLATE = SERVER_LISTENER_PREFIX + "%s"
# The snapshot key of one server Listener: answered by the xDS server's VIP source itself (it depends only on the
# name), never by a builder. `@` is never in a VIP name, so the key cannot collide with a VIP's.
SERVER_KEY_PREFIX = "@grpc-server/"
MAX_NAME = len(SERVER_LISTENER_PREFIX) + len("[ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255]:65535")


def is_server_listener(name: str) -> bool:
    """Whether `name` is in the server Listener namespace (well formed or not)."""
    return name.startswith(SERVER_LISTENER_PREFIX)


def server_listener_name(host: str, port: int) -> str:
    """The Listener name a gRPC server listening on `host:port` asks for (`host` an IP literal)."""
    return SERVER_LISTENER_PREFIX + join_address(host, port)


def join_address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def parse_server_listener(name: str) -> tuple[str, int]:
    """(IP, port) of a server Listener name; ValueError saying why for anything else.

    The IP must be written as gRPC writes a listening address (canonical form: `::1`, not `0:0::1`), since the
    Listener's address is compared with it as a string."""
    if not is_server_listener(name):
        raise ValueError(f"{name[:100]!r}: a server listener is {SERVER_LISTENER_TEMPLATE}")
    if len(name) > MAX_NAME:
        raise ValueError(f"{name[:120]!r}...: too long for {SERVER_LISTENER_PREFIX}IP:PORT")
    address = name[len(SERVER_LISTENER_PREFIX) :]
    host, sep, port_text = address.rpartition(":")
    if not sep or not host:
        raise ValueError(f"{name[:120]!r}: the listening address must be IP:PORT")
    if not port_text.isascii() or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ValueError(f"{name[:120]!r}: the port must be a number 1-65535")
    bracketed = host.startswith("[") and host.endswith("]")
    if bracketed:
        host = host[1:-1]
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    if (family == socket.AF_INET6) != bracketed:
        raise ValueError(f"{name[:120]!r}: an IPv6 address goes in brackets, an IPv4 one without")
    try:
        canonical = socket.inet_ntop(family, socket.inet_pton(family, host))
    except (OSError, ValueError):
        raise ValueError(f"{name[:120]!r}: {host[:60]!r} is not an IP address") from None
    if canonical != host:
        raise ValueError(f"{name[:120]!r}: write the address as gRPC does ({canonical})")
    return host, int(port_text)


def server_key(name: str) -> str:
    """The snapshot key of a server Listener name (one `parse_server_listener` accepted)."""
    return SERVER_KEY_PREFIX + name[len(SERVER_LISTENER_PREFIX) :]


def server_key_name(key: str) -> str | None:
    """The Listener name of a server key (None: `key` is none)."""
    return SERVER_LISTENER_PREFIX + key[len(SERVER_KEY_PREFIX) :] if key.startswith(SERVER_KEY_PREFIX) else None
