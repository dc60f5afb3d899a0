"""Where an actor's records go: its own bounded file, <log_dir>/<actor name>.log, plus what Ray forwards."""

from __future__ import annotations

from pathlib import Path
from typing import cast

import ray

from meshactors import log
from meshactors.logview import read_chunk
from meshactors.settings import MeshSettings


def actor_log_dir(settings: MeshSettings) -> Path | None:
    """The deployment's log directory if this node can use it, else one under Ray's session logs (None: no file)."""
    if not settings.log_dir:
        return None
    wanted = Path(settings.log_dir)
    try:
        wanted.mkdir(parents=True, exist_ok=True)
        return wanted
    except OSError:
        # Another node of a cluster, without the driver's state directory: keep the file next to Ray's own logs.
        from ray._private.worker import global_worker

        session = Path(cast(str, global_worker.node.get_session_dir_path()))
        fallback = session / "logs" / "meshactors"
        fallback.mkdir(parents=True, exist_ok=True)
        return fallback


def configure_actor(settings: MeshSettings) -> None:
    """Configure structlog in an actor process: records to <actor>.log, stderr as `settings.log_echo` says."""
    directory = actor_log_dir(settings)
    name = ray.get_runtime_context().get_actor_name() or "actor"
    log.configure(file=directory / f"{name}.log" if directory else None, echo=settings.log_echo)  # type: ignore[arg-type]


class LogSource:
    """Every actor's own log, readable through Ray: how `meshactors logs` reads actors on a cluster's other nodes."""

    log_name: str | None = None  # a co-hosted role: the name its records are routed under (meshactors.log)

    async def log_chunk(self, inode: int, offset: int, max_bytes: int) -> tuple[int, int, str]:
        """Whole lines of this actor's log file from `offset` (see meshactors.logview.read_chunk)."""
        return read_chunk(log.file_path(self.log_name), inode, offset, min(max_bytes, 4 * 1024 * 1024))
