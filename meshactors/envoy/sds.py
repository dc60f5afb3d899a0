"""SVIP mTLS in Envoy: the identity and bundle Secret files (file-based SDS) and the TLS contexts that read them.

Why file-based SDS and not SDS over ADS (design.md section 10): the sidecar process generates the key and writes
the certificate next to Envoy, so the key never crosses the network; Envoy re-reads a Secret file when it is
atomically renamed into its watched directory, so renewal needs no xDS push; and it avoids the open SDS-over-delta-
ADS traps (a changed ConfigSource that never gets its secret, TLS lost after a control-plane restart).

The SDS paths are relative (IDENTITY_DIR/...), resolved against Envoy's working directory, which the sidecar sets
to its work dir: so the UpstreamTlsContext of an SVIP's Cluster is byte-identical for every proxy (one resource
body, cached and shared like any other) while every proxy reads its own identity. A proxy without an identity has
no such files: Envoy refuses the SVIP's Cluster ("paths must refer to an existing path") and calls to that SVIP
fail, as they must.

Both sides: TLS 1.3 only (every peer is a mesh Envoy), the peer's certificate must chain to the bundle; the client
checks the server's URI SAN against the identities serving the SVIP (exact), the server requires a client
certificate of the trust domain (prefix) and passes the caller's SPIFFE ID to the app in x-forwarded-client-cert.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from envoy.config.cluster.v3 import cluster_pb2
from envoy.extensions.transport_sockets.tls.v3 import tls_pb2
from google.protobuf import json_format

IDENTITY_DIR = "meshactors-identity"  # under the sidecar's work dir (Envoy's working directory)
IDENTITY_FILE = "identity.json"  # Secret meshactors_identity: the leaf and its key, inline (0600)
BUNDLE_FILE = "bundle.json"  # Secret meshactors_bundle: the trust bundle
CERT_PEM, KEY_PEM, BUNDLE_PEM = "cert.pem", "key.pem", "bundle.pem"  # the same as PEM (gRPC's file watcher reads)
IDENTITY_SECRET = "meshactors_identity"
BUNDLE_SECRET = "meshactors_bundle"
TLS_SOCKET = "envoy.transport_sockets.tls"
TYPE_PREFIX = "type.googleapis.com/"
SECRET_TYPE = TYPE_PREFIX + "envoy.extensions.transport_sockets.tls.v3.Secret"
UPSTREAM_TLS_TYPE = TYPE_PREFIX + "envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext"
DOWNSTREAM_TLS_TYPE = TYPE_PREFIX + "envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext"
TLS_PARAMS = {"tls_minimum_protocol_version": "TLSv1_3", "tls_maximum_protocol_version": "TLSv1_3"}
SPIFFE_SERVICE_PREFIX = "spiffe://{td}/svc/"


def sds_secret_config(name: str, file: str, directory: str = IDENTITY_DIR) -> dict[str, Any]:
    """Secret `name` from the file `directory/file`, re-read when a file is renamed into `directory`."""
    return {
        "name": name,
        "sds_config": {
            "path_config_source": {"path": f"{directory}/{file}", "watched_directory": {"path": directory}},
            "resource_api_version": "V3",
        },
    }


def identity_secret(cert_pem: str, key_pem: str) -> dict[str, Any]:
    """The content of IDENTITY_FILE: the leaf and its private key (one file, so one rename swaps both)."""
    secret = {
        "@type": SECRET_TYPE,
        "name": IDENTITY_SECRET,
        "tls_certificate": {
            "certificate_chain": {"inline_string": cert_pem},
            "private_key": {"inline_string": key_pem},
        },
    }
    return {"resources": [secret]}


def bundle_secret(bundle_pem: str) -> dict[str, Any]:
    """The content of BUNDLE_FILE: the roots a peer's certificate must chain to."""
    secret = {
        "@type": SECRET_TYPE,
        "name": BUNDLE_SECRET,
        "validation_context": {"trusted_ca": {"inline_string": bundle_pem}},
    }
    return {"resources": [secret]}


def _common(san_matchers: list[dict[str, Any]], directory: str) -> dict[str, Any]:
    return {
        "tls_params": dict(TLS_PARAMS),
        "tls_certificate_sds_secret_configs": [sds_secret_config(IDENTITY_SECRET, IDENTITY_FILE, directory)],
        "combined_validation_context": {
            "default_validation_context": {"match_typed_subject_alt_names": san_matchers},
            "validation_context_sds_secret_config": sds_secret_config(BUNDLE_SECRET, BUNDLE_FILE, directory),
        },
    }


def downstream_tls_socket(trust_domain: str, directory: str = IDENTITY_DIR) -> dict[str, Any]:
    """The inbound (server) side: a client certificate is required, chaining to the bundle, with a service identity
    of `trust_domain` (which services may call is the intentions' job, not this check's)."""
    prefix = SPIFFE_SERVICE_PREFIX.format(td=trust_domain)
    context = {
        "@type": DOWNSTREAM_TLS_TYPE,
        "require_client_certificate": True,
        "common_tls_context": _common([{"san_type": "URI", "matcher": {"prefix": prefix}}], directory),
    }
    return {"name": TLS_SOCKET, "typed_config": context}


def upstream_tls_context(server_ids: Iterable[str]) -> dict[str, Any]:
    """The outbound (client) side to an SVIP: present this proxy's identity, accept only a server certificate of
    the bundle whose URI SAN is one of `server_ids` (SPIFFE IDs, exact). The relative paths make it the same for
    every proxy."""
    ids = sorted(set(server_ids))
    if not ids:
        raise ValueError("an SVIP cluster needs the identities of its servers")
    matchers = [{"san_type": "URI", "matcher": {"exact": i}} for i in ids]
    return {"@type": UPSTREAM_TLS_TYPE, "common_tls_context": _common(matchers, IDENTITY_DIR)}


def with_upstream_tls(cluster_body: bytes, server_ids: Iterable[str]) -> bytes:
    """A serialized Cluster with the SVIP transport socket added (deterministic bytes)."""
    cluster = cluster_pb2.Cluster.FromString(cluster_body)
    doc = upstream_tls_context(server_ids)
    context = json_format.ParseDict({k: v for k, v in doc.items() if k != "@type"}, tls_pb2.UpstreamTlsContext())
    cluster.transport_socket.name = TLS_SOCKET
    cluster.transport_socket.typed_config.Pack(context, deterministic=True)
    return cluster.SerializeToString(deterministic=True)


def secret_file_text(doc: dict[str, Any]) -> str:
    return json.dumps(doc, indent=1) + "\n"
