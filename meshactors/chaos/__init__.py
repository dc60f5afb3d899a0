"""The operator chaos command: kills actors (and etcd) under load through a real Envoy and reports the damage.

It uses the runtime (through meshactors.runtime.ops and .topology, never Ray itself) and meshactors.testing
helpers; nothing imports it but the CLI's `chaos` command, lazily, and the tests.
"""

from meshactors.chaos.convergence import converged, wait_converged
from meshactors.chaos.report import format_report
from meshactors.chaos.run import ChaosOptions, run_chaos

__all__ = ["ChaosOptions", "converged", "format_report", "run_chaos", "wait_converged"]
