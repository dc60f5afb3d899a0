"""The chaos convergence check: every actor ready, and every xDS session at the versions etcd's state gives.

The expected versions are computed from etcd alone (meshactors.chaos.oracle: the registrations built with the pure
builder), never taken from the builders being checked; the sessions' ACKed versions come from the xDS servers
(through meshactors.runtime, never Ray itself). Answers yes, or no with the reason.
"""

from __future__ import annotations

import asyncio
import time

from meshactors import log
from meshactors.chaos.oracle import Expected, lagging_behind
from meshactors.errors import MeshError
from meshactors.runtime.calls import call_sync
from meshactors.runtime.ops import call_actor
from meshactors.runtime.topology import CONTROLLER, XDS_SERVER, kind_of, list_names, observe
from meshactors.store.etcd import EtcdStore
from meshactors.store.feed import load_instances
from meshactors.store.keys import KeySchema
from meshactors.store.policy_feed import load_policies

_log = log.get("chaos.convergence")


class EtcdReader:
    """Reads the registrations from etcd for the oracle over one connection kept for a whole wait (a check runs
    every 100 ms; a connection per check would cost the chaos driver's load thread its CPU)."""

    def __init__(self, etcd: str, keys: KeySchema) -> None:
        self.keys = keys
        self._loop = asyncio.new_event_loop()
        self._store = EtcdStore.from_spec(etcd)
        self._loop.run_until_complete(self._store.connect())
        self._expected: Expected | None = None
        self._revision = -1

    def expected(self) -> Expected:
        """What etcd gives now; re-read and rebuilt only when etcd's revision moved (a check runs every 100 ms)."""
        revision = self._loop.run_until_complete(self._store.revision())
        if self._expected is None or revision != self._revision:
            registered, _ = self._loop.run_until_complete(load_instances(self._store, self.keys, name="chaos-oracle"))
            stored, _ = self._loop.run_until_complete(load_policies(self._store, self.keys, name="chaos-oracle"))
            self._expected = Expected(registered, {vip: item.policy for vip, item in stored.items()})
            self._revision = revision
        return self._expected

    def close(self) -> None:
        try:
            self._loop.run_until_complete(self._store.close())
        finally:
            self._loop.close()

    def __enter__(self) -> EtcdReader:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


def converged(namespace: str, reader: EtcdReader) -> tuple[bool, str]:
    """Every actor alive and ready, and every xDS session ACKed what etcd's registrations give."""
    names = list_names(namespace)
    try:
        for name in names:
            obs, handle = observe(name, namespace)
            if obs.state != "ALIVE" or handle is None:
                return False, f"{name}: {obs.state}"
            # the controller's own ready() is its last reconcile round's view, which lags by a round: every
            # actor is checked here directly instead
            if name != CONTROLLER and not call_sync(handle, "ready", timeout_s=3):
                return False, f"{name}: not ready"
        sessions = []
        for name in names:
            if kind_of(name) == XDS_SERVER:
                sessions.extend(call_actor(name, namespace, "sessions", timeout_s=3))
        # read after the sessions: a newer state shows as lag, not as ok
        why = lagging_behind(reader.expected(), sessions)
        if why:
            return False, "; ".join(why[:3])
    except (MeshError, ValueError) as exc:
        return False, str(exc)
    return True, ""


def wait_converged(namespace: str, etcd: str, keys: KeySchema, timeout_s: float) -> float | None:
    start = time.monotonic()
    why = ""
    with EtcdReader(etcd, keys) as reader:
        while time.monotonic() - start < timeout_s:
            ok, why = converged(namespace, reader)
            if ok:
                return time.monotonic() - start
            time.sleep(0.1)
    _log.warning("control plane did not converge", reason=why, timeout_s=timeout_s)
    return None
