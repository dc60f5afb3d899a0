"""The Eureka REST API over HTTP (aiohttp), under both /eureka/v2/ and /eureka/, in JSON or XML as asked.

Every request needs a token: HTTP basic auth with the token as the password (`http://app:TOKEN@host:port/eureka/`,
as Spring Cloud and py-eureka-client send it) or `Authorization: Bearer TOKEN`. Reads take any valid token; writes
one that owns the instance's VIPs (see EurekaRegistry). Errors are mapped to HTTP statuses once, in `_errors`."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from meshactors import log
from meshactors.auth.guard import Authenticator
from meshactors.auth.model import Identity, http_token, require_discovery
from meshactors.errors import (
    Conflict,
    InvalidArgument,
    MeshError,
    NotFound,
    NotReady,
    PermissionDenied,
    Unauthenticated,
    Unavailable,
)
from meshactors.eureka import codec
from meshactors.eureka.service import EurekaRegistry
from meshactors.eureka.view import EurekaView, Key
from meshactors.model import Instance

_log = log.get("eureka.http")
MAX_BODY = codec.MAX_BODY_BYTES
PREFIXES = ("/eureka/v2/", "/eureka/")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

REALM = 'Basic realm="meshactors"'
_WHO = web.RequestKey("identity", Identity)  # who makes the request, set by the middleware for the handlers

_STATUS_OF: list[tuple[type[MeshError], int]] = [
    (InvalidArgument, 400),
    (Unauthenticated, 401),
    (PermissionDenied, 403),
    (NotFound, 404),
    (Conflict, 409),
    (Unavailable, 503),
]


def _wants_xml(request: web.Request) -> bool:
    """As a Eureka server: JSON when the Accept header asks for it, XML otherwise."""
    return "json" not in request.headers.get("Accept", "").lower()


def _reply(request: web.Request, root: str, obj: dict[str, Any]) -> web.Response:
    xml = _wants_xml(request)
    return _body(codec.render(root, obj, xml), xml)


def _body(body: bytes, xml: bool) -> web.Response:
    return web.Response(body=body, content_type="application/xml" if xml else "application/json", charset="utf-8")


def _who(request: web.Request) -> Identity:
    return request[_WHO]


class EurekaHttp:
    def __init__(self, registry: EurekaRegistry) -> None:
        self.registry = registry
        # The full registry, rendered once per view version and format: every client fetches it at start.
        self._apps: dict[bool, tuple[int, bytes]] = {}
        # Each instance rendered once per change and format (the view renews its info dict on every change).
        self._fragments: dict[tuple[Key, bool], tuple[dict[str, Any], str]] = {}

    @property
    def view(self) -> EurekaView:
        return self.registry.view

    # ---- writes ------------------------------------------------------------------------------------------------

    async def register(self, request: web.Request) -> web.Response:
        info = codec.parse_instance_body(await request.read(), request.headers.get("Content-Type", ""))
        await self.registry.register(_who(request), request.match_info["app"], info)
        return web.Response(status=204)

    async def renew(self, request: web.Request) -> web.Response:
        await self.registry.renew(_who(request), request.match_info["app"], request.match_info["id"])
        return web.Response(status=200)

    async def cancel(self, request: web.Request) -> web.Response:
        await self.registry.cancel(_who(request), request.match_info["app"], request.match_info["id"])
        return web.Response(status=200)

    async def override_status(self, request: web.Request) -> web.Response:
        value = request.query.get("value", "")
        await self.registry.override_status(_who(request), request.match_info["app"], request.match_info["id"], value)
        return web.Response(status=200)

    async def delete_override(self, request: web.Request) -> web.Response:
        value = request.query.get("value", "")
        await self.registry.delete_override(_who(request), request.match_info["app"], request.match_info["id"], value)
        return web.Response(status=200)

    async def update_metadata(self, request: web.Request) -> web.Response:
        metadata = {k: v for k, v in request.query.items()}
        await self.registry.update_metadata(
            _who(request), request.match_info["app"], request.match_info["id"], metadata
        )
        return web.Response(status=200)

    # ---- reads -------------------------------------------------------------------------------------------------

    def _fragment(self, key: Key, xml: bool) -> str:
        info = self.view.info(key)
        cached = self._fragments.get((key, xml))
        if cached is None or cached[0] is not info:
            cached = (info, codec.fragment("instance", {**info, "actionType": "ADDED"}, xml))
            self._fragments[(key, xml)] = cached
        return cached[1]

    def _applications(self, groups: list[tuple[Key, list[Instance]]], xml: bool) -> bytes:
        by_app: dict[str, list[str]] = {}
        for key, _ in groups:
            by_app.setdefault(key[0], []).append(self._fragment(key, xml))
        return codec.applications_body(list(by_app.items()), self.view.version, self.view.hashcode(), xml)

    async def get_apps(self, request: web.Request) -> web.Response:
        xml = _wants_xml(request)
        cached = self._apps.get(xml)
        if cached is None or cached[0] != self.view.version:
            groups = self.view.groups()
            if len(self._fragments) > 2 * len(groups) + 64:  # forget instances that are gone
                live = {key for key, _ in groups}
                self._fragments = {k: v for k, v in self._fragments.items() if k[0] in live}
            cached = (self.view.version, self._applications(groups, xml))
            self._apps[xml] = cached
        return _body(cached[1], xml)

    async def get_delta(self, request: web.Request) -> web.Response:
        by_app: dict[str, list[dict[str, Any]]] = {}
        for change in self.view.recent_changes():
            by_app.setdefault(change.key[0], []).append(change.info)
        apps = [codec.application(name, infos) for name, infos in by_app.items()]
        return _reply(request, "applications", codec.applications(apps, self.view.version, self.view.hashcode()))

    async def get_app(self, request: web.Request) -> web.Response:
        name = request.match_info["app"]
        groups = self.view.groups(app=name)
        if not groups:
            raise NotFound(f"app {name.upper()!r} has no registered instances")
        infos = [{**self.view.info(key), "actionType": "ADDED"} for key, _ in groups]
        return _reply(request, "application", codec.application(name.upper(), infos))

    async def get_app_instance(self, request: web.Request) -> web.Response:
        records = self.view.find(request.match_info["app"], request.match_info["id"])
        if not records:
            raise NotFound(f"instance {request.match_info['id']!r} of app {request.match_info['app'].upper()!r}")
        return _reply(request, "instance", codec.instance_info(records, "ADDED"))

    async def get_instance(self, request: web.Request) -> web.Response:
        records = self.view.find_id(request.match_info["id"])
        if not records:
            raise NotFound(f"instance {request.match_info['id']!r} is not registered")
        return _reply(request, "instance", codec.instance_info(records, "ADDED"))

    async def get_vip(self, request: web.Request) -> web.Response:
        xml = _wants_xml(request)
        return _body(self._applications(self.view.groups(vip=_vip(request, "vip")), xml), xml)

    async def get_svip(self, request: web.Request) -> web.Response:
        xml = _wants_xml(request)
        return _body(self._applications(self.view.groups(svip=_vip(request, "svip")), xml), xml)


def _vip(request: web.Request, field: str) -> str:
    return request.match_info[field].strip().lower()


def _error_reply(exc: MeshError) -> web.Response:
    status = next((code for cls, code in _STATUS_OF if isinstance(exc, cls)), 500)
    headers = {"WWW-Authenticate": REALM} if status == 401 else {}
    return web.Response(status=status, text=exc.message + "\n", headers=headers)


def build_app(registry: EurekaRegistry, auth: Authenticator) -> web.Application:
    api = EurekaHttp(registry)

    @web.middleware
    async def errors(request: web.Request, handler: Handler) -> web.StreamResponse:
        """Authenticates every request (before its body is read), then maps what the handler raises."""
        try:
            who = auth.token(http_token(request.headers.get("Authorization")))
            if not registry.view.loaded:
                raise NotReady("meshactors Eureka API is still loading the registry")
            if request.method in ("GET", "HEAD"):
                require_discovery(who, "reading the Eureka registry")
            request[_WHO] = who
            return await handler(request)
        except web.HTTPException:
            raise
        except MeshError as exc:
            reply = _error_reply(exc)
            if reply.status >= 500 and not isinstance(exc, NotReady):
                _log.warning("eureka request failed", method=request.method, path=request.path[:200],
                             error=exc.message[:300])  # fmt: skip
            return reply
        except Exception as exc:
            _log.exception("unexpected error in eureka request", method=request.method, path=request.path[:200])
            return web.Response(status=500, text=f"internal error: {exc!r}\n")

    app = web.Application(client_max_size=MAX_BODY, middlewares=[errors])
    for prefix in PREFIXES:
        add = app.router.add_route
        add("GET", prefix + "apps", api.get_apps)
        add("GET", prefix + "apps/", api.get_apps)
        add("GET", prefix + "apps/delta", api.get_delta)
        add("POST", prefix + "apps/{app}", api.register)
        add("GET", prefix + "apps/{app}", api.get_app)
        add("PUT", prefix + "apps/{app}/{id}", api.renew)
        add("DELETE", prefix + "apps/{app}/{id}", api.cancel)
        add("GET", prefix + "apps/{app}/{id}", api.get_app_instance)
        add("PUT", prefix + "apps/{app}/{id}/status", api.override_status)
        add("DELETE", prefix + "apps/{app}/{id}/status", api.delete_override)
        add("PUT", prefix + "apps/{app}/{id}/metadata", api.update_metadata)
        add("GET", prefix + "instances/{id}", api.get_instance)
        add("GET", prefix + "vips/{vip}", api.get_vip)
        add("GET", prefix + "svips/{svip}", api.get_svip)
    return app


async def serve(
    app: web.Application, host: str, port: int, attempts: int = 50, ssl_context: ssl.SSLContext | None = None
) -> web.AppRunner:
    """Listen on host:port (HTTPS when `ssl_context` is given), waiting a little for a previous incarnation's
    socket to go away."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    last: OSError | None = None
    for _ in range(attempts):
        try:
            await web.TCPSite(runner, host, port, reuse_address=True, ssl_context=ssl_context).start()
            return runner
        except OSError as exc:
            last = exc
            await asyncio.sleep(0.1)
    await runner.cleanup()
    raise Unavailable(f"Eureka API cannot listen on {host}:{port}: {last}") from last
