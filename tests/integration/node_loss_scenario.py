"""Node-loss scenario, run in its own process by test_node_loss.py (it owns a multi-node Ray cluster).

A head node and two worker nodes on this machine (ray.cluster_utils.Cluster); the control plane is
kept on the workers (`--actor-resource meshactors=1`); an Envoy serves traffic to two VIPs; the worker node
holding the xDS servers and snapshot builders is removed. Prints one JSON object with what happened.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path
from typing import Any

import ray
from ray.cluster_utils import Cluster

from meshactors.chaos import wait_converged
from meshactors.envoy.process import EnvoyProcess, start_generic_envoy, xds_endpoints
from meshactors.registry.client import RegistryClient
from meshactors.runtime.topology import kind_of, observe
from meshactors.store.keys import KeySchema
from meshactors.store.server import free_port
from meshactors.testing.backends import Backend, get, wait_routable
from meshactors.testing.stack import UpProcess
from meshactors.v1 import registry_pb2 as pb

NAMESPACE = "nodeloss"


def placement() -> dict[str, str]:
    names = sorted(a["name"] for a in ray.util.list_named_actors(all_namespaces=True) if a["namespace"] == NAMESPACE)
    return {n: observe(n, NAMESPACE)[0].node_id for n in names}


def main(etcd: str, work: Path) -> dict[str, Any]:
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    workers = [cluster.add_node(num_cpus=1, resources={"meshactors": 100}) for _ in range(2)]
    cluster.wait_for_nodes()
    up = UpProcess(
        work / "up",
        args=[
            "--etcd", etcd, "--ray-address", cluster.address, "--namespace", NAMESPACE,
            "--registry-port", "0", "--eureka-port", "0", "--dashboard-port", "0", "--xds-port", "0",
            "--actor-resource", "meshactors=1",
            "--shards", "1", "--builders", "2", "--xds-servers", "2",
        ],
    )  # fmt: skip
    envoy: EnvoyProcess | None = None
    backends: list[Backend] = []
    try:
        info = up.start(timeout_s=120)
        ray.init(address=cluster.address, namespace=NAMESPACE, log_to_driver=False, logging_level="ERROR")
        before = placement()
        wanted = {"xds-server", "snapshot-builder"}
        by_node: dict[str, int] = {}
        for name, node in before.items():
            if kind_of(name) in wanted:
                by_node[node] = by_node.get(node, 0) + 1
        victim_id = max(by_node, key=lambda n: by_node[n])
        victim = next(w for w in workers if w.node_id == victim_id)

        client = RegistryClient(info["registry"], token=info["token"], timeout_s=20)
        vips = ["nl-a", "nl-b"]
        for vip in vips:
            backends.append(Backend(vip))
            client.register(pb.Instance(vip=vip, host="127.0.0.1", port=backends[-1].port))
        listen, admin = ("127.0.0.1", free_port()), ("127.0.0.1", free_port())
        envoy = start_generic_envoy(
            xds_endpoints(info["xds"]), "nodeloss", work, listen, admin, token=info["proxy_token"]
        )
        if not wait_routable(listen, vips, timeout_s=20):
            raise RuntimeError("VIPs never became routable")

        stop = threading.Event()
        failures: list[Any] = []
        sent = [0]

        def load() -> None:
            while not stop.is_set():
                for vip in vips:
                    try:
                        reply = get(listen, vip)
                        ok = reply.status == 200 and reply.body == vip
                        code: Any = reply.status
                    except OSError as exc:
                        ok, code = False, repr(exc)
                    sent[0] += 1
                    if not ok:
                        failures.append((vip, code))
                time.sleep(0.02)

        t = threading.Thread(target=load, daemon=True)
        t.start()
        time.sleep(1.0)
        removed_at = time.monotonic()
        cluster.remove_node(victim, allow_graceful=True)
        converged = wait_converged(NAMESPACE, etcd, KeySchema(), 60)
        back_in = time.monotonic() - removed_at
        after = placement()
        # a VIP registered after the loss is routable through the same Envoy
        late = Backend("nl-late")
        backends.append(late)
        client.register(pb.Instance(vip="nl-late", host="127.0.0.1", port=late.port))
        late_start = time.monotonic()
        late_ok = False
        while time.monotonic() - late_start < 5:
            if get(listen, "nl-late").status == 200:
                late_ok = True
                break
            time.sleep(0.05)
        late_s = time.monotonic() - late_start
        time.sleep(1.0)
        stop.set()
        t.join(20)
        client.close()
        return {
            "victim_node": victim_id,
            "on_victim_before": sorted(n for n, node in before.items() if node == victim_id),
            "placement_after": after,
            "converged_s": None if converged is None else round(back_in, 3),
            "sent": sent[0],
            "failures": failures[:20],
            "late_routable": late_ok,
            "late_s": round(late_s, 3),
        }
    finally:
        if envoy is not None:
            envoy.stop()
        for b in backends:
            b.stop()
        up.stop()
        if ray.is_initialized():
            ray.shutdown()
        cluster.shutdown()


if __name__ == "__main__":
    result = main(sys.argv[1], Path(sys.argv[2]))
    print("RESULT " + json.dumps(result), flush=True)
