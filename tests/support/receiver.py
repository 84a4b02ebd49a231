"""Local HTTP stand-ins for tests: a receiver for the Pushover and Pushsafer APIs and json://
targets, a server of one JSON answer or page, and the parts to make another."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl


@dataclass
class Received:
    """Every request body, decoded (form fields or JSON), with its path."""

    posts: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    failing: bool = False  # answer 503 (the service is down) while set

    def on(self, path: str) -> list[dict[str, Any]]:
        """Bodies posted to ``path``."""
        return [body for p, body in self.posts if p == path]


class Answering(BaseHTTPRequestHandler):
    """A request handler of a stand-in: ``answer`` replies; nothing is logged to the test's
    output."""

    def answer(self, status: int, body: bytes = b"", kind: str = "application/json") -> None:
        """Reply ``status`` with ``body`` of content type ``kind``."""
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_: Any) -> None:
        pass


@contextmanager
def serving(handler: type[BaseHTTPRequestHandler]) -> Iterator[int]:
    """``handler`` answering on a free loopback port, in a thread, for the block; yields the
    port."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server.server_port
    finally:
        server.shutdown()
        server.server_close()


@contextmanager
def receiver() -> Iterator[tuple[Received, int]]:
    """Serve on a free loopback port; yields what arrived and the port."""
    got = Received()

    class Handler(Answering):
        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            if got.failing:
                self.answer(503)
                return
            kind = self.headers.get("Content-Type", "")
            body = json.loads(raw) if "json" in kind else dict(parse_qsl(raw.decode()))
            got.posts.append((self.path.split("?")[0], body))
            self.answer(200, b'{"status":1,"request":"r1"}')

    with serving(Handler) as port:
        yield got, port


@contextmanager
def json_server(payload: Any, html: bool = False) -> Iterator[tuple[int, list[str]]]:
    """Answer every GET with ``payload`` as JSON on a free loopback port; yields the port and
    the paths asked (a stand-in for a web API such as a weather forecast). With ``html`` the
    payload is a page's text, served as HTML (a site of its own)."""
    asked: list[str] = []
    body = payload.encode() if html else json.dumps(payload).encode()

    class Handler(Answering):
        def do_GET(self) -> None:
            asked.append(self.path)
            self.answer(200, body, "text/html" if html else "application/json")

    with serving(Handler) as port:
        yield port, asked
