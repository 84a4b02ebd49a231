"""Container healthcheck: this service's retained backbone status is `online` and fresh.

Standard library only, so it runs in every image: a minimal MQTT 3.1.1 client (CONNECT with the
service's own credentials, SUBSCRIBE to ``<base>/service/<name>/status``, read the retained
PUBLISH). Exit 0 when healthy, 1 otherwise. Usage: ``python /app/healthcheck.py SERVICE-NAME
[--http URL]``: with ``--http`` the URL (the API's /healthz) must also answer, saying it is
connected to the broker. The password comes from ``MQTT_PASSWORD_FILE`` when that is set (a
reader's, deploy/entrypoint.sh).
"""

from __future__ import annotations

import json
import os
import socket
import struct
import sys
import urllib.request
from datetime import UTC, datetime

TIMEOUT = 5.0  # [s] for the whole check


def _field(text: str) -> bytes:
    data = text.encode()
    return struct.pack("!H", len(data)) + data


def _packet(kind: int, body: bytes) -> bytes:
    size, length = len(body), b""
    while True:  # the remaining length, 7 bits per byte
        byte, size = size % 128, size // 128
        length += bytes([byte | (0x80 if size else 0)])
        if not size:
            return bytes([kind]) + length + body


def _read(sock: socket.socket) -> tuple[int, bytes]:
    head = sock.recv(1)
    if not head:
        raise ConnectionError("broker closed the connection")
    size, shift = 0, 0
    while True:
        byte = sock.recv(1)[0]
        size += (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            break
    body = b""
    while len(body) < size:
        chunk = sock.recv(size - len(body))
        if not chunk:
            raise ConnectionError("broker closed the connection")
        body += chunk
    return head[0], body


def status(host: str, port: int, user: str, password: str, topic: str) -> dict[str, object]:
    """The retained status payload on ``topic``."""
    with socket.create_connection((host, port), timeout=TIMEOUT) as sock:
        flags = 0x02 | (0xC0 if user else 0)  # clean session, username + password
        body = _field("MQTT") + bytes([4, flags]) + struct.pack("!H", 10)
        body += _field(f"health-{os.getpid()}")
        if user:
            body += _field(user) + _field(password)
        sock.sendall(_packet(0x10, body))
        kind, ack = _read(sock)
        if kind >> 4 != 2 or ack[1] != 0:
            raise ConnectionError(f"connection refused (code {ack[1]})")
        sock.sendall(_packet(0x82, struct.pack("!H", 1) + _field(topic) + b"\x00"))
        while True:
            kind, body = _read(sock)
            if kind >> 4 == 9 and body[2] == 0x80:
                raise PermissionError(f"not allowed to read {topic}")
            if kind >> 4 == 3:
                length = struct.unpack("!H", body[:2])[0]
                return dict(json.loads(body[2 + length :]))


def web_connected(url: str) -> None:
    """The API's /healthz answers and says its backbone connection is up."""
    with urllib.request.urlopen(url, timeout=TIMEOUT) as answer:
        if json.loads(answer.read()).get("backbone") is not True:
            raise ConnectionError(f"{url}: not connected to the broker")


def main(argv: list[str]) -> int:
    """Check the service named in ``argv``; the connection comes from the BMSGATE_MQTT__* env."""
    name = argv[0]
    env = os.environ
    base = env.get("BMSGATE_MQTT__BASE_TOPIC", "bmsgate")
    heartbeat = float(env.get("BMSGATE_MQTT__HEARTBEAT", "30"))
    try:
        password = env.get("BMSGATE_MQTT__PASSWORD", "")
        if env.get("MQTT_PASSWORD_FILE"):
            with open(env["MQTT_PASSWORD_FILE"]) as file:
                password = file.read().strip()
        if argv[1:2] == ["--http"]:
            web_connected(argv[2])
        got = status(
            env.get("BMSGATE_MQTT__HOST", "127.0.0.1"),
            int(env.get("BMSGATE_MQTT__PORT", "1883")),
            env.get("BMSGATE_MQTT__USERNAME", ""),
            password,
            f"{base}/service/{name}/status",
        )
    except (OSError, ValueError, PermissionError) as err:
        print(f"unhealthy: {err}", file=sys.stderr)  # noqa: T201
        return 1
    ts = got.get("ts")
    age = (datetime.now(UTC) - datetime.fromisoformat(str(ts))).total_seconds() if ts else None
    if got.get("state") != "online" or age is None or age > 3 * heartbeat:
        print(f"unhealthy: {got.get('state')}, last heartbeat {age} s ago", file=sys.stderr)  # noqa: T201
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
