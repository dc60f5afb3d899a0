"""The mesh's certificate authority core: pure (no I/O beyond reading a key file, no etcd, Ray, gRPC or Envoy).

Identities (`identity`): a workload's identity is `spiffe://<trust domain>/svc/<service>`, the service being the
VIP/SVIP name it registers (a lowercase DNS name); the trust domain is a lowercase DNS name of at most 255 chars.
`SpiffeId.parse` is strict (no port, user, query, fragment, upper case or other path).

Roots (`authority.generate_root`): EC P-256, self-signed, SHA-256, subject O=<trust domain>, CN=meshactors root
<serial>, one URI SAN `spiffe://<trust domain>`, CA:TRUE pathlen 0 (critical), keyCertSign+cRLSign (critical),
SKI/AKI, valid from 1 h before creation for 10 years. No intermediate: the root key is online in the control plane
anyway (sealed in etcd, opened by the CA actor), so an intermediate would add a chain to every handshake and a second
rotation without keeping any key offline; pathlen 0 also means no leaf key can ever sign. An offline root with an
online intermediate is a later change that needs a root of pathlen 1 (a root rotation).

The root key at rest (`sealing`): AES-256-GCM under a 32-byte KEK read from a 0600 key file, bound to the root's serial;
the blob names the KEK's id so a wrong key file is reported as such (ConfigError naming the file).

Leaves (`authority.issue`): built from the CSR's public key only. The URI SAN comes from the `identity` argument (the
caller's proven identity); whatever the CSR asks for (other SPIFFE IDs, DNS names, CA:TRUE, key usages, subject) is
ignored and logged as a warning. The CSR must be at most 8 KiB of PEM, one block, correctly self-signed, with an EC
P-256 key (RSA and other curves are refused with InvalidArgument("csr", ...)). The leaf: empty subject, the SPIFFE
URI SAN (critical), CA:FALSE (critical), digitalSignature (critical), EKU serverAuth+clientAuth, SKI and AKI (the
root's SKI), a random 159-bit serial, NotBefore = now - 5 min but never before the root's NotBefore, NotAfter = now +
ttl (24 h default, 10 s .. 30 days) but never after the root's NotAfter; a root already expired, not yet valid or
expiring within 10 s refuses with Unavailable (rotate it).

Renewal (`authority.renew_at`): a uniformly random point in [50 %, 80 %] of a leaf's lifetime.

Rotation (`bundle`): a TrustBundle is the ordered roots (oldest first) of one trust domain. `rotate(bundle, new)`
gives (overlap, final): publish overlap (old + new) everywhere, then issue from the new root and replace every leaf,
then publish final (new only). `verify_leaf(bundle, leaf, now, expected)` checks a leaf the way a peer does (chain to
a root of the bundle, validity, EKUs, exactly one SPIFFE URI SAN of the bundle's trust domain, optionally equal to
`expected`), raising PermissionDenied.

Storage of roots and the bundle in etcd lives in meshactors.store.ca.
"""

from meshactors.ca.authority import (
    LEAF_TTL_S,
    ROOT_LIFETIME_S,
    CertificateAuthority,
    cert_pem,
    generate_root,
    issue,
    load_csr,
    renew_at,
)
from meshactors.ca.bundle import TrustBundle, rotate, verify_leaf
from meshactors.ca.identity import SpiffeId, validate_service, validate_trust_domain
from meshactors.ca.sealing import Kek, read_key_file, seal, unseal, write_key_file

__all__ = [
    "LEAF_TTL_S",
    "ROOT_LIFETIME_S",
    "CertificateAuthority",
    "Kek",
    "SpiffeId",
    "TrustBundle",
    "cert_pem",
    "generate_root",
    "issue",
    "load_csr",
    "read_key_file",
    "renew_at",
    "rotate",
    "seal",
    "unseal",
    "validate_service",
    "validate_trust_domain",
    "verify_leaf",
    "write_key_file",
]
