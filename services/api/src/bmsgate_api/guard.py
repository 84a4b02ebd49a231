"""The HTTP edge, before any route: who the client is, cross-origin writes, body limits.

A pure ASGI middleware, so a refused request is answered before its body is read:

* The client is the socket's peer. Only a peer in ``api.trusted_proxies`` may name another one
  (``X-Forwarded-For``, ``-Proto``, ``-Host``); a forwarded request from anyone else keeps its
  peer but is never "local" (docs/security.md, "Who the client is").
* A state-changing request from a page of another origin is refused (``Origin``, else
  ``Sec-Fetch-Site``), and its body must be JSON (YAML for a restored settings file): a plain
  HTML form on another port of the same host can send neither.
* A body over its route's limit is refused with 413 from its ``Content-Length`` alone; a
  chunked one as soon as it passes the limit. A body not complete within the head timeout, or
  arriving slower than MIN_BODY_RATE on average after BODY_GRACE, is 408: a client cannot hold
  a request open by trickling its body (connections.py also lets a new connection close it).
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import urlsplit

from starlette.datastructures import Headers
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger(__name__)

STATE_CHANGING: Final = frozenset({"POST", "PUT", "PATCH", "DELETE"})
JSON_TYPES: Final = frozenset({"application/json"})
YAML_TYPES: Final = frozenset({"application/yaml", "application/x-yaml", "text/yaml"})
BODY_LIMIT: Final = 64 * 1024  # [B] every JSON body of the API is a few kB at most
FILE_LIMIT: Final = 1024 * 1024  # [B] a settings file (256 kB of YAML, escaped inside JSON)
FILE_ROUTES: Final = {  # route -> the body types it takes
    ("PUT", "/api/settings/file"): JSON_TYPES,
    ("POST", "/api/settings/restore"): YAML_TYPES,
}
MIN_BODY_RATE: Final = 1024.0  # [B/s] on average, once BODY_GRACE has passed
BODY_GRACE: Final = 2.0  # [s] a body's first bytes may take a round trip or a slow start
PEER: Final = "bmsgate.peer"  # scope key: the socket's peer address, before any forwarding
DOUBTED: Final = "bmsgate.doubted"  # scope key: forwarded headers from a peer that is no proxy

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text.strip().strip("[]"))
    except ValueError:
        return None


@dataclass(frozen=True)
class Proxies:
    """The reverse proxies whose forwarded headers are believed (api.trusted_proxies)."""

    networks: tuple[Network, ...] = ()

    @classmethod
    def parse(cls, entries: Iterable[str]) -> Proxies:
        """From addresses or networks such as ``127.0.0.1`` or ``10.0.0.0/8``."""
        return cls(tuple(ipaddress.ip_network(e, strict=False) for e in entries))

    def trusts(self, address: str) -> bool:
        """Whether ``address`` is one of the proxies."""
        found = _address(address)
        return found is not None and any(found in net for net in self.networks)

    def client(self, peer: str, forwarded_for: str) -> str:
        """The client: the first hop from the right of X-Forwarded-For that is no proxy.

        Only when ``peer`` is a proxy; a hop that is not an address ends the walk at the hop
        before it (the proxy that added it vouches only for what it saw).
        """
        if not self.trusts(peer):
            return peer
        client = peer
        for hop in reversed([h.strip() for h in forwarded_for.split(",") if h.strip()]):
            if _address(hop) is None:
                break
            client = str(_address(hop))
            if not self.trusts(client):
                break
        return client


def _netloc(scheme: str, host: str) -> tuple[str, int] | None:
    """(host, port) of ``host[:port]`` with the scheme's default port; None if malformed."""
    try:
        split = urlsplit(f"{scheme}://{host}")
        port = split.port
    except ValueError:
        return None
    if not split.hostname:
        return None
    return split.hostname.lower(), port or (443 if scheme == "https" else 80)


def origin_problem(headers: Headers, scheme: str, allowed: frozenset[str]) -> str | None:
    """Why a state-changing request comes from another site's page, or None if it does not."""
    origin = headers.get("origin")
    if origin is None:
        site = headers.get("sec-fetch-site", "none")
        if site in ("cross-site", "same-site"):
            return f"a page of another site ({site}) may not change anything here"
        return None  # a script, or a browser that sends neither header (none does for POST)
    if origin.rstrip("/") in allowed:
        return None
    split = urlsplit(origin)
    mine = _netloc(split.scheme or scheme, headers.get("host", ""))
    if mine is not None and _netloc(split.scheme, split.netloc) == mine:
        return None
    return f"a page of {origin[:100]} may not change anything here (see api.allowed_origins)"


def type_problem(method: str, path: str, headers: Headers) -> str | None:
    """Why a state-changing request's body has the wrong type, or None."""
    ctype = headers.get("content-type", "").split(";")[0].strip().lower()
    has_body = headers.get("content-length", "0") != "0" or "transfer-encoding" in headers
    if not ctype and not has_body:
        return None
    want = FILE_ROUTES.get((method, path), JSON_TYPES)
    if ctype in want:
        return None
    return f"send the body as {' or '.join(sorted(want))}, not {ctype or 'untyped data'}"


def body_limit(method: str, path: str) -> int:
    """[B] the largest body ``path`` takes."""
    return FILE_LIMIT if (method, path) in FILE_ROUTES else BODY_LIMIT


class Guard:
    """The middleware; ``proxies`` and ``origins`` come from the api settings."""

    def __init__(
        self,
        app: ASGIApp,
        proxies: Proxies,
        origins: Iterable[str] = (),
        body_timeout: float = 10.0,
    ) -> None:
        self.app = app
        self.proxies = proxies
        self.origins = frozenset(o.rstrip("/") for o in origins)
        self.body_timeout = body_timeout  # [s]

    def _locate(self, scope: Scope, headers: Headers) -> None:
        """Set the client, scheme and host the request really has (scope keys PEER, DOUBTED)."""
        peer = scope["client"][0] if scope.get("client") else ""
        scope[PEER] = peer
        forwarded = "x-forwarded-for" in headers or "forwarded" in headers
        trusted = self.proxies.trusts(peer)
        scope[DOUBTED] = forwarded and not trusted
        if not forwarded or not trusted:
            return
        client = self.proxies.client(peer, ",".join(headers.getlist("x-forwarded-for")))
        scope["client"] = (client, 0)
        proto = headers.get("x-forwarded-proto", "").split(",")[0].strip().lower()
        if proto in ("http", "https"):
            scope["scheme"] = proto
        host = headers.get("x-forwarded-host", "").split(",")[0].strip()
        if host:
            raw = [(k, v) for k, v in scope["headers"] if k != b"host"]
            scope["headers"] = [*raw, (b"host", host.encode("latin-1"))]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Locate the client, then refuse or pass the request on with its body read."""
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        self._locate(scope, Headers(scope=scope))
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        method, path = scope["method"], scope["path"]
        limit = body_limit(method, path)
        try:
            length = int(headers.get("content-length", "0"))
        except ValueError:
            length = -1
        if length < 0:
            await _refuse(scope, receive, send, 400, "Content-Length is not a number")
            return
        if length > limit:
            await _refuse(scope, receive, send, 413, f"the body is over {limit} B for {path}")
            return
        if method not in STATE_CHANGING:
            await self.app(scope, receive, send)
            return
        problem = origin_problem(headers, scope["scheme"], self.origins)
        if problem:
            log.warning("refused %s %s from %s: %s", method, path, scope["client"][0], problem)
            await _refuse(scope, receive, send, 403, problem)
            return
        problem = type_problem(method, path, headers)
        if problem:
            await _refuse(scope, receive, send, 415, problem)
            return
        body = await self._body(scope, receive, send, limit)
        if body is not None:
            await self.app(scope, _replay(body, receive), send)

    async def _body(self, scope: Scope, receive: Receive, send: Send, limit: int) -> bytes | None:
        """The whole body (at most ``limit`` bytes, in time and fast enough); None once answered."""
        chunks: list[bytes] = []
        size = 0
        loop = asyncio.get_running_loop()
        started = loop.time()
        while True:
            # the later of the two: behind MIN_BODY_RATE, or the whole body's time is up
            due = min(started + self.body_timeout, started + BODY_GRACE + size / MIN_BODY_RATE)
            try:
                async with asyncio.timeout_at(due):
                    message = await receive()
            except TimeoutError:
                late = loop.time() - started
                detail = f"the body did not arrive in time ({size} B in {late:.0f} s)"
                await _refuse(scope, receive, send, 408, detail)
                return None
            if message["type"] == "http.disconnect":
                return None
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                await _refuse(scope, receive, send, 413, f"the body is over {limit} B")
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    """A receive that gives ``body`` once, then waits on the connection (for a disconnect)."""
    given = False

    async def replay() -> Message:
        nonlocal given
        if not given:
            given = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


async def _refuse(scope: Scope, receive: Receive, send: Send, code: int, detail: str) -> None:
    headers: dict[str, Any] = {"Connection": "close"} if code in (408, 413) else {}
    await JSONResponse({"detail": detail}, status_code=code, headers=headers)(scope, receive, send)
