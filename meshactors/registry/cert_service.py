"""The CertificateService gRPC servicer: the mesh CA on the registry API's server (leaves for proven identities).

The CA's root is created once (fenced in etcd, meshactors.store.ca) and loaded again on every (re)start of the
actor hosting this service, so killing it loses nothing. Sign needs a service token: the leaf's one URI SAN is
`spiffe://<trust domain>/svc/<the token's service>`, never what the CSR asks for; CSRs are rate-limited per
identity. Bundle answers any valid token (peers need the roots to verify each other). Every issuance is recorded
(the last leaf per identity, meshactors.store.ca.IssuedStore) for Show, the admins' view of roots and expiries.
"""

from __future__ import annotations

import asyncio
import random
import time
from datetime import UTC, datetime
from pathlib import Path

import grpc
from cryptography import x509

from meshactors import log
from meshactors.auth.guard import Authenticator
from meshactors.auth.model import Role, require_admin
from meshactors.ca import authority, sealing
from meshactors.ca.bundle import fingerprint
from meshactors.ca.identity import SpiffeId
from meshactors.ca.limits import CsrRateLimiter
from meshactors.ca.rotation import HeldLeaf, Liveness, check_step, left_on_old_roots
from meshactors.errors import ConfigError, InvalidArgument, MeshError, NotReady, PermissionDenied
from meshactors.registry.service import grpc_code, identity
from meshactors.store.base import Store
from meshactors.store.ca import CaState, CaStore, IssuedRecord, IssuedStore
from meshactors.store.keys import KeySchema
from meshactors.v1 import certificate_pb2 as pb
from meshactors.v1 import certificate_pb2_grpc as pb_grpc

_log = log.get("registry.cert_api")

LOAD_RETRY_S = 1.0  # between two attempts to load (or create) the CA while etcd is unavailable
FOLLOW_S = 2.0  # how often a loaded CA checks whether another actor moved the bundle (a rotation step)
READY_WAIT_S = 5.0  # how long a call waits for the CA to load before answering UNAVAILABLE


def _ms(dt: datetime) -> int:
    return int(dt.timestamp() * 1000)


async def _abort(context: grpc.aio.ServicerContext, exc: BaseException, method: str) -> None:
    if isinstance(exc, grpc.aio.AbortError):
        raise exc
    if isinstance(exc, MeshError):
        await context.abort(grpc_code(exc), exc.message)
    _log.exception("unexpected error in certificate API", method=method, error=repr(exc)[:200])
    await context.abort(grpc.StatusCode.INTERNAL, f"internal error in {method}")


def _root(root: x509.Certificate, signing: bool) -> pb.CaRoot:
    return pb.CaRoot(
        serial=format(root.serial_number, "x"), fingerprint_sha256=fingerprint(root), signing=signing,
        not_before_ms=_ms(root.not_valid_before_utc), not_after_ms=_ms(root.not_valid_after_utc),
    )  # fmt: skip


def _roots(state: CaState) -> list[pb.CaRoot]:
    """The bundle's roots, oldest first, the signing one marked."""
    signing = fingerprint(state.ca.cert)
    return [_root(root, fingerprint(root) == signing) for root in state.bundle.roots]


def _issued(r: IssuedRecord, active: bool) -> pb.IssuedIdentity:
    return pb.IssuedIdentity(
        spiffe_id=r.spiffe_id, serial=r.serial, not_before_ms=r.not_before_ms, not_after_ms=r.not_after_ms,
        issued_ms=r.issued_ms, issuer_serial=r.issuer_serial, active=active,
    )  # fmt: skip


class CertificateService(pb_grpc.CertificateServiceServicer):
    """Serves the CA once `load` has its state (`run` keeps trying); `ttl_s` is the lifetime of the leaves."""

    def __init__(
        self,
        store: Store,
        keys: KeySchema,
        auth: Authenticator,
        trust_domain: str,
        key_file: str,
        ttl_s: int = authority.LEAF_TTL_S,
        limiter: CsrRateLimiter | None = None,
    ) -> None:
        self.store, self.keys, self.auth = store, keys, auth
        self.trust_domain, self.key_file, self.ttl_s = trust_domain, key_file, ttl_s
        self.limiter = limiter if limiter is not None else CsrRateLimiter()  # (an empty one has len 0)
        self.state: CaState | None = None
        self.problem = "the CA is loading"
        self._loaded = asyncio.Event()
        self._rng = random.Random()
        self.issued = 0
        self.records = IssuedStore(store, keys)
        self._castore: CaStore | None = None
        self._rotating = asyncio.Lock()
        self.liveness = Liveness()
        self.unrecorded = 0  # issuances whose record could not be written (the leaf was issued all the same)

    async def run(self) -> None:
        """Load the CA, then follow the bundle (a rotation step another actor took) for as long as the actor lives."""
        await self.load()
        await self._follow()

    async def load(self) -> None:
        """Load the CA (creating its root the first time), retrying while etcd is unavailable. A wrong key file or
        trust domain is logged as an error and answered to every call (it needs an operator, not a retry)."""
        while self.state is None:
            try:
                if not self.key_file:
                    raise ConfigError("the CA has no key file (--ca-key-file); `meshactors up` sets one")
                kek = sealing.read_key_file(Path(self.key_file))
                self._castore = CaStore(self.store, self.keys, kek)
                self.state = await self._castore.ensure(self.trust_domain, datetime.now(UTC))
            except ConfigError as exc:
                self.problem = f"the CA cannot start: {exc.message}"
                _log.error("ca cannot start", reason=exc.message)
                await asyncio.sleep(LOAD_RETRY_S * 10)
                continue
            except MeshError as exc:
                self.problem = f"the CA is loading: {exc.message}"
                _log.warning("ca not loaded yet; retrying", error=exc.message[:200])
                await asyncio.sleep(LOAD_RETRY_S)
                continue
            self._loaded.set()
            _log.info(
                "ca ready", trust_domain=self.trust_domain, root=self.state.ca.serial, created=self.state.created,
                bundle=list(self.state.bundle.serials), leaf_ttl_s=self.ttl_s,
            )  # fmt: skip

    async def _follow(self) -> None:
        """Reload when the bundle moves under us (a rotation step another CA actor took); logs and never dies."""
        while True:
            await asyncio.sleep(FOLLOW_S)
            if self._castore is None or self.state is None:
                continue
            try:
                found = await self._castore.read_bundle()
                if found is None or found[2] == self.state.revision:
                    continue
                async with self._rotating:
                    loaded = await self._castore.load(self.trust_domain)
                    if loaded is not None and loaded.revision != self.state.revision:
                        self.state = loaded
                        _log.info("ca reloaded: the bundle moved", signing=loaded.ca.serial,
                                  bundle=list(loaded.bundle.serials))  # fmt: skip
            except MeshError as exc:
                _log.warning("ca bundle check failed; retrying", error=exc.message[:200])
            except Exception as exc:  # a bug here must not stop the CA following rotations: say so, go on
                _log.exception("ca bundle check failed unexpectedly; retrying", error=repr(exc)[:300])

    @property
    def ready(self) -> bool:
        return self.state is not None

    async def _ca(self) -> CaState:
        if self.state is None:
            try:
                await asyncio.wait_for(self._loaded.wait(), READY_WAIT_S)
            except TimeoutError:
                pass
        if self.state is None:
            raise NotReady(self.problem)
        return self.state

    async def Sign(self, request: pb.SignRequest, context: grpc.aio.ServicerContext) -> pb.SignResponse:
        try:
            who = identity(self.auth, context)
            if who.role is not Role.SERVICE:
                raise PermissionDenied(
                    f"certificates are issued to service identities: a {who.role.value} token has none "
                    "(use the service's token, `meshactors token create --service NAME`)"
                )
            spiffe = SpiffeId(self.trust_domain, who.service)
            self.liveness.saw(spiffe.uri)
            self.limiter.take(spiffe.uri, time.monotonic())
            state = await self._ca()
            leaf = authority.issue(state.ca, request.csr_pem, spiffe, self._lifetime(request.ttl_seconds))
            nb, na = leaf.not_valid_before_utc, leaf.not_valid_after_utc
            renew = authority.renew_at(max(nb, datetime.now(UTC)), na, self._rng)
            self.issued += 1
            serial = format(leaf.serial_number, "x")
            _log.info("certificate issued", identity=spiffe.uri, token=who.token_id, serial=serial,
                      not_after=na.isoformat())  # fmt: skip
            await self._record(
                IssuedRecord(who.service, spiffe.uri, serial, _ms(nb), _ms(na), _ms(datetime.now(UTC)), state.ca.serial)
            )
            return pb.SignResponse(
                certificate_pem=authority.cert_pem(leaf), bundle_pem=state.bundle.pem(), spiffe_id=spiffe.uri,
                not_before_ms=_ms(nb), not_after_ms=_ms(na), renew_at_ms=_ms(renew), signing_serial=state.ca.serial,
            )  # fmt: skip
        except Exception as exc:
            await _abort(context, exc, "Sign")
            raise

    def _lifetime(self, asked_s: int) -> int:
        """The lifetime of a leaf: the CA's, or a shorter one the caller asked for (never a longer one)."""
        if asked_s == 0:
            return self.ttl_s
        if not authority.MIN_LEAF_TTL_S <= asked_s <= self.ttl_s:
            raise InvalidArgument(
                "ttl_seconds", f"{asked_s} is out of range {authority.MIN_LEAF_TTL_S}-{self.ttl_s} (the CA's) seconds"
            )
        return asked_s

    async def _record(self, rec: IssuedRecord) -> None:
        """Best effort: a leaf is not refused because its record could not be written (etcd briefly away); `ca
        show` then shows the identity's previous leaf until its next renewal."""
        try:
            await self.records.record(rec)
        except MeshError as exc:
            self.unrecorded += 1
            _log.warning("issuance not recorded", identity=rec.spiffe_id, error=exc.message[:200])

    async def Show(self, request: pb.ShowRequest, context: grpc.aio.ServicerContext) -> pb.ShowResponse:
        try:
            require_admin(identity(self.auth, context), "ca show")
            state = await self._ca()
            roots = _roots(state)
            issued = [_issued(r, self.liveness.active(r.spiffe_id)) for r in await self.records.list()]
            return pb.ShowResponse(
                trust_domain=state.bundle.trust_domain, leaf_ttl_seconds=self.ttl_s, roots=roots, identities=issued,
                now_ms=_ms(datetime.now(UTC)),
            )  # fmt: skip
        except Exception as exc:
            await _abort(context, exc, "Show")
            raise

    async def Rotate(self, request: pb.RotateRequest, context: grpc.aio.ServicerContext) -> pb.RotateResponse:
        try:
            who = identity(self.auth, context)
            require_admin(who, "ca rotate")
            await self._ca()
            async with self._rotating:
                state = self.state
                assert state is not None and self._castore is not None
                check_step(request.step, state.bundle.serials, state.ca.serial)
                if request.step == "stage":
                    state = await self._castore.stage_root(state, datetime.now(UTC))
                elif request.step == "activate":
                    state = await self._castore.activate(state, state.bundle.serials[-1])
                else:
                    now = _ms(datetime.now(UTC))
                    held = [HeldLeaf(r.spiffe_id, r.issuer_serial, r.not_after_ms) for r in await self.records.list()
                            if self.liveness.active(r.spiffe_id)]  # fmt: skip
                    left = left_on_old_roots(held, state.ca.serial, now)
                    if left and not request.force:
                        raise InvalidArgument("step", f"finish would drop the root that signed the valid leaves of "
                                              f"{len(left)} active identities (they have not renewed yet): "
                                              f"{', '.join(left[:5])}{' ...' if len(left) > 5 else ''}; wait for "
                                              "their renewal, or force")  # fmt: skip
                    state = await self._castore.finish(state)
                self.state = state
            _log.info("ca rotation step", step=request.step, by=who.principal, signing=state.ca.serial,
                      bundle=list(state.bundle.serials), forced=request.force)  # fmt: skip
            return pb.RotateResponse(roots=_roots(state), signing_serial=state.ca.serial, now_ms=_ms(datetime.now(UTC)))
        except Exception as exc:
            await _abort(context, exc, "Rotate")
            raise

    async def Bundle(self, request: pb.BundleRequest, context: grpc.aio.ServicerContext) -> pb.BundleResponse:
        try:
            who = identity(self.auth, context)
            if who.role is Role.SERVICE:  # a sidecar's check: its identity is alive
                self.liveness.saw(SpiffeId(self.trust_domain, who.service).uri, request.check_interval_seconds)
            state = await self._ca()
            return pb.BundleResponse(
                bundle_pem=state.bundle.pem(), trust_domain=state.bundle.trust_domain, signing_serial=state.ca.serial
            )
        except Exception as exc:
            await _abort(context, exc, "Bundle")
            raise
