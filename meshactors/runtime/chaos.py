"""`meshactors chaos`: kills actors (and etcd) under load through a real Envoy and reports what the data plane saw.

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
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ray

from meshactors import log
from meshactors.envoy.process import EnvoyProcess, start_generic_envoy, xds_endpoints
from meshactors.errors import ConfigError, MeshError, NotFound
from meshactors.model import InstanceRef
from meshactors.registry.client import RegistryClient
from meshactors.runtime.calls import call_sync
from meshactors.runtime.topology import (
    CONTROLLER,
    KINDS,
    SNAPSHOT_BUILDER,
    XDS_SERVER,
    builder_map,
    kind_of,
    list_names,
    observe,
)
from meshactors.store.etcd import EtcdStore
from meshactors.store.keys import KeySchema
from meshactors.store.server import free_port
from meshactors.testing.backends import Backend, get, wait_routable
from meshactors.v1 import registry_pb2 as pb

_log = log.get("runtime.chaos")


@dataclass
class ChaosOptions:
    info: dict[str, Any]  # the ready file's content (registry, xds, etcd, ray_address, namespace, ...)
    duration_s: float = 30.0
    interval_s: float = 4.0
    kill: list[str] = field(default_factory=list)  # actor names; empty: every kind in turn, random actor
    rate: float = 50.0  # requests per second through Envoy, spread over the VIPs
    vips: int = 2
    etcd_fault: str = ""  # "", "pause" or "kill" (the embedded etcd, by the PID in the ready file)
    etcd_fault_s: float = 10.0
    converge_timeout_s: float = 30.0
    seed: int | None = None
    first_kill_s: float | None = None  # default: one interval in


class _Background:
    """A daemon thread running `_run` until `stop()`."""

    def __init__(self, name: str) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30)

    def _run(self) -> None:
        raise NotImplementedError


class _Load(_Background):
    """Steady GETs through Envoy on fresh connections; records every status."""

    def __init__(self, proxy: tuple[str, int], vips: list[str], rate: float) -> None:
        super().__init__("chaos-load")
        self.proxy, self.vips, self.rate = proxy, vips, rate
        self.codes: Counter[str] = Counter()
        self.failures: list[dict[str, Any]] = []
        self.sent = 0

    def _run(self) -> None:
        period = 1.0 / self.rate
        next_at = time.monotonic()
        i = 0
        while not self._stop.is_set():
            vip = self.vips[i % len(self.vips)]
            i += 1
            try:
                reply = get(self.proxy, vip, timeout_s=10)
                code, ok = str(reply.status), reply.status == 200 and reply.body.startswith(vip)
            except OSError as exc:
                code, ok = f"error:{type(exc).__name__}", False
            self.sent += 1
            self.codes[code] += 1
            if not ok:
                self.failures.append({"vip": vip, "code": code, "at": time.time()})
            next_at += period
            delay = next_at - time.monotonic()
            if delay > 0:
                self._stop.wait(delay)
            else:
                next_at = time.monotonic()


class _Heartbeats(_Background):
    def __init__(self, client: RegistryClient, refs: list[InstanceRef], interval_s: float) -> None:
        super().__init__("chaos-heartbeats")
        self.client, self.refs, self.interval_s = client, refs, interval_s
        self.failures = 0

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            for ref in self.refs:
                try:
                    self.client.heartbeat(ref)
                except MeshError:
                    self.failures += 1  # the lease outlives a few missed heartbeats


def converged(namespace: str, vips_hint: list[str] | None = None) -> tuple[bool, str]:
    """Every actor alive and ready, no xDS session lagging, and every held VIP at the registry's versions."""
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
        held: dict[str, tuple[str, str]] = {}
        for name in names:
            if kind_of(name) != XDS_SERVER:
                continue
            conv = call_sync(ray.get_actor(name, namespace=namespace), "convergence", timeout_s=3)
            if conv["lagging"]:
                return False, f"{name}: sessions lagging {conv['lagging'][:3]}"
            for vip, versions in conv["versions"].items():
                if held.setdefault(vip, versions) != versions:
                    return False, f"xDS servers hold different versions of {vip}"
        builders = [n for n in names if kind_of(n) == SNAPSHOT_BUILDER]
        if builders and held:
            bmap = builder_map(len(builders))
            by_builder: dict[str, list[str]] = {}
            for vip in held:
                by_builder.setdefault(bmap.owner(vip), []).append(vip)
            for builder, vips in by_builder.items():
                want = call_sync(ray.get_actor(builder, namespace=namespace), "versions", vips, timeout_s=3)
                for vip in vips:
                    if tuple(want.get(vip, ())) != tuple(held[vip]):
                        return False, f"{vip}: xDS servers hold an old version"
    except (MeshError, ValueError) as exc:
        return False, str(exc)
    return True, ""


def wait_converged(namespace: str, timeout_s: float) -> float | None:
    start = time.monotonic()
    why = ""
    while time.monotonic() - start < timeout_s:
        ok, why = converged(namespace)
        if ok:
            return time.monotonic() - start
        time.sleep(0.1)
    _log.warning("control plane did not converge", reason=why, timeout_s=timeout_s)
    return None


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
    keys = KeySchema(info.get("key_prefix") or "/meshactors")
    rng = random.Random(opts.seed)
    connected_here = False
    if not ray.is_initialized():
        ray.init(address=info["ray_address"], namespace=namespace, log_to_driver=False, logging_level="ERROR")
        connected_here = True
    work = Path(tempfile.mkdtemp(prefix="meshactors-chaos-"))
    backends: list[Backend] = []
    envoy: EnvoyProcess | None = None
    client = RegistryClient(info["registry"], timeout_s=15)
    heartbeats: _Heartbeats | None = None
    load: _Load | None = None
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
        heartbeats = _Heartbeats(client, refs, 2.0)
        heartbeats.start()

        listen, admin = ("127.0.0.1", free_port()), ("127.0.0.1", free_port())
        envoy = start_generic_envoy(xds_endpoints(info["xds"]), f"chaos-{tag}", work, listen, admin)
        if not wait_routable(listen, vips, timeout_s=20):
            raise MeshError("chaos VIPs never became routable through Envoy")
        first = wait_converged(namespace, opts.converge_timeout_s)
        if first is None:
            raise MeshError("the deployment is not converged before any fault; fix it first (meshactors status)")
        # Only the registrations this run keeps alive count: others in etcd may expire on their own meanwhile.
        ours = {keys.instance(ref) for ref in refs}
        before = asyncio.run(_registrations(info["etcd"], keys)) & ours

        load = _Load(listen, vips, opts.rate)
        load.start()
        t0 = time.monotonic()
        victims = _victims(opts, namespace, rng)
        next_kill = t0 + (opts.first_kill_s if opts.first_kill_s is not None else opts.interval_s)
        fault_at = t0 + opts.duration_s / 3 if opts.etcd_fault else None
        i = 0
        while time.monotonic() - t0 < opts.duration_s:
            now = time.monotonic()
            if fault_at is not None and now >= fault_at:
                faults.append(_etcd_fault(info, opts, t0))
                fault_at = None
                continue
            if now >= next_kill:
                victim = victims[i % len(victims)]
                i += 1
                kills.append(_kill(victim, namespace, t0, opts.converge_timeout_s))
                next_kill = max(time.monotonic(), next_kill + opts.interval_s)
                if i % len(victims) == 0 and not opts.kill:
                    victims = _victims(opts, namespace, rng)
                continue
            time.sleep(min(0.05, max(0.0, next_kill - now)))
        load.stop()
        final = wait_converged(namespace, opts.converge_timeout_s)
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
            ray.shutdown()
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


def _kill(victim: str, namespace: str, t0: float, converge_timeout_s: float) -> dict[str, Any]:
    before, handle = observe(victim, namespace)
    at = time.monotonic()
    error = ""
    if handle is None:
        error = f"no actor {victim!r} in namespace {namespace!r}"
    else:
        ray.kill(handle, no_restart=False)
        _log.warning("killed actor", actor=victim, pid=before.pid)
        # converged only counts once Ray has noticed: the actor runs again as a new process
        deadline = at + converge_timeout_s
        while time.monotonic() < deadline:
            now, _ = observe(victim, namespace)
            if now.restarts > before.restarts and now.state == "ALIVE":
                break
            time.sleep(0.05)
    conv = wait_converged(namespace, max(0.0, converge_timeout_s - (time.monotonic() - at))) if not error else None
    if conv is not None:
        conv = time.monotonic() - at
    return {
        "actor": victim,
        "kind": kind_of(victim),
        "at_s": round(at - t0, 3),
        "converged_s": None if conv is None else round(conv, 3),
        "error": error,
    }


def _etcd_fault(info: dict[str, Any], opts: ChaosOptions, t0: float) -> dict[str, Any]:
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
    conv = wait_converged(info["namespace"], opts.converge_timeout_s)
    return {
        "fault": opts.etcd_fault,
        "pid": pid,
        "at_s": round(at - t0, 3),
        "seconds": opts.etcd_fault_s if opts.etcd_fault == "pause" else 0,
        "converged_s": None if conv is None else round(conv, 3),
    }


def format_report(report: dict[str, Any]) -> str:
    req = report["requests"]
    lines = [
        f"requests: {req['sent']} sent, {req['failed']} failed {req['by_status']}",
        f"kills: {len(report['kills'])} {report['kinds_killed']}",
    ]
    for k in report["kills"]:
        conv = "never" if k["converged_s"] is None else f"{k['converged_s']:.2f} s"
        lines.append(f"  t={k['at_s']:>6.2f}s killed {k['actor']:<22} converged in {conv}")
    for f in report["etcd_faults"]:
        conv = "never" if f["converged_s"] is None else f"{f['converged_s']:.2f} s"
        lines.append(f"  t={f['at_s']:>6.2f}s etcd {f['fault']} ({f['seconds']} s): converged {conv} after")
    lines.append(f"registrations lost: {len(report['registrations_lost'])} of {report['registrations_before']}")
    lines.append("result: OK" if report["ok"] else "result: FAILED")
    return "\n".join(lines)
