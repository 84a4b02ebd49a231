"""A local HTTP receiver standing in for the Pushover and Pushsafer APIs and for json:// targets."""

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


@contextmanager
def receiver() -> Iterator[tuple[Received, int]]:
    """Serve on a free loopback port; yields what arrived and the port."""
    got = Received()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            if got.failing:
                self.send_response(503)
                self.end_headers()
                return
            kind = self.headers.get("Content-Type", "")
            body = json.loads(raw) if "json" in kind else dict(parse_qsl(raw.decode()))
            got.posts.append((self.path.split("?")[0], body))
            answer = b'{"status":1,"request":"r1"}'
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield got, server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


@contextmanager
def json_server(payload: Any, html: bool = False) -> Iterator[tuple[int, list[str]]]:
    """Answer every GET with ``payload`` as JSON on a free loopback port; yields the port and
    the paths asked (a stand-in for a web API such as a weather forecast). With ``html`` the
    payload is a page's text, served as HTML (a site of its own)."""
    asked: list[str] = []
    body = payload.encode() if html else json.dumps(payload).encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            asked.append(self.path)
            self.send_response(200)
            self.send_header("Content-Type", "text/html" if html else "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server.server_port, asked
    finally:
        server.shutdown()
        server.server_close()
