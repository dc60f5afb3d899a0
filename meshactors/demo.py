"""`meshactors demo`: the whole story on the embedded default, in under a minute, cleaning up after itself."""

from __future__ import annotations

import shutil
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from meshactors.envoy.process import EnvoyProcess, start_generic_envoy, xds_endpoints
from meshactors.registry.client import RegistryClient
from meshactors.store.server import free_port
from meshactors.testing.backends import Backend, get
from meshactors.testing.stack import UpProcess
from meshactors.v1 import registry_pb2 as pb


class DemoFailed(Exception):
    pass


def _say(text: str) -> None:
    print(text, flush=True)


def _check(ok: bool, what: str) -> None:
    if not ok:
        raise DemoFailed(what)


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def _until(predicate: object, timeout_s: float) -> float:
    start = time.monotonic()
    while not predicate():  # type: ignore[operator]
        if time.monotonic() - start > timeout_s:
            raise DemoFailed(f"not within {timeout_s} s")
        time.sleep(0.01)
    return time.monotonic() - start


def run_demo(keep_dir: Path | None = None) -> int:
    work = keep_dir or Path(tempfile.mkdtemp(prefix="meshactors-demo-"))
    work.mkdir(parents=True, exist_ok=True)
    up = UpProcess(
        work / "control-plane",
        args=["--registry-port", "0", "--xds-port", "0", "--namespace", f"meshactors-demo-{free_port()}"],
    )
    backends: list[Backend] = []
    envoy: EnvoyProcess | None = None
    started = time.monotonic()
    try:
        _say("1. Starting the control plane: embedded etcd, local Ray, registry shards, snapshot builders, xDS servers")
        t0 = time.monotonic()
        info = up.start(timeout_s=120)
        _say(f"   ready in {time.monotonic() - t0:.1f} s: registry {info['registry']}, xDS {', '.join(info['xds'])}")

        _say("2. Two services register under their VIPs (Eureka-style, with leases)")
        catalog1, reviews = Backend("catalog-1"), Backend("reviews-1")
        backends += [catalog1, reviews]
        client = RegistryClient(info["registry"], token=info["token"])
        lease = pb.LeaseSettings(renewal_interval_seconds=60, duration_seconds=600)
        ref_c1, _ = client.register(pb.Instance(vip="catalog", host="127.0.0.1", port=catalog1.port, lease=lease))
        client.register(pb.Instance(vip="reviews", host="127.0.0.1", port=reviews.port, lease=lease))
        _say(f"   catalog -> 127.0.0.1:{catalog1.port}   reviews -> 127.0.0.1:{reviews.port}")

        _say("3. One Envoy starts from the generic bootstrap: it knows no services")
        listen, admin = ("127.0.0.1", free_port()), ("127.0.0.1", free_port())
        envoy = start_generic_envoy(
            xds_endpoints(info["xds"]), "demo-envoy", work, listen, admin, token=info["proxy_token"]
        )
        _say(f"   envoy listening on {listen[0]}:{listen[1]} (apps send http://<vip>/ there)")

        _say("4. Requests by name: the first one discovers the cluster on demand (delta ADS: CDS, then EDS)")
        for vip in ("catalog", "reviews"):
            first = get(listen, vip)
            _check(first.status == 200, f"first request to {vip} returned {first.status}")
            warm = [get(listen, vip).seconds for _ in range(20)]
            _say(
                f"   {vip:<8} first request {_ms(first.seconds):>9} -> {first.status} from {first.body};"
                f" warm median {_ms(statistics.median(warm))}"
            )

        _say("5. A second catalog instance registers: traffic spreads to it")
        catalog2 = Backend("catalog-2")
        backends.append(catalog2)
        t0 = time.monotonic()
        client.register(pb.Instance(vip="catalog", host="127.0.0.1", port=catalog2.port, lease=lease))
        took = _until(lambda: get(listen, "catalog").body == "catalog-2", 5)
        _say(f"   catalog-2 got traffic {_ms(took)} after registering")
        spread = Counter(get(listen, "catalog").body for _ in range(20))
        _say(f"   20 requests: {dict(sorted(spread.items()))}")
        _check(set(spread) == {"catalog-1", "catalog-2"}, "traffic did not spread over both instances")

        _say("6. catalog-1 deregisters: traffic follows")
        client.deregister(ref_c1)
        took = _until(lambda: all(get(listen, "catalog").body == "catalog-2" for _ in range(4)), 5)
        spread = Counter(get(listen, "catalog").body for _ in range(20))
        _say(f"   all traffic on catalog-2 within {_ms(took + 0.0)}; 20 requests: {dict(spread)}")
        _check(set(spread) == {"catalog-2"}, "traffic still reached the deregistered instance")

        _say("7. An unknown VIP fails fast (503 every time), and works as soon as it registers")
        misses = [get(listen, "inventory") for _ in range(2)]
        _say("   inventory: " + ", ".join(f"{r.status} in {_ms(r.seconds)}" for r in misses))
        _check(all(r.status == 503 and r.seconds < 0.5 for r in misses), "unknown VIP did not fail fast")
        inventory = Backend("inventory-1")
        backends.append(inventory)
        client.register(pb.Instance(vip="inventory", host="127.0.0.1", port=inventory.port, lease=lease))
        took = _until(lambda: get(listen, "inventory").status == 200, 5)
        _say(f"   inventory registered: 200 from {get(listen, 'inventory').body} {_ms(took)} later, same Envoy")
        client.close()

        _say(f"Done in {time.monotonic() - started:.1f} s. Cleaning up.")
        return 0
    except DemoFailed as exc:
        _say(f"demo failed: {exc}")
        return 1
    finally:
        if envoy is not None:
            envoy.stop()
        for b in backends:
            b.stop()
        up.stop()
        if keep_dir is None:
            shutil.rmtree(work, ignore_errors=True)


def main() -> int:
    return run_demo()


if __name__ == "__main__":
    sys.exit(main())
