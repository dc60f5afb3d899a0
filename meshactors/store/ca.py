"""CA records in etcd: the roots (certificate + sealed key), the trust bundle, fenced creation and rotation steps.

Layout (KeySchema): `{prefix}/ca/roots/{serial}` holds one root (msgpack `ca_root`: serial, cert_pem, sealed_key,
kek_id, created_ms); `{prefix}/ca/bundle` (msgpack `ca_bundle`: trust_domain, roots [cert_pem, oldest first],
active serial) is what peers trust and which root signs. Everything is read in one list of `{prefix}/ca/` (one
revision, so a rotation in flight is never seen half-done) and written in one transaction fenced on the bundle's
mod revision (0 at creation: two CA actors starting at once keep exactly one root). The private key is stored only
sealed (meshactors.ca.sealing, bound to the root's serial); etcd alone never yields it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime

from cryptography import x509

from meshactors import log
from meshactors.ca import authority, sealing
from meshactors.ca.authority import CertificateAuthority, generate_root
from meshactors.ca.bundle import TrustBundle, fingerprint, rotate
from meshactors.ca.identity import validate_trust_domain
from meshactors.errors import CodecError, ConfigError, Conflict, InvalidArgument, Unavailable
from meshactors.store import codec
from meshactors.store.base import KeyValue, Store, Txn
from meshactors.store.keys import KeySchema

KIND_ROOT = "ca_root"
KIND_BUNDLE = "ca_bundle"
KIND_ISSUED = "ca_issued"
CREATE_ATTEMPTS = 3

_log = log.get("store.ca")


@dataclass(frozen=True, slots=True)
class RootRecord:
    serial: str
    cert_pem: str
    sealed_key: bytes
    kek_id: str
    created_ms: int

    def __repr__(self) -> str:  # the sealed key is ciphertext, but it has no business in a log line either
        return f"RootRecord(serial={self.serial}, kek_id={self.kek_id}, created_ms={self.created_ms})"


@dataclass(frozen=True, slots=True)
class BundleRecord:
    trust_domain: str
    roots: tuple[str, ...]  # PEM certificates, oldest first
    active: str  # serial of the signing root


@dataclass(frozen=True, slots=True)
class IssuedRecord:
    """The last leaf issued to one service identity (what `meshactors ca show` lists with its expiry)."""

    service: str
    spiffe_id: str
    serial: str
    not_before_ms: int
    not_after_ms: int
    issued_ms: int
    issuer_serial: str = ""  # the root that signed it


def encode_issued(rec: IssuedRecord) -> bytes:
    return codec.encode(
        KIND_ISSUED,
        {
            "service": rec.service,
            "spiffe_id": rec.spiffe_id,
            "serial": rec.serial,
            "not_before_ms": rec.not_before_ms,
            "not_after_ms": rec.not_after_ms,
            "issued_ms": rec.issued_ms,
            "issuer_serial": rec.issuer_serial,
        },
    )


def decode_issued(data: bytes) -> IssuedRecord:
    payload = codec.decode(data, KIND_ISSUED)
    try:
        return IssuedRecord(
            service=str(payload["service"]), spiffe_id=str(payload["spiffe_id"]), serial=str(payload["serial"]),
            not_before_ms=int(payload["not_before_ms"]), not_after_ms=int(payload["not_after_ms"]),
            issued_ms=int(payload["issued_ms"]), issuer_serial=str(payload.get("issuer_serial", "")),
        )  # fmt: skip
    except (KeyError, TypeError, ValueError) as exc:
        raise CodecError(f"stored issuance record is malformed: {exc!r}") from exc


class IssuedStore:
    """The last leaf of every identity: written on each issuance (one key per service), listed by `ca show`."""

    def __init__(self, store: Store, keys: KeySchema) -> None:
        self.store = store
        self.keys = keys

    async def record(self, rec: IssuedRecord) -> None:
        await self.store.commit(Txn(puts={self.keys.ca_issued_to(rec.service): encode_issued(rec)}))

    async def list(self) -> list[IssuedRecord]:
        """Every record, soonest expiry first; a record that does not decode is logged and left out."""
        kvs, _ = await self.store.list_prefix(self.keys.ca_issued)
        out = []
        for kv in kvs:
            try:
                out.append(decode_issued(kv.value))
            except CodecError as exc:
                _log.warning("issuance record skipped", key=kv.key[:160], error=exc.message[:200])
        return sorted(out, key=lambda r: (r.not_after_ms, r.service))


def encode_root(rec: RootRecord) -> bytes:
    return codec.encode(
        KIND_ROOT,
        {
            "serial": rec.serial,
            "cert_pem": rec.cert_pem,
            "sealed_key": rec.sealed_key,
            "kek_id": rec.kek_id,
            "created_ms": rec.created_ms,
        },
    )


def decode_root(data: bytes) -> RootRecord:
    p = codec.decode(data, KIND_ROOT)
    try:
        rec = RootRecord(p["serial"], p["cert_pem"], p["sealed_key"], p["kek_id"], p["created_ms"])
    except (KeyError, TypeError) as exc:
        raise CodecError(f"stored CA root record is malformed: {exc!r}") from exc
    if not (isinstance(rec.serial, str) and isinstance(rec.cert_pem, str) and isinstance(rec.sealed_key, bytes)):
        raise CodecError("stored CA root record is malformed: serial, cert_pem or sealed_key has the wrong type")
    return rec


def encode_bundle(rec: BundleRecord) -> bytes:
    return codec.encode(KIND_BUNDLE, {"trust_domain": rec.trust_domain, "roots": list(rec.roots), "active": rec.active})


def decode_bundle(data: bytes) -> BundleRecord:
    p = codec.decode(data, KIND_BUNDLE)
    try:
        rec = BundleRecord(p["trust_domain"], tuple(p["roots"]), p["active"])
    except (KeyError, TypeError) as exc:
        raise CodecError(f"stored CA bundle record is malformed: {exc!r}") from exc
    if not (isinstance(rec.trust_domain, str) and isinstance(rec.active, str)):
        raise CodecError("stored CA bundle record is malformed: trust_domain or active is not a string")
    if not all(isinstance(r, str) for r in rec.roots):
        raise CodecError("stored CA bundle record is malformed: a root is not a PEM string")
    return rec


@dataclass(frozen=True, slots=True)
class CaState:
    """What the CA actor works from: the signing root (unsealed), the published bundle, and the revision the next
    write is fenced on. `created`: this call created the root (no other actor had)."""

    ca: CertificateAuthority
    bundle: TrustBundle
    revision: int
    created: bool = False


def _bundle_of(rec: BundleRecord) -> TrustBundle:
    try:
        return TrustBundle.from_pem("".join(rec.roots), rec.trust_domain)
    except InvalidArgument as exc:
        raise CodecError(f"stored CA bundle is not a valid trust bundle: {exc.message}") from exc


class CaStore:
    """Creates, loads and rotates the CA's records; `kek` opens (and seals) the root keys."""

    def __init__(self, store: Store, keys: KeySchema, kek: sealing.Kek) -> None:
        self.store = store
        self.keys = keys
        self.kek = kek

    async def _read(self) -> tuple[BundleRecord | None, dict[str, KeyValue], int]:
        """The bundle record, the root records by key, and the bundle's mod revision (0: absent), at one revision."""
        kvs, _ = await self.store.list_prefix(self.keys.ca)
        bundle_kv = next((kv for kv in kvs if kv.key == self.keys.ca_bundle), None)
        roots = {kv.key: kv for kv in kvs if kv.key.startswith(self.keys.ca_roots)}
        if bundle_kv is None:
            return None, roots, 0
        return decode_bundle(bundle_kv.value), roots, bundle_kv.mod_revision

    async def read_bundle(self) -> tuple[TrustBundle, str, int] | None:
        """The published bundle, its signing root's serial and the bundle's revision (no KEK needed); None before
        the CA has created its root."""
        kv = await self.store.get(self.keys.ca_bundle)
        if kv is None:
            return None
        rec = decode_bundle(kv.value)
        return _bundle_of(rec), rec.active, kv.mod_revision

    async def load(self, trust_domain: str) -> CaState | None:
        """The stored CA of `trust_domain`, its signing key unsealed; None when there is none yet.

        ConfigError when the store holds another trust domain or the key file is not the one the root was sealed
        with (both name what to fix); CodecError when the records are damaged or inconsistent."""
        validate_trust_domain(trust_domain)
        bundle_rec, roots, fence = await self._read()
        if bundle_rec is None:
            return None
        return self._state(trust_domain, bundle_rec, roots, fence)

    def _state(self, trust_domain: str, rec: BundleRecord, roots: dict[str, KeyValue], fence: int) -> CaState:
        if rec.trust_domain != trust_domain:
            raise ConfigError(
                f"trust domain: the stored CA is of {rec.trust_domain!r}, this control plane is configured for "
                f"{trust_domain!r}; start it with the stored trust domain or another key prefix"
            )
        bundle = _bundle_of(rec)
        try:
            root_kv = roots.get(self.keys.ca_root(rec.active))
        except InvalidArgument as exc:
            raise CodecError(f"stored CA bundle names an invalid signing root: {exc.message}") from exc
        if root_kv is None:
            raise CodecError(f"stored CA bundle names signing root {rec.active} but {self.keys.ca_root(rec.active)} "
                             "does not exist")  # fmt: skip
        root = decode_root(root_kv.value)
        try:
            cert = x509.load_pem_x509_certificate(root.cert_pem.encode("ascii"))
        except (ValueError, UnicodeEncodeError) as exc:
            raise CodecError(f"stored CA root {rec.active} holds no PEM certificate: {exc}") from exc
        if root.serial != rec.active or format(cert.serial_number, "x") != rec.active:
            raise CodecError(f"stored CA root record {root_kv.key} is of another serial than its key")
        if fingerprint(cert) not in {fingerprint(r) for r in bundle.roots}:
            raise CodecError(f"stored CA signing root {rec.active} is not in the stored bundle")
        try:
            key = sealing.unseal(root.sealed_key, self.kek, rec.active.encode("ascii"))
            ca = CertificateAuthority(cert, key, trust_domain)
        except InvalidArgument as exc:
            raise CodecError(f"stored CA root {rec.active}: {exc.message}") from exc
        return CaState(ca, bundle, fence)

    def _root_record(self, ca: CertificateAuthority) -> RootRecord:
        return RootRecord(
            ca.serial,
            ca.cert_pem,
            sealing.seal(ca.key, self.kek, ca.serial.encode("ascii")),
            self.kek.kek_id,
            int(time.time() * 1000),
        )

    async def ensure(
        self, trust_domain: str, now: datetime, root_lifetime_s: int = authority.ROOT_LIFETIME_S
    ) -> CaState:
        """Load the CA, creating its root first if there is none. The root record and the bundle are written in
        one transaction that requires the bundle to be absent, so of two actors starting at once one creates and
        the other loads the winner's root."""
        for _ in range(CREATE_ATTEMPTS):
            state = await self.load(trust_domain)
            if state is not None:
                return state
            ca = generate_root(trust_domain, now, root_lifetime_s)
            bundle = TrustBundle(trust_domain, (ca.cert,))
            root_key = self.keys.ca_root(ca.serial)
            txn = Txn(
                puts={
                    root_key: encode_root(self._root_record(ca)),
                    self.keys.ca_bundle: encode_bundle(BundleRecord(trust_domain, (ca.cert_pem,), ca.serial)),
                },
                expect={self.keys.ca_bundle: 0, root_key: 0},
            )
            try:
                revision = await self.store.commit(txn)
            except Conflict:
                _log.info("ca root created by another actor first; loading it", trust_domain=trust_domain)
                continue
            _log.info("ca root stored", trust_domain=trust_domain, serial=ca.serial, kek_id=self.kek.kek_id)
            return CaState(ca, bundle, revision, created=True)
        raise Unavailable(f"CA records kept changing during {CREATE_ATTEMPTS} attempts to create the root; retry")

    async def _write(self, state: CaState, rec: BundleRecord, puts: dict[str, bytes], deletes: tuple[str, ...]) -> int:
        txn = Txn(puts={**puts, self.keys.ca_bundle: encode_bundle(rec)}, deletes=deletes,
                  expect={self.keys.ca_bundle: state.revision})  # fmt: skip
        try:
            return await self.store.commit(txn)
        except Conflict as exc:
            raise Conflict(f"the CA bundle changed since revision {state.revision}; reload and retry") from exc

    async def stage_root(
        self, state: CaState, now: datetime, root_lifetime_s: int = authority.ROOT_LIFETIME_S
    ) -> CaState:
        """Rotation step 1: a new root joins the bundle (the overlap bundle); the old root still signs."""
        new = generate_root(state.ca.trust_domain, now, root_lifetime_s)
        overlap, _ = rotate(state.bundle, new.cert)
        rec = BundleRecord(overlap.trust_domain, tuple(authority.cert_pem(r) for r in overlap.roots), state.ca.serial)
        revision = await self._write(
            state, rec, {self.keys.ca_root(new.serial): encode_root(self._root_record(new))}, ()
        )
        _log.info("ca root staged", serial=new.serial, bundle=list(overlap.serials))
        return CaState(state.ca, overlap, revision)

    async def activate(self, state: CaState, serial: str) -> CaState:
        """Rotation step 2: root `serial` (already in the bundle) signs from now on."""
        if serial not in state.bundle.serials:
            raise InvalidArgument("serial", f"{serial[:80]!r} is not a root of the bundle {state.bundle.serials}")
        rec = BundleRecord(state.bundle.trust_domain, tuple(authority.cert_pem(r) for r in state.bundle.roots), serial)
        _, roots, _ = await self._read()
        staged = self._state(state.ca.trust_domain, rec, roots, state.revision)  # opens its key before any write
        revision = await self._write(state, rec, {}, ())
        _log.info("ca root activated", serial=serial)
        return CaState(staged.ca, staged.bundle, revision)

    async def finish(self, state: CaState) -> CaState:
        """Rotation step 3: the bundle is the signing root only (the final bundle); the other roots' records go."""
        dropped = tuple(s for s in state.bundle.serials if s != state.ca.serial)
        if not dropped:
            return state
        final = TrustBundle(state.ca.trust_domain, (state.ca.cert,))
        rec = BundleRecord(final.trust_domain, (state.ca.cert_pem,), state.ca.serial)
        revision = await self._write(state, rec, {}, tuple(self.keys.ca_root(s) for s in dropped))
        _log.info("ca old roots dropped", serial=state.ca.serial, dropped=list(dropped))
        return CaState(state.ca, final, revision)
