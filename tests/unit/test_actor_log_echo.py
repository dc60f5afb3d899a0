"""`up` echoes the actors' own log files (a local Ray runs no log monitor): all records as JSON, or warnings only."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from meshactors.runtime.embedded import echo_actor_logs
from meshactors.testing.waits import until


def _record(level: str, event: str) -> str:
    return json.dumps({"event": event, "level": level, "timestamp": "2026-12-01T00:00:00Z"})


@pytest.mark.parametrize("human", [False, True])
def test_records_appended_to_actor_files_are_echoed_and_the_drivers_are_not(
    tmp_path: Path, capfd: pytest.CaptureFixture[str], human: bool
) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "registry-api.log").write_text(_record("info", "from before this up") + "\n")
    stop = threading.Event()
    thread = echo_actor_logs(tmp_path, human, stop)
    try:
        seen = ""

        def echoed(text: str) -> bool:
            nonlocal seen
            seen += capfd.readouterr().err
            return text in seen

        with open(logs / "registry-api.log", "a") as f:  # an existing file: read from where it ended
            f.write(_record("info", "an info record") + "\n" + _record("warning", "a warning record") + "\n")
        (logs / "xds-server-0.log").write_text(_record("error", "a new role's first record") + "\n")  # a new file
        (logs / "driver.log").write_text(_record("warning", "the driver's own") + "\n")
        until(lambda: echoed("a new role's first record") and echoed("a warning record"), 10, "nothing echoed")
        assert "from before this up" not in seen and "the driver's own" not in seen
        assert ("an info record" in seen) is not human  # a person's terminal gets warnings and errors only
        if not human:
            assert _record("warning", "a warning record") in seen.splitlines()  # as stored
    finally:
        stop.set()
        thread.join(5)
    assert not thread.is_alive()
