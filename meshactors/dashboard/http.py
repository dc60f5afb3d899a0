"""The dashboard over HTTP (aiohttp): its page (one HTML, JS and CSS file, no CDN) and its token-guarded JSON API.

Every /api/ request needs a valid token of any role: the session cookie the page gets by POSTing a token to
/api/session (HttpOnly, SameSite=Strict), or `Authorization: Bearer TOKEN`. The page itself carries no data and is
served to anyone. No access log is kept: a token is never logged."""

from __future__ import annotations

import asyncio
import json
import secrets
import ssl
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from importlib import resources
from typing import Any, Protocol

from aiohttp import web

from meshactors import log
from meshactors.auth.model import Identity, http_token
from meshactors.errors import (
    InvalidArgument,
    MeshError,
    NotFound,
    NotReady,
    PermissionDenied,
    Unauthenticated,
    Unavailable,
)

_log = log.get("dashboard.http")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

COOKIE = "meshactors_dashboard"
MAX_BODY = 8 * 1024  # the one body we read: {"token": "..."}
MAX_SESSIONS = 256  # the oldest is forgotten past this
SESSION_TTL_S = 12 * 3600.0
MAX_VIP = 253
MAX_EVENTS_ASKED = 500
STATIC = {
    "/": ("index.html", "text/html"),
    "/app.js": ("app.js", "text/javascript"),
    "/app.css": ("app.css", "text/css"),
}
HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
_STATUS_OF: list[tuple[type[MeshError], int]] = [
    (InvalidArgument, 400),
    (Unauthenticated, 401),
    (PermissionDenied, 403),
    (NotFound, 404),
    (Unavailable, 503),
]


class Data(Protocol):
    """What the API shows; the dashboard actor implements it over its state."""

    def overview(self) -> list[dict[str, Any]]: ...

    def vip(self, vip: str) -> dict[str, Any] | None: ...

    def proxies(self) -> dict[str, Any]: ...

    def health(self) -> dict[str, Any]: ...

    def events(self, since: int, limit: int) -> dict[str, Any]: ...

    def plots(self) -> dict[str, Any]: ...

    def viewed(self) -> None: ...  # someone is looking: sample often


Authenticate = Callable[[str | None], Identity]  # a token as given -> its identity, or Unauthenticated


class Sessions:
    """Session id (the cookie) -> the token it was opened with, bounded and expiring. The token is checked again
    on every request, so a revoked token's sessions stop working at once. Lost when the actor restarts."""

    def __init__(self, limit: int = MAX_SESSIONS, ttl_s: float = SESSION_TTL_S) -> None:
        self._items: OrderedDict[str, tuple[str, float]] = OrderedDict()
        self.limit, self.ttl_s = limit, ttl_s

    def open(self, token: str, now: float | None = None) -> str:
        sid = secrets.token_urlsafe(32)
        self._items[sid] = (token, (time.monotonic() if now is None else now) + self.ttl_s)
        while len(self._items) > self.limit:
            self._items.popitem(last=False)
        return sid

    def token(self, sid: str | None, now: float | None = None) -> str | None:
        if not sid:
            return None
        item = self._items.get(sid)
        if item is None:
            return None
        if item[1] < (time.monotonic() if now is None else now):
            del self._items[sid]
            return None
        return item[0]

    def close(self, sid: str | None) -> None:
        if sid:
            self._items.pop(sid, None)

    def __len__(self) -> int:
        return len(self._items)


def _json(obj: Any, status: int = 200) -> web.Response:
    return web.Response(text=json.dumps(obj), status=status, content_type="application/json", headers=HEADERS)


def _error(exc: MeshError) -> web.Response:
    status = next((code for cls, code in _STATUS_OF if isinstance(exc, cls)), 500)
    if isinstance(exc, NotReady):
        status = 503
    return _json({"error": exc.message}, status)


def _int_query(request: web.Request, name: str, default: int, high: int) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise InvalidArgument(name, f"{raw[:40]!r} is not an integer") from None
    if not 0 <= value <= high:
        raise InvalidArgument(name, f"must be from 0 to {high} (got {value})")
    return value


def _static(name: str) -> bytes:
    return (resources.files("meshactors.dashboard") / "static" / name).read_bytes()


def build_app(data: Data, authenticate: Authenticate, secure_cookie: bool = False) -> web.Application:
    sessions = Sessions()
    pages = {path: (_static(name), ctype) for path, (name, ctype) in STATIC.items()}

    def who(request: web.Request) -> Identity:
        header = request.headers.get("Authorization")
        if header:
            return authenticate(http_token(header))
        token = sessions.token(request.cookies.get(COOKIE))
        if token is None:
            raise Unauthenticated("no credentials: sign in with a token, or send `Authorization: Bearer TOKEN`")
        return authenticate(token)

    @web.middleware
    async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
        """Authenticates every API request but the sign-in, then maps what the handler raises."""
        try:
            if request.path.startswith("/api/") and request.path != "/api/session":
                who(request)
                data.viewed()
            return await handler(request)
        except web.HTTPException:
            raise
        except MeshError as exc:
            return _error(exc)
        except Exception:
            _log.exception("unexpected error in a dashboard request", method=request.method, path=request.path[:200])
            return _json({"error": "internal error (see the dashboard actor's log)"}, 500)

    async def page(request: web.Request) -> web.Response:
        body, ctype = pages[request.path]
        return web.Response(body=body, content_type=ctype, charset="utf-8", headers=HEADERS)

    async def sign_in(request: web.Request) -> web.Response:
        if request.content_length is not None and request.content_length > MAX_BODY:
            raise InvalidArgument("body", f"at most {MAX_BODY} bytes")
        try:
            body = json.loads(await request.read())
        except ValueError:
            raise InvalidArgument("body", 'must be JSON: {"token": "..."}') from None
        token = body.get("token") if isinstance(body, dict) else None
        if not isinstance(token, str) or not token.strip():
            raise InvalidArgument("token", "give the token as a non-empty string")
        identity = authenticate(token.strip())
        reply = _json({"principal": identity.principal, "role": str(identity.role)})
        reply.set_cookie(
            COOKIE,
            sessions.open(token.strip()),
            httponly=True,
            samesite="Strict",
            path="/",
            secure=secure_cookie,
            max_age=int(SESSION_TTL_S),
        )
        return reply

    async def sign_out(request: web.Request) -> web.Response:
        sessions.close(request.cookies.get(COOKIE))
        reply = _json({"signed_out": True})
        reply.del_cookie(COOKIE, path="/")
        return reply

    async def whoami(request: web.Request) -> web.Response:
        identity = who(request)
        return _json({"principal": identity.principal, "role": str(identity.role)})

    async def overview(request: web.Request) -> web.Response:
        return _json({"vips": data.overview()})

    async def vip(request: web.Request) -> web.Response:
        name = request.match_info["vip"].strip().lower()
        if not name or len(name) > MAX_VIP:
            raise InvalidArgument("vip", f"must be 1 to {MAX_VIP} characters")
        detail = data.vip(name)
        if detail is None:
            raise NotFound(f"VIP {name!r} has no registered instances")
        return _json(detail)

    async def proxies(request: web.Request) -> web.Response:
        return _json(data.proxies())

    async def health(request: web.Request) -> web.Response:
        return _json(data.health())

    async def events(request: web.Request) -> web.Response:
        since = _int_query(request, "since", 0, 2**62)
        limit = _int_query(request, "limit", 100, MAX_EVENTS_ASKED)
        return _json(data.events(since, limit))

    async def plots(request: web.Request) -> web.Response:
        return _json(data.plots())

    app = web.Application(client_max_size=MAX_BODY, middlewares=[guard])
    for path in STATIC:
        app.router.add_get(path, page)
    app.router.add_post("/api/session", sign_in)
    app.router.add_delete("/api/session", sign_out)
    app.router.add_get("/api/whoami", whoami)
    app.router.add_get("/api/overview", overview)
    app.router.add_get("/api/vips/{vip}", vip)
    app.router.add_get("/api/proxies", proxies)
    app.router.add_get("/api/health", health)
    app.router.add_get("/api/events", events)
    app.router.add_get("/api/plots", plots)
    return app


async def serve(
    app: web.Application, host: str, port: int, attempts: int = 50, ssl_context: ssl.SSLContext | None = None
) -> web.AppRunner:
    """Listen on host:port (HTTPS with `ssl_context`), waiting a little for a previous incarnation's socket."""
    runner = web.AppRunner(app, access_log=None)  # no access log: a URL may carry a token
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
    raise Unavailable(f"dashboard cannot listen on {host}:{port}: {last}") from last
