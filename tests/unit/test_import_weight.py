"""What each actor's process imports: only the builders and xDS servers load the Envoy protos, only the APIs'
and the dashboard's own HTTP servers aiohttp (each actor runs in a fresh process that imports its class's module
and unpickles its arguments and its callers' answers)."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys

import pytest

from meshactors.settings import MeshSettings
from meshactors.snapshot.statistics import BuilderStatistics, VipSourceStatistics
from meshactors.xds.statistics import HostStatistics, SessionPolicy, SessionStatistics

PROTOS = ("envoy", "xds", "udpa", "validate")

# Reads a pickle from stdin after the imports named in argv, and prints the top-level packages then loaded.
_PROBE = """
import importlib, json, pickle, sys
for name in sys.argv[1:]:
    importlib.import_module(name)
data = sys.stdin.buffer.read()
if data:
    pickle.loads(data)
print(json.dumps(sorted({m.split(".")[0] for m in sys.modules})))
"""


def loaded(modules: list[str], payload: object = None) -> set[str]:
    """The top-level packages a fresh interpreter holds after importing `modules` and unpickling `payload`."""
    data = b"" if payload is None else pickle.dumps(payload)
    out = subprocess.run(
        [sys.executable, "-c", _PROBE, *modules],
        input=data,
        capture_output=True,
        check=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)},
    )
    return set(json.loads(out.stdout))


def _statistics() -> list[object]:
    builder = BuilderStatistics("snapshot-builder-0", True, "i", 1, 0, 0, (), 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
    policy = SessionPolicy("reviews", "0123456789abcdef", "grpc", ("routing.mirror: gRPC does not mirror",), {"*": 3})
    stream = SessionStatistics("s-1", "node", "sotw", "grpc", "peer", 0.0, 0, 0, {}, policies=(policy,))
    host = HostStatistics("xds-server-0", True, "i", 0, 0, 0, 0, 0, 0, 0, 0, 0, streams=(stream,))
    return [builder, host, VipSourceStatistics(0, 0, 0, 10, 0)]


def test_the_settings_every_actor_unpickles_load_no_protos_nor_cryptography() -> None:
    assert not loaded([], MeshSettings(etcd="http://127.0.0.1:2379")) & {*PROTOS, "cryptography"}


@pytest.mark.parametrize(
    "module",
    [
        "meshactors.runtime.actors",  # shards, registry API, Eureka API
        "meshactors.runtime.controller",  # imports every actor class to create the actors
        "meshactors.runtime.dashboard_actor",
        "meshactors.runtime.xds_actors",  # the module only: a builder's or server's __init__ loads the rest
        "meshactors.runtime.embedded",  # `up`
    ],
)
def test_a_role_module_loads_no_protos_nor_aiohttp(module: str) -> None:
    held = loaded([module])
    assert "ray" in held
    assert not held & {*PROTOS, "aiohttp"}, f"{module} loads {sorted(held & {*PROTOS, 'aiohttp'})}"


def test_the_dashboard_samples_statistics_without_protos() -> None:
    held = loaded(["meshactors.runtime.dashboard_actor", "meshactors.runtime.status"], _statistics())
    assert not held & set(PROTOS)


def test_the_probe_sees_protos_where_they_are() -> None:
    assert {"envoy", "grpc"} <= loaded(["meshactors.xds.host"])
