"""Structured logging for every meshactors process: structlog, JSON off a terminal, console on one."""

from __future__ import annotations

import logging
import os
import sys
import threading
from typing import Any

import structlog

_configured = False


class _StderrLogger:
    """Writes each rendered line to the `sys.stderr` of the moment (not the one at configure time): a process
    that swaps stderr later (a test runner's capture, a daemon redirecting it) never gets a closed file."""

    _lock = threading.Lock()

    def msg(self, message: str) -> None:
        with self._lock:
            print(message, file=sys.stderr, flush=True)

    log = debug = info = warning = warn = error = critical = exception = fatal = failure = msg


def _stderr_logger(*_args: Any) -> _StderrLogger:
    return _StderrLogger()


def configure(level: str | None = None, json: bool | None = None) -> None:
    """Configure structlog once per process. MESHACTORS_LOG_LEVEL / MESHACTORS_LOG_JSON override defaults."""
    global _configured
    level_name = (level or os.environ.get("MESHACTORS_LOG_LEVEL") or "INFO").upper()
    if json is None:
        env = os.environ.get("MESHACTORS_LOG_JSON")
        json = env == "1" if env is not None else not sys.stderr.isatty()
    renderer: Any = structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer(colors=False)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelNamesMapping()[level_name]),
        logger_factory=_stderr_logger,
        cache_logger_on_first_use=False,
    )
    _configured = True


def get(name: str, **bound: Any) -> structlog.typing.FilteringBoundLogger:
    """A logger bound to a component name (and any extra context)."""
    if not _configured:
        configure()
    return structlog.get_logger(component=name, **bound)
