"""How every command finds the running mesh: the ready file `up` keeps in its state directory, checked for life.

`meshactors up` writes <state dir>/ready.json once everything answers (addresses, namespace, credentials' mode,
its own pid and host) and removes it when it stops. A command given no address reads it; a file whose `up` is
gone (its pid no longer exists on this host, or nothing answers at its registry address) is reported in one line.
"""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path
from typing import Any

from meshactors import defaults
from meshactors.errors import ConfigError, MeshError

START_HINT = "start it with `meshactors up`"


class NotRunning(MeshError):
    """The state directory names no live `up` (exit code 1)."""


def ready_path(state_dir: str | Path) -> Path:
    return Path(state_dir).expanduser() / defaults.READY_FILE


def read_ready(path: str | Path) -> dict[str, Any]:
    try:
        return dict(json.loads(Path(path).read_text()))
    except (OSError, ValueError, TypeError) as exc:
        raise ConfigError(f"cannot read ready file {path}: {exc}") from exc


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process: it exists
    return True


def answers(address: str, timeout_s: float = 1.0) -> bool:
    """A quick TCP connect to HOST:PORT."""
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s):
            return True
    except (OSError, ValueError):
        return False


def stale_reason(info: dict[str, Any]) -> str:
    """Why the `up` that wrote `info` is not running ("" if it looks alive). The pid is checked only on its host."""
    pid = int(info.get("pid") or 0)
    if pid and info.get("hostname", socket.gethostname()) == socket.gethostname() and not pid_alive(pid):
        return f"up pid {pid} is gone"
    registry = str(info.get("registry") or "")
    if registry and not answers(registry):
        return f"up pid {pid} is alive but nothing answers at {registry}" if pid else f"nothing answers at {registry}"
    return ""


def find(state_dir: str | Path, ready_file: str | Path | None = None, check: bool = True) -> dict[str, Any]:
    """The ready file's contents: `ready_file` if given, else the state directory's; NotRunning if stale."""
    if ready_file:
        info = read_ready(ready_file)
        where = f"ready file {ready_file}"
    else:
        path = ready_path(state_dir)
        where = f"state dir {Path(state_dir).expanduser()}"
        if not path.exists():
            raise NotRunning(f"meshactors is not running ({where}: no ready file); {START_HINT}")
        info = read_ready(path)
    if check and (reason := stale_reason(info)):
        raise NotRunning(f"meshactors is not running ({where}: {reason}); {START_HINT}")
    return info
