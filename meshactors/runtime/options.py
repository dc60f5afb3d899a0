"""The options every control-plane actor is created with (light: `up` and `deploy` import it, not the roles)."""

from __future__ import annotations

from typing import Any

from meshactors.settings import MeshSettings

# Detached, named, restarted forever; calls Ray retries on the new instance must be idempotent.
# Ray nices its workers to 15 by default; the control plane answers proxies on their first request's
# critical path, so its actors run at normal priority.
ACTOR_OPTIONS: dict[str, Any] = {
    "lifetime": "detached",
    "max_restarts": -1,
    "max_task_retries": -1,
    "num_cpus": 0,
    "runtime_env": {"env_vars": {"RAY_worker_niceness": "0"}},
}


def actor_options(settings: MeshSettings) -> dict[str, Any]:
    """ACTOR_OPTIONS plus the deployment's placement resources."""
    if not settings.actor_resources:
        return dict(ACTOR_OPTIONS)
    return {**ACTOR_OPTIONS, "resources": dict(settings.actor_resources)}
