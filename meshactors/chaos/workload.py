"""What chaos runs while it kills: a steady load through Envoy that records every status, and heartbeats."""

from __future__ import annotations

import threading
import time
from collections import Counter
from typing import Any

from meshactors.errors import MeshError
from meshactors.model import InstanceRef
from meshactors.registry.client import RegistryClient
from meshactors.testing.backends import get


class Background:
    """A daemon thread running `_run` until `stop()`."""

    def __init__(self, name: str) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30)

    def _run(self) -> None:
        raise NotImplementedError


class Load(Background):
    """Steady GETs through Envoy on fresh connections; records every status."""

    def __init__(self, proxy: tuple[str, int], vips: list[str], rate: float) -> None:
        super().__init__("chaos-load")
        self.proxy, self.vips, self.rate = proxy, vips, rate
        self.codes: Counter[str] = Counter()
        self.failures: list[dict[str, Any]] = []
        self.sent = 0

    def _run(self) -> None:
        period = 1.0 / self.rate
        next_at = time.monotonic()
        i = 0
        while not self._stop.is_set():
            vip = self.vips[i % len(self.vips)]
            i += 1
            try:
                reply = get(self.proxy, vip, timeout_s=10)
                code, ok = str(reply.status), reply.status == 200 and reply.body.startswith(vip)
            except OSError as exc:
                code, ok = f"error:{type(exc).__name__}", False
            self.sent += 1
            self.codes[code] += 1
            if not ok:
                self.failures.append({"vip": vip, "code": code, "at": time.time()})
            next_at += period
            delay = next_at - time.monotonic()
            if delay > 0:
                self._stop.wait(delay)
            else:
                next_at = time.monotonic()


class Heartbeats(Background):
    def __init__(self, client: RegistryClient, refs: list[InstanceRef], interval_s: float) -> None:
        super().__init__("chaos-heartbeats")
        self.client, self.refs, self.interval_s = client, refs, interval_s
        self.failures = 0

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            for ref in self.refs:
                try:
                    self.client.heartbeat(ref)
                except MeshError:
                    self.failures += 1  # the lease outlives a few missed heartbeats
