"""Structured logging for every meshactors process: structlog records to a bounded file and/or stderr.

A record is rendered once per destination: JSON into the process's log file (rotated, bounded in size) and, on
stderr, either JSON (`echo="all"`, for containers and CI) or a human line for warnings and errors only
(`echo="warnings"`, for a person's terminal). With no file, stderr gets every record, as JSON off a terminal and
in console form on one.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import threading
from pathlib import Path
from typing import IO, Any, Literal

import structlog

from meshactors import defaults

Echo = Literal["all", "warnings", "none"]

_configured = False
_file: Path | None = None
_sink: Any = None
_ACTOR_NAME = re.compile(r"[a-z][a-z0-9-]{0,62}")
_LEVELS = logging.getLevelNamesMapping()


class BoundedFile:
    """An append-only text file rotated at `max_bytes` into NAME.1 .. NAME.`backups` (the oldest dropped)."""

    def __init__(self, path: Path, max_bytes: int = defaults.LOG_MAX_BYTES, backups: int = defaults.LOG_BACKUPS):
        self.path, self.max_bytes, self.backups = path, max_bytes, backups
        path.parent.mkdir(parents=True, exist_ok=True)
        self._fh: IO[str] = open(path, "a", encoding="utf-8")

    def write_line(self, line: str) -> None:
        self._fh.write(line + "\n")
        self._fh.flush()
        if self._fh.tell() >= self.max_bytes:
            self._rotate()

    def _rotate(self) -> None:
        self._fh.close()
        for i in range(self.backups, 0, -1):
            older = self.path.with_name(f"{self.path.name}.{i}")
            newer = self.path.with_name(f"{self.path.name}.{i - 1}") if i > 1 else self.path
            if newer.exists():
                os.replace(newer, older)
        if self.backups == 0:
            self.path.unlink(missing_ok=True)
        self._fh = open(self.path, "a", encoding="utf-8")

    def close(self) -> None:
        self._fh.close()


_json = structlog.processors.JSONRenderer()
_console = structlog.dev.ConsoleRenderer(colors=False)


def human(event: dict[str, Any]) -> str:
    """One record as a person reads it (the console renderer's form)."""
    return str(_console(None, "", dict(event)))


ROUTE_KEY = "hosted_role"  # the context field that names a co-hosted role (its records go to its own file)
MAX_ROUTED_FILES = 64  # files of co-hosted roles one process keeps open (role names come from the deployment)


class _Sink:
    """The structlog logger of a process: every record to the file as JSON, some to the stream. Routed (a host of
    several roles), a record whose context binds ROUTE_KEY goes to that actor's own file beside the process's."""

    def __init__(self, file: BoundedFile | None, to_stderr: bool, stream_json: bool, stream_min: int) -> None:
        self.file, self.to_stderr, self.stream_json, self.stream_min = file, to_stderr, stream_json, stream_min
        self.routed: dict[str, BoundedFile] | None = None  # actor name -> its file, once routing is on
        self._lock = threading.Lock()

    def _file_of(self, actor: Any) -> BoundedFile | None:
        if self.routed is None or self.file is None or not isinstance(actor, str) or not actor:
            return self.file
        routed = self.routed.get(actor)
        if routed is None:
            if len(self.routed) >= MAX_ROUTED_FILES or not _ACTOR_NAME.fullmatch(actor):
                return self.file
            routed = self.routed[actor] = BoundedFile(self.file.path.with_name(f"{actor}.log"))
        return routed

    def msg(self, **event: Any) -> None:
        level = _LEVELS.get(str(event.get("level", "info")).upper(), logging.INFO)
        with self._lock:
            file = self._file_of(event.get(ROUTE_KEY))
            if file is not None:
                file.write_line(str(_json(None, "", dict(event))))
            if self.to_stderr and level >= self.stream_min:
                text = _json(None, "", dict(event)) if self.stream_json else human(event)
                # the stderr of the moment, not the one at configure time: a process that swaps stderr later
                # (a test runner's capture, a daemon redirecting it) never writes to a closed file
                print(text, file=sys.stderr, flush=True)

    debug = info = warning = warn = error = err = critical = fatal = exception = failure = log = msg


def configure(level: str | None = None, json: bool | None = None, file: Path | None = None, echo: Echo = "all") -> None:
    """Configure structlog for this process. MESHACTORS_LOG_LEVEL / MESHACTORS_LOG_JSON override the defaults.

    `file`: also write every record there as JSON (bounded, rotated). `echo` says what stderr gets: every record
    ("all", JSON unless `json` is False or stderr is a terminal), warnings and errors as human lines
    ("warnings"), or nothing ("none")."""
    global _configured, _file, _sink
    level_name = (level or os.environ.get("MESHACTORS_LOG_LEVEL") or "INFO").upper()
    if json is None:
        env = os.environ.get("MESHACTORS_LOG_JSON")
        json = env == "1" if env is not None else not sys.stderr.isatty()
    if echo == "warnings":
        json = False
    sink = _Sink(
        BoundedFile(file) if file is not None else None,
        echo != "none",
        stream_json=bool(json),
        stream_min=logging.WARNING if echo == "warnings" else logging.NOTSET,
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            lambda _logger, _name, event: event,  # the sink renders: a dict goes to it as keywords
        ],
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS[level_name]),
        logger_factory=lambda *_: sink,
        cache_logger_on_first_use=False,
    )
    _configured, _file, _sink = True, file, sink


def route_by_actor() -> None:
    """From now on a record whose context binds ROUTE_KEY (structlog.contextvars) goes to <that name>.log beside this
    process's file: how the roles a mesh host runs keep a log file each."""
    if _sink is not None:
        with _sink._lock:
            if _sink.routed is None:
                _sink.routed = {}


def file_path(actor: str | None = None) -> Path | None:
    """The file this process writes its records to (None: stderr only); with `actor`, that of a routed actor."""
    if actor and _file is not None and _sink is not None and _sink.routed is not None:
        return _file.with_name(f"{actor}.log")
    return _file


def get(name: str, **bound: Any) -> structlog.typing.FilteringBoundLogger:
    """A logger bound to a component name (and any extra context)."""
    if not _configured:
        configure()
    return structlog.get_logger(component=name, **bound)
