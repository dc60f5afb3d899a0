"""`meshactors chaos`, the run: kills actors (and etcd) under load through a real Envoy; reports what it saw.

Against a running deployment (found from the ready file `meshactors up` writes): it registers its own backends
under its own VIPs (heartbeating), runs an Envoy from the generic bootstrap, drives a steady load with Envoy
retries off, kills actors at an interval, measures how long the control plane takes to converge after each
kill (every xDS session ACKed the versions the registry's current state gives), and compares registrations
in etcd before and after.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from meshactors import defaults, log
from meshactors.chaos.convergence import wait_converged
from meshactors.chaos.workload import Heartbeats, Load
from meshactors.envoy.process import EnvoyProcess, start_generic_envoy, xds_endpoints
from meshactors.errors import ConfigError, MeshError, NotFound
from meshactors.model import InstanceRef
from meshactors.registry.client import RegistryClient
from meshactors.runtime import ops
from meshactors.runtime.topology import KINDS, kind_of, list_names, observe
from meshactors.store.etcd import EtcdStore
from meshactors.store.keys import KeySchema
from meshactors.store.server import free_port
from meshactors.testing.backends import Backend, wait_routable
from meshactors.v1 import registry_pb2 as pb

_log = log.get("chaos")


@dataclass
class ChaosOptions:
    info: dict[str, Any]  # the ready file's content (registry, xds, etcd, ray_address, namespace, ...)
    duration_s: float = defaults.CHAOS_DURATION_S
    interval_s: float = defaults.CHAOS_INTERVAL_S
    kill: list[str] = field(default_factory=list)  # actor names; empty: every kind in turn, random actor
    rate: float = defaults.CHAOS_RATE  # requests per second through Envoy, spread over the VIPs
    vips: int = defaults.CHAOS_VIPS
    etcd_fault: str = ""  # "", "pause" or "kill" (the embedded etcd, by the PID in the ready file)
    etcd_fault_s: float = defaults.CHAOS_ETCD_FAULT_S
    converge_timeout_s: float = defaults.CHAOS_CONVERGE_TIMEOUT_S
    seed: int | None = None
    first_kill_s: float | None = None  # default: one interval in
    # a person's progress line per step (the CLI prints them to stderr); None: none
    progress: Callable[[str], None] | None = field(default=None, repr=False)


# How a run waits for convergence: timeout in, seconds taken (None: not converged) out.
Settle = Callable[[float], float | None]


async def _registrations(etcd: str, keys: KeySchema) -> set[str]:
    store = EtcdStore.from_spec(etcd)
    await store.connect()
    try:
        items, _ = await store.list_prefix(keys.instances)
    finally:
        await store.close()
    return {kv.key for kv in items}


def _victims(opts: ChaosOptions, namespace: str, rng: random.Random) -> list[str]:
    """The order of kills: the named actors in turn, else every kind in a shuffled order, a random actor each."""
    if opts.kill:
        return list(opts.kill)
    names = list_names(namespace)
    kinds = [k for k in KINDS if any(kind_of(n) == k for n in names)]
    rng.shuffle(kinds)
    return [rng.choice([n for n in names if kind_of(n) == k]) for k in kinds]


def run_chaos(opts: ChaosOptions) -> dict[str, Any]:
    info = opts.info
    for key in ("registry", "xds", "etcd", "ray_address", "namespace"):
        if not info.get(key):
            raise ConfigError(f"chaos needs {key!r} (from --ready-file or the matching flag)")
    namespace = info["namespace"]
    keys = KeySchema(info.get("key_prefix") or defaults.KEY_PREFIX)

    def settle(timeout_s: float) -> float | None:
        """Seconds until every session is at etcd's state (the oracle), or None past `timeout_s`."""
        return wait_converged(namespace, info["etcd"], keys, timeout_s)

    def say(text: str) -> None:
        if opts.progress is not None:
            opts.progress(text)

    rng = random.Random(opts.seed)
    connected_here = ops.connect(info["ray_address"], namespace)
    work = Path(tempfile.mkdtemp(prefix="meshactors-chaos-"))
    backends: list[Backend] = []
    envoy: EnvoyProcess | None = None
    tls_ca = str(info["tls_ca"]) if info.get("tls") and info.get("tls_ca") else None  # the listeners' TLS
    client = RegistryClient(info["registry"], token=info["token"], timeout_s=15, tls_ca=tls_ca)
    heartbeats: Heartbeats | None = None
    load: Load | None = None
    refs: list[InstanceRef] = []
    kills: list[dict[str, Any]] = []
    faults: list[dict[str, Any]] = []
    started = time.monotonic()
    try:
        tag = f"{os.getpid():x}{rng.randrange(16**4):04x}"
        vips = [f"chaos-{tag}-{i}" for i in range(opts.vips)]
        lease = pb.LeaseSettings(renewal_interval_seconds=2, duration_seconds=60)
        for vip in vips:
            for j in range(2):
                b = Backend(f"{vip}/{j}")
                backends.append(b)
                ref, _ = client.register(pb.Instance(vip=vip, host="127.0.0.1", port=b.port, lease=lease))
                refs.append(ref)
        heartbeats = Heartbeats(client, refs, 2.0)
        heartbeats.start()
        say(f"registered {len(refs)} instances under {len(vips)} VIPs; starting Envoy")

        listen, admin = ("127.0.0.1", free_port()), ("127.0.0.1", free_port())
        envoy = start_generic_envoy(
            xds_endpoints(info["xds"]), f"chaos-{tag}", work, listen, admin, token=info.get("proxy_token", ""),
            tls_ca=tls_ca,
        )  # fmt: skip
        if not wait_routable(listen, vips, timeout_s=20):
            raise MeshError("chaos VIPs never became routable through Envoy")
        first = settle(opts.converge_timeout_s)
        if first is None:
            raise MeshError("the deployment is not converged before any fault; fix it first (meshactors status)")
        # Only the registrations this run keeps alive count: others in etcd may expire on their own meanwhile.
        ours = {keys.instance(ref) for ref in refs}
        before = asyncio.run(_registrations(info["etcd"], keys)) & ours
        say(f"converged in {first:.2f} s; {opts.rate:g} requests/s through Envoy for {opts.duration_s:g} s")

        load = Load(listen, vips, opts.rate)
        load.start()
        t0 = time.monotonic()
        victims = _victims(opts, namespace, rng)
        next_kill = t0 + (opts.first_kill_s if opts.first_kill_s is not None else opts.interval_s)
        fault_at = t0 + opts.duration_s / 3 if opts.etcd_fault else None
        i = 0
        while time.monotonic() - t0 < opts.duration_s:
            now = time.monotonic()
            if fault_at is not None and now >= fault_at:
                faults.append(_etcd_fault(info, opts, t0, settle))
                fault_at = None
                say(f"{time.monotonic() - t0:6.1f} s  etcd {opts.etcd_fault} for {opts.etcd_fault_s:g} s; "
                    f"{load.sent} requests sent, {len(load.failures)} failed")  # fmt: skip
                continue
            if now >= next_kill:
                victim = victims[i % len(victims)]
                i += 1
                kills.append(_kill(victim, namespace, t0, opts.converge_timeout_s, settle))
                conv = kills[-1]["converged_s"]
                say(f"{time.monotonic() - t0:6.1f} s  killed {victim}: "
                    f"{'converged in ' + format(conv, '.2f') + ' s' if conv is not None else 'NOT converged'}; "
                    f"{load.sent} requests sent, {len(load.failures)} failed")  # fmt: skip
                next_kill = max(time.monotonic(), next_kill + opts.interval_s)
                if i % len(victims) == 0 and not opts.kill:
                    victims = _victims(opts, namespace, rng)
                continue
            time.sleep(min(0.05, max(0.0, next_kill - now)))
        load.stop()
        say(f"{time.monotonic() - t0:6.1f} s  load stopped; checking convergence and registrations")
        final = settle(opts.converge_timeout_s)
        after = asyncio.run(_registrations(info["etcd"], keys)) & ours
        lost = sorted(before - after)
        report = {
            "duration_s": round(time.monotonic() - t0, 2),
            "requests": {"sent": load.sent, "failed": len(load.failures), "by_status": dict(load.codes)},
            "failures": load.failures[:50],
            "kills": kills,
            "kinds_killed": dict(Counter(k["kind"] for k in kills)),
            "etcd_faults": faults,
            "converged_at_end_s": None if final is None else round(final, 3),
            "registrations_before": len(before),
            "registrations_lost": lost,
            "heartbeat_failures": heartbeats.failures,
            "vips": vips,
        }
        report["ok"] = (
            not load.failures and not lost and final is not None and all(k["converged_s"] is not None for k in kills)
        )
        return report
    finally:
        if load is not None:
            load.stop()
        if heartbeats is not None:
            heartbeats.stop()
        for ref in refs:
            _deregister(client, ref)
        client.close()
        if envoy is not None:
            envoy.stop()
        for b in backends:
            b.stop()
        if connected_here:
            ops.disconnect()
        _log.info("chaos finished", seconds=round(time.monotonic() - started, 1))


def _deregister(client: RegistryClient, ref: InstanceRef, timeout_s: float = 20.0) -> None:
    """Clean up after ourselves even if the API is still restarting from a kill (a leftover would expire later,
    in somebody else's run)."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            client.deregister(ref)
            return
        except NotFound:
            return
        except MeshError as exc:
            if time.monotonic() > deadline:
                _log.warning("could not deregister; its lease will expire", ref=str(ref), error=str(exc))
                return
            time.sleep(0.2)


def _kill(victim: str, namespace: str, t0: float, converge_timeout_s: float, settle: Settle) -> dict[str, Any]:
    before, handle = observe(victim, namespace)
    at = time.monotonic()
    error = ""
    if handle is None:
        error = f"no actor {victim!r} in namespace {namespace!r}"
    else:
        ops.kill(handle, restart=True)
        _log.warning("killed actor", actor=victim, pid=before.pid)
        # converged only counts once Ray has noticed: the actor runs again as a new process
        deadline = at + converge_timeout_s
        while time.monotonic() < deadline:
            now, _ = observe(victim, namespace)
            if now.restarts > before.restarts and now.state == "ALIVE":
                break
            time.sleep(0.05)
    conv = settle(max(0.0, converge_timeout_s - (time.monotonic() - at))) if not error else None
    if conv is not None:
        conv = time.monotonic() - at
    return {
        "actor": victim,
        "kind": kind_of(victim),
        "at_s": round(at - t0, 3),
        "converged_s": None if conv is None else round(conv, 3),
        "error": error,
    }


def _etcd_fault(info: dict[str, Any], opts: ChaosOptions, t0: float, settle: Settle) -> dict[str, Any]:
    pid = int(info.get("etcd_pid") or 0)
    if not pid:
        raise ConfigError("--etcd-fault needs the embedded etcd's PID (the ready file of `meshactors up`)")
    at = time.monotonic()
    if opts.etcd_fault == "pause":
        os.kill(pid, signal.SIGSTOP)
        time.sleep(opts.etcd_fault_s)
        os.kill(pid, signal.SIGCONT)
    elif opts.etcd_fault == "kill":
        os.kill(pid, signal.SIGKILL)  # `meshactors up` restarts its embedded etcd on the same port and data
    else:
        raise ConfigError(f"--etcd-fault must be pause or kill, not {opts.etcd_fault!r}")
    _log.warning("etcd fault injected", fault=opts.etcd_fault, pid=pid)
    conv = settle(opts.converge_timeout_s)
    return {
        "fault": opts.etcd_fault,
        "pid": pid,
        "at_s": round(at - t0, 3),
        "seconds": opts.etcd_fault_s if opts.etcd_fault == "pause" else 0,
        "converged_s": None if conv is None else round(conv, 3),
    }
