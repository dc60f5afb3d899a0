"""`meshactors logs`: the control plane's log files under the state dir (each actor's, the driver's, etcd's), merged
by time, filtered by source and age, rendered for a person (or as stored, with --json), and followed as they grow.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any

from meshactors import defaults, log
from meshactors.errors import ConfigError

DRIVER = "driver"  # the `up` process's own records
ETCD = "etcd"  # the embedded etcd's log

_DURATION = re.compile(r"\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*")
_UNIT_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(text: str) -> timedelta:
    """'90s', '5m', '2h', '1d', '250ms' (a bare number is seconds)."""
    m = _DURATION.fullmatch(text)
    if not m:
        raise ConfigError(f"--since: {text!r} is not a duration like 30s, 5m, 2h or 1d")
    return timedelta(seconds=float(m.group(1)) * _UNIT_S[m.group(2) or "s"])


def sources(state_dir: Path) -> dict[str, list[Path]]:
    """Every log of the state dir by source name, each as its files oldest first (rotated ones before the current)."""
    out: dict[str, list[Path]] = {}
    log_dir = state_dir / defaults.LOG_DIR
    if log_dir.is_dir():
        for path in sorted(log_dir.glob("*.log")):
            rotated = sorted(log_dir.glob(f"{path.name}.[0-9]*"), key=lambda p: -int(p.suffix[1:] or 0))
            out[path.stem] = [*rotated, path]
    etcd_logs = sorted((state_dir / "etcd").glob("*.etcd.log"))
    if etcd_logs:
        out[ETCD] = etcd_logs
    return out


def _is_of_kind(name: str, kind: str) -> bool:
    head, sep, index = name.rpartition("-")
    return bool(sep) and head == kind and index.isdigit()


def select(available: dict[str, list[Path]], target: str | None, where: Path) -> dict[str, list[Path]]:
    """The sources `target` names: an actor (registry-shard-0), a kind (registry-shard), driver, etcd; None: all."""
    if not target:
        chosen = dict(available)
    else:
        chosen = {n: f for n, f in available.items() if n == target or _is_of_kind(n, target)}
    if not chosen:
        known = ", ".join(sorted(available)) or "none yet"
        what = f"for {target!r} " if target else ""
        raise ConfigError(f"no logs {what}under {where} (known: {known})")
    return chosen


@dataclass(frozen=True, slots=True)
class Record:
    """One line of a log: where it came from, when (None if the line says no time) and the text as stored."""

    source: str
    at: datetime | None
    line: str
    fields: dict[str, Any] | None  # the JSON object, when the line is one


def _time(text: Any) -> datetime | None:
    if not isinstance(text, str):
        return None
    try:
        at = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return at if at.tzinfo else at.replace(tzinfo=UTC)


def parse(source: str, line: str) -> Record:
    line = line.rstrip("\n")
    try:
        fields = json.loads(line)
    except ValueError:
        fields = None
    if not isinstance(fields, dict):
        return Record(source, None, line, None)
    return Record(source, _time(fields.get("timestamp") or fields.get("ts")), line, fields)


def render(record: Record, as_json: bool = False) -> str:
    """The line as stored (`as_json`), else in the console form, after the name of its source."""
    if as_json or record.fields is None:
        return f"{record.source}: {record.line}" if not as_json else record.line
    event = dict(record.fields)
    if "timestamp" not in event and "ts" in event:  # etcd's own records: ts, level, msg
        event["timestamp"] = event.pop("ts")
    if "event" not in event and "msg" in event:
        event["event"] = event.pop("msg")
    if record.source != DRIVER:
        event.pop("component", None)  # an actor's file is its own: the source name says enough
    return f"{record.source:<18} {log.human(event)}"


def _read_lines(path: Path) -> Iterator[str]:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            yield from f
    except OSError:
        return


def merge(streams: Iterable[tuple[str, Iterable[str]]], since: timedelta | None, limit: int) -> list[Record]:
    """The lines of each (source, lines) as records merged by time (a line without one keeps its place after the
    record before it), those of the last `since` only, the newest `limit` (0: all)."""
    cutoff = datetime.now(UTC) - since if since is not None else None
    merged: list[tuple[datetime, int, Record]] = []
    seq = 0
    for source, lines in streams:
        last = datetime.min.replace(tzinfo=UTC)
        for line in lines:
            if not line.strip():
                continue
            record = parse(source, line)
            last = record.at or last  # a line without a time (a traceback) stays after its record
            if cutoff is not None and last < cutoff:
                continue
            merged.append((last, seq, record))
            seq += 1
    merged.sort(key=lambda item: (item[0], item[1]))
    records = [r for _, _, r in merged]
    return records[-limit:] if limit > 0 else records


def _file_streams(chosen: dict[str, list[Path]]) -> Iterator[tuple[str, Iterator[str]]]:
    for source, files in chosen.items():
        yield source, (line for path in files for line in _read_lines(path))


def history(chosen: dict[str, list[Path]], since: timedelta | None, limit: int) -> list[Record]:
    """The records of every chosen source's files (rotated ones first), merged by time, newest `limit`."""
    return merge(_file_streams(chosen), since, limit)


# ---- through a fetch function (an actor's own file, read by the actor: a cluster's other nodes) ----------------

Fetch = Callable[[str, int, int, int], tuple[int, int, str]]  # (actor, inode, offset, max_bytes) -> read_chunk()


def read_chunk(path: Path | None, inode: int, offset: int, max_bytes: int) -> tuple[int, int, str]:
    """(inode, next offset, text): whole lines of `path` from `offset`, at most `max_bytes`. A negative offset
    reads its last -offset bytes (from a line start); a file that is no longer `inode`, or is shorter than
    `offset` (rotated), is read from its start. (0, 0, "") when there is no file."""
    if path is None:
        return 0, 0, ""
    try:
        fh = open(path, "rb")
    except OSError:
        return 0, 0, ""
    with fh:
        st = os.fstat(fh.fileno())
        if offset < 0:
            start = max(0, st.st_size + offset)
        elif (inode and st.st_ino != inode) or offset > st.st_size:
            start = 0
        else:
            start = offset
        fh.seek(start)
        data = fh.read(max_bytes)
    if offset < 0 and start > 0:  # began inside a line: skip to the next one
        cut = data.find(b"\n") + 1
        data, start = data[cut:], start + cut
    end = data.rfind(b"\n") + 1
    return st.st_ino, start + end, data[:end].decode("utf-8", errors="replace")


class RemoteLogs:
    """Actors' logs read through `fetch` (each actor reads its own file): the last bytes of each, then what each
    appends, resumed from where the last read ended."""

    def __init__(self, fetch: Fetch, names: list[str], history_bytes: int = 512 * 1024) -> None:
        self.fetch, self.names, self.history_bytes = fetch, names, history_bytes
        self.cursors: dict[str, tuple[int, int]] = {}

    def streams(self) -> list[tuple[str, list[str]]]:
        """The last lines of each actor's log (as `merge` takes them); following goes on from there."""
        out = []
        for name in self.names:
            inode, offset, text = self.fetch(name, 0, -self.history_bytes, self.history_bytes)
            self.cursors[name] = (inode, offset)
            out.append((name, text.splitlines()))
        return out

    def poll(self) -> list[Record]:
        out: list[Record] = []
        for name in self.names:
            inode, offset = self.cursors.get(name, (0, 0))
            try:
                inode, offset, text = self.fetch(name, inode, offset, 1024 * 1024)
            except Exception:  # an actor restarting: ask again next round
                continue
            self.cursors[name] = (inode, offset)
            out += [parse(name, line) for line in text.splitlines() if line.strip()]
        return out


class _Tail:
    """One growing file read from an offset; reopened from the start when it was rotated or truncated."""

    def __init__(self, source: str, path: Path, at_end: bool) -> None:
        self.source, self.path = source, path
        self.fh: IO[str] | None = None
        self.inode = 0
        self.partial = ""
        self._open(at_end)

    def _open(self, at_end: bool) -> None:
        try:
            self.fh = open(self.path, encoding="utf-8", errors="replace")
        except OSError:
            self.fh = None
            return
        self.inode = os.fstat(self.fh.fileno()).st_ino
        if at_end:
            self.fh.seek(0, os.SEEK_END)

    def lines(self) -> list[str]:
        if self.fh is None:
            self._open(at_end=False)
            if self.fh is None:
                return []
        try:
            st = os.stat(self.path)
        except OSError:
            st = None
        out = self._drain()
        if st is not None and (st.st_ino != self.inode or st.st_size < self.fh.tell()):
            self.fh.close()
            self._open(at_end=False)  # rotated: the new file is read from its start
            out += self._drain()
        return out

    def _drain(self) -> list[str]:
        assert self.fh is not None
        data = self.partial + self.fh.read()
        *complete, self.partial = data.split("\n")
        return complete


def wanted(name: str, target: str | None) -> bool:
    return not target or name == target or _is_of_kind(name, target)


def follow(
    state_dir: Path,
    target: str | None,
    emit: Callable[[Record], None],
    stop: Callable[[], bool],
    poll_s: float = 0.1,
    remote: RemoteLogs | None = None,
    tails: dict[Path, _Tail] | None = None,
) -> None:
    """Emit every record appended to the chosen logs from now on (new sources too) until `stop()`; with `remote`,
    the actors' through it and only the driver's and etcd's from local files. `tails` (from `tails_at_end`):
    "now" is when those were taken, not when this starts."""
    first = tails is None
    tails = {} if tails is None else tails
    while not stop():
        available = sources(state_dir)
        chosen = {n: f for n, f in available.items() if wanted(n, target) and (not remote or n in (DRIVER, ETCD))}
        for source, files in chosen.items():
            current = files[-1]
            if current not in tails:
                tails[current] = _Tail(source, current, at_end=first)
        first = False
        for tail in tails.values():
            for line in tail.lines():
                if line.strip():
                    emit(parse(tail.source, line))
        for record in remote.poll() if remote is not None else ():
            emit(record)
        time.sleep(poll_s)


def tails_at_end(state_dir: Path, target: str | None = None) -> dict[Path, _Tail]:
    """The chosen logs as they end now: what `follow` given them emits is what is appended from this moment."""
    tails: dict[Path, _Tail] = {}
    for source, files in sources(state_dir).items():
        if wanted(source, target):
            tails[files[-1]] = _Tail(source, files[-1], at_end=True)
    return tails


def show(
    state_dir: Path,
    target: str | None,
    since: str | None,
    lines: int,
    as_json: bool,
    follow_: bool,
    out: IO[str],
    remote: RemoteLogs | None = None,
) -> int:
    """`meshactors logs`: print the history, then (with `follow_`) what is appended, until interrupted. With
    `remote` (its names already chosen), the actors' logs come through it, the driver's and etcd's from files."""
    window = parse_duration(since) if since else None
    if remote is None:
        records = history(select(sources(state_dir), target, state_dir), window, lines)
    else:
        local = {n: f for n, f in sources(state_dir).items() if n in (DRIVER, ETCD) and wanted(n, target)}
        if not local and not remote.names:
            raise ConfigError(f"no logs for {target!r}: no such actor, nor driver or etcd" if target else "no logs")
        records = merge([*_file_streams(local), *remote.streams()], window, lines)
    for record in records:
        out.write(render(record, as_json) + "\n")
    out.flush()
    if not follow_:
        return 0

    def emit(record: Record) -> None:
        out.write(render(record, as_json) + "\n")
        out.flush()

    try:
        follow(state_dir, target, emit, stop=lambda: False, remote=remote)
    except KeyboardInterrupt:
        pass
    return 0
