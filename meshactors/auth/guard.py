"""Authenticator: the token table one API actor keeps from etcd, and the check of a request's credentials."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable

from meshactors import log
from meshactors.auth.model import Identity, bearer
from meshactors.errors import Unauthenticated
from meshactors.store.base import Store
from meshactors.store.keys import KeySchema
from meshactors.store.tokens import TokenFeed, TokenTable

_log = log.get("auth.guard")
Metadata = Iterable[tuple[str, str | bytes]]


def header(metadata: Metadata | None, name: str = "authorization") -> str | None:
    """The first value of `name` in gRPC metadata (keys are lowercase on the wire)."""
    for key, value in metadata or ():
        if key == name:
            return value.decode(errors="replace") if isinstance(value, bytes) else value
    return None


class Authenticator:
    """Checks tokens against a TokenTable that `follow()` keeps current from etcd (run it as a task)."""

    def __init__(
        self, store: Store, keys: KeySchema, name: str, on_revoked: Callable[[str], None] | None = None
    ) -> None:
        self.table = TokenTable(on_revoked)
        self._feed = TokenFeed(store, keys, name=f"tokens-{name}")
        self.name = name
        self._loaded = asyncio.Event()

    @property
    def ready(self) -> bool:
        return self.table.loaded

    async def wait_loaded(self, timeout_s: float) -> bool:
        """Wait until the first listing is in (a server should not answer before); False if it took too long."""
        try:
            await asyncio.wait_for(self._loaded.wait(), timeout_s)
        except TimeoutError:
            _log.warning("token table not loaded yet; answering UNAVAILABLE until it is", reader=self.name)
            return False
        return True

    async def follow(self, pause_s: float = 0.5) -> None:
        """Apply the token feed forever; the loop logs and never dies."""
        while True:
            try:
                async for change in self._feed:
                    self.table.apply(change)
                    self._loaded.set()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                _log.exception("token watch failed; restarting", reader=self.name, error=repr(exc))
                await asyncio.sleep(pause_s)

    def token(self, token: str | None) -> Identity:
        """The identity of a token given as is (e.g. Eureka's basic-auth password)."""
        if not token:
            raise Unauthenticated("no credentials: give a token (see `meshactors token create`)")
        return self.table.authenticate(token)

    def identify(self, metadata: Metadata | None) -> Identity:
        """The identity of gRPC metadata's `authorization: Bearer <token>`; Unauthenticated otherwise."""
        return self.table.authenticate(bearer(header(metadata)))
