"""The chaos report as people read it: requests, kills with their convergence times, etcd faults, the result."""

from __future__ import annotations

from typing import Any


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
