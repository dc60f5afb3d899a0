"""`python -m benchmarks.run <name> [--json OUT] [--tiny]`: run one benchmark, print its table, write its JSON.

Names: odcds, propagation, sessions, registry, eureka, peer, footprint, scale, report (all of them, then
docs/benchmarks.md and a plot).
Every benchmark starts what it needs (embedded etcd, local Ray, real Envoys), cleans up, and bounds its time.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks import common, eureka_bench, footprint, odcds, peer, propagation, registry_bench, scale, sessions

# name -> (full-size run, tiny run for the smoke test, table renderer)
BENCHMARKS: dict[str, tuple[Callable[[], dict[str, Any]], Callable[[], dict[str, Any]], Callable[..., str]]] = {
    "odcds": (lambda: odcds.run(vips=200), lambda: odcds.run(vips=5), odcds.render),
    "propagation": (
        lambda: propagation.run(sizes=(100, 1000, 5000), changes=100),
        lambda: propagation.run(sizes=(10,), changes=3, policy_sizes=(10,), policy_changes=3),
        propagation.render,
    ),
    "sessions": (lambda: sessions.run(target=10_000), lambda: sessions.run(target=50, processes=1), sessions.render),
    "registry": (
        lambda: registry_bench.run(registrations=5000, heartbeat_s=10),
        lambda: registry_bench.run(registrations=40, processes=1, concurrency=4, heartbeat_s=1),
        registry_bench.render,
    ),
    "eureka": (
        lambda: eureka_bench.run(registrations=5000, heartbeat_s=10),
        lambda: eureka_bench.run(registrations=40, processes=1, concurrency=4, heartbeat_s=1),
        eureka_bench.render,
    ),
    "peer": (lambda: peer.run(10, 10), lambda: peer.run(2, 2, window_s=3.0), peer.render),
    "footprint": (
        lambda: footprint.run(vips=1000, instances=10_000, sessions=100),
        lambda: footprint.run(vips=5, instances=20, sessions=3, processes=1, cluster=False),
        footprint.render,
    ),
    "scale": (
        lambda: scale.run(vips=10_000, instances=100_000),
        lambda: scale.run(vips=50, instances=200, first_requests=3, fetches=2),
        scale.render,
    ),
}


def run_one(name: str, tiny: bool) -> dict[str, Any]:
    """One benchmark; a progress line on stderr when it starts and when it is done (a full one takes minutes)."""
    full, small, _ = BENCHMARKS[name]
    started = time.monotonic()
    print(f"benchmark {name} ({'tiny' if tiny else 'full'}): running ...", file=sys.stderr, flush=True)
    result = (small if tiny else full)()
    result["size"] = "tiny" if tiny else "full"
    result["seconds"] = round(time.monotonic() - started, 1)
    print(f"benchmark {name}: done in {result['seconds']} s", file=sys.stderr, flush=True)
    result["versions"] = common.versions()
    return result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__)
    ap.add_argument("name", choices=[*BENCHMARKS, "report"])
    ap.add_argument("--json", help="write the result here")
    ap.add_argument("--tiny", action="store_true", help="a few seconds' run (the smoke test's size)")
    ap.add_argument("--out-dir", default="docs", help="report: where benchmarks.md and the plot go")
    args = ap.parse_args(argv)
    os.environ.setdefault("RAY_AUTH_MODE", "token")
    os.environ.setdefault("MESHACTORS_LOG_LEVEL", "WARNING")
    if args.name == "report":
        from benchmarks import report

        result = report.run(Path(args.out_dir), tiny=args.tiny)
        print(Path(result["markdown"]).read_text())
    else:
        result = run_one(args.name, args.tiny)
        print(BENCHMARKS[args.name][2](result))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {args.json}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
