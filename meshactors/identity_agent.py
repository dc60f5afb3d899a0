"""The sidecar's identity agent: its key made here, a CSR signed by the mesh CA, the files Envoy reads, renewal.

The private key is generated in this process and written only into the sidecar's identity directory (0700, the
key files 0600); the CA sees a CSR. Every file is written to a temporary name in the same directory and renamed
into place, so Envoy (file-based SDS, meshactors.envoy.sds) and gRPC's file watcher never read half a file. The
bundle is written before the leaf, so roots a new leaf chains to are trusted before it is presented.

`run` renews at the point the CA named (a jittered 50-80 % of the lifetime) and on failure retries with a backoff
bounded by what is left of the lifetime; it logs and never raises, so a CA outage leaves the current certificate
serving until it expires. With a `check` (the CA's Bundle call) it also looks every `check_s` whether the trust
bundle or the signing root changed (a root rotation step) and then renews at once: the new bundle is trusted, and
a leaf of the new signing root held, within one check interval of each step.
"""

from __future__ import annotations

import os
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from meshactors import log
from meshactors.envoy import sds
from meshactors.errors import MeshError, Unavailable

RETRY_MIN_S = 1.0
RETRY_MAX_S = 30.0
CHECK_S = 10.0  # how often the agent asks whether the bundle or the signing root changed (root rotation)

_log = log.get("identity_agent")


@dataclass(frozen=True, slots=True)
class Issued:
    """What the agent holds now (no key: that stays in its file)."""

    spiffe_id: str
    serial: str
    not_after_s: float
    renew_at_s: float
    bundle_pem: str
    signing_serial: str = ""  # the root that signed it

    @property
    def trust_domain(self) -> str:
        return self.spiffe_id.removeprefix("spiffe://").partition("/")[0]


def new_key_and_csr() -> tuple[ec.EllipticCurvePrivateKey, str]:
    """An EC P-256 key and a CSR over it that asks for nothing (the CA takes the identity from the token)."""
    key = ec.generate_private_key(ec.SECP256R1())
    csr = x509.CertificateSigningRequestBuilder().subject_name(x509.Name([])).sign(key, hashes.SHA256())
    return key, csr.public_bytes(serialization.Encoding.PEM).decode("ascii")


def write_atomic(path: Path, text: str, mode: int = 0o600) -> None:
    """`text` into `path` by a rename of a fully written temporary file of the same directory (mode `mode`)."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(fd, "w", encoding="ascii") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


class IdentityAgent:
    """Keeps `directory` holding a current certificate of the identity `sign` proves (a CertificateService call
    with the sidecar's service token, given the CSR PEM, returning a SignResponse)."""

    def __init__(
        self,
        sign: Callable[[str], Any],
        directory: Path,
        clock: Callable[[], float] = time.time,
        check: Callable[[], Any] | None = None,
        check_s: float = CHECK_S,
    ) -> None:
        self.sign = sign
        self.directory = directory
        self.clock = clock
        self.check = check
        self.check_s = check_s
        self.current: Issued | None = None
        self.renewals = 0
        self.failures = 0
        self.rotations_seen = 0

    def refresh(self) -> Issued:
        """A new key, a new leaf, written; MeshError (from the CA call) leaves the files as they were."""
        key, csr = new_key_and_csr()
        resp = self.sign(csr)
        key_pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ).decode("ascii")
        leaf = x509.load_pem_x509_certificate(resp.certificate_pem.encode("ascii"))
        if leaf.public_key() != key.public_key():
            raise Unavailable("the CA returned a certificate for another key")
        d = self.directory
        d.mkdir(mode=0o700, parents=True, exist_ok=True)
        write_atomic(d / sds.BUNDLE_PEM, resp.bundle_pem, 0o644)
        write_atomic(d / sds.BUNDLE_FILE, sds.secret_file_text(sds.bundle_secret(resp.bundle_pem)), 0o644)
        write_atomic(d / sds.CERT_PEM, resp.certificate_pem, 0o644)
        write_atomic(d / sds.KEY_PEM, key_pem, 0o600)
        write_atomic(d / sds.IDENTITY_FILE, sds.secret_file_text(sds.identity_secret(resp.certificate_pem, key_pem)))
        self.current = Issued(
            spiffe_id=resp.spiffe_id, serial=format(leaf.serial_number, "x"), not_after_s=resp.not_after_ms / 1000,
            renew_at_s=resp.renew_at_ms / 1000, bundle_pem=resp.bundle_pem, signing_serial=resp.signing_serial,
        )  # fmt: skip
        _log.info(
            "identity certificate written", spiffe_id=resp.spiffe_id, serial=self.current.serial,
            not_after_ms=resp.not_after_ms, renew_at_ms=resp.renew_at_ms, directory=str(d),
        )  # fmt: skip
        return self.current

    def next_wait(self, failed: int) -> float:
        """Seconds until the next attempt: the CA's renewal point, or after `failed` failures a doubling backoff
        that never waits past a tenth of what is left of the lifetime (so retries speed up before expiry)."""
        now = self.clock()
        if self.current is None:
            return min(RETRY_MAX_S, RETRY_MIN_S * 2 ** max(0, failed - 1))
        if not failed:
            return max(0.0, self.current.renew_at_s - now)
        left = max(0.0, self.current.not_after_s - now)
        return max(0.2, min(RETRY_MAX_S, RETRY_MIN_S * 2 ** (failed - 1), left / 10 if left else RETRY_MIN_S))

    def moved(self) -> bool:
        """Whether the CA's bundle or signing root differs from what the current leaf came with (MeshError: the
        CA did not answer)."""
        if self.check is None or self.current is None:
            return False
        resp = self.check()
        return (resp.bundle_pem, resp.signing_serial) != (self.current.bundle_pem, self.current.signing_serial)

    def run(self, stop: threading.Event) -> None:
        """Renew until `stop`; never raises (a failure is logged and retried)."""
        failed = 0
        while True:
            wait = self.next_wait(failed)
            checking = self.check is not None and not failed and wait > self.check_s
            if stop.wait(self.check_s if checking else wait):
                return
            if checking:
                try:
                    if not self.moved():
                        continue
                except Exception as exc:  # the CA away: the current leaf serves on, the next check asks again
                    _log.debug("bundle check failed", error=repr(exc)[:300])
                    continue
                self.rotations_seen += 1
                _log.info("the CA's roots moved; renewing now", directory=str(self.directory))
            try:
                self.refresh()
                self.renewals += 1
                failed = 0
            except Exception as exc:  # a renewal loop that dies would let the certificate expire silently
                failed += 1
                self.failures += 1
                left = (self.current.not_after_s - self.clock()) if self.current else 0.0
                _log.warning(
                    "identity renewal failed; retrying", error=(exc.message if isinstance(exc, MeshError) else
                    repr(exc))[:300], attempt=failed, seconds_left=round(left, 1),
                )  # fmt: skip

    def start(self, stop: threading.Event) -> threading.Thread:
        thread = threading.Thread(target=self.run, args=(stop,), name="identity-renewal", daemon=True)
        thread.start()
        return thread
