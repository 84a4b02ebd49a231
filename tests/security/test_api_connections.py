"""Half-sent requests: 1,100 connections that never finish their head, beside a real request."""

from __future__ import annotations

import resource
import shutil
import socket
import time
from pathlib import Path

import httpx

from tests.security.api_proc import start_api
from tests.support.procs import Mosquitto, Proc, wait_until

HALF = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: "  # never ends


def open_half(port: int, count: int) -> list[socket.socket]:
    """``count`` connections that each send part of a request head and stop."""
    out = []
    for _ in range(count):
        sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        sock.sendall(HALF)
        out.append(sock)
    return out


def read_response(sock: socket.socket) -> bytes:
    """One whole HTTP response: the head, then as many body bytes as Content-Length says.

    The server may send head and body in separate writes; a single ``recv`` can end between them.
    """
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        assert chunk, data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    while len(body) < length:
        chunk = sock.recv(4096)
        assert chunk, data
        body += chunk
    return head + b"\r\n\r\n" + body


def test_healthz_answers_beside_1100_half_open_connections(
    tmp_path: Path, procs: list[Proc], mosquitto: Mosquitto
) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 4096)), hard))
    prlimit = shutil.which("prlimit")
    assert prlimit, "prlimit (util-linux) is needed"
    api = start_api(  # 1,024 descriptors, as a default systemd or shell limit gives
        tmp_path,
        procs,
        mosquitto,
        wrap=[prlimit, "--nofile=1024:1024"],
        api={"header_timeout": 60},
    )
    held: list[socket.socket] = []
    try:
        held = open_half(api.port, 1100)
        for _ in range(5):
            started = time.monotonic()
            got = httpx.get(f"{api.base}/healthz", timeout=5)
            assert got.status_code == 200 and time.monotonic() - started < 2
        open_files = len(list(Path(f"/proc/{api.proc.process.pid}/fd").iterdir()))
        assert open_files < 400, open_files
    finally:
        for sock in held:
            sock.close()
    wait_until(lambda: "HTTP connections back to" in api.proc.log(), timeout=20)
    log = api.proc.log()
    episode = [x for x in log.splitlines() if "HTTP connections" in x]
    assert len(episode) == 2, episode
    assert "Traceback" not in log and len(log) < 5000, log[-2000:]


def test_a_request_head_that_does_not_arrive_in_time_is_closed(
    tmp_path: Path, procs: list[Proc], mosquitto: Mosquitto
) -> None:
    api = start_api(tmp_path, procs, mosquitto, api={"header_timeout": 1})
    (slow,) = open_half(api.port, 1)
    with slow:
        started = time.monotonic()
        slow.settimeout(10)
        assert slow.recv(100) == b""  # closed by the API
        assert 0.8 < time.monotonic() - started < 5
    # a kept-alive connection that starts a second head and stops is closed too
    with socket.create_connection(("127.0.0.1", api.port), timeout=10) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        answer = read_response(sock)
        assert answer.startswith(b"HTTP/1.1 200"), answer
        sock.sendall(HALF)
        started = time.monotonic()
        assert sock.recv(100) == b""
        assert time.monotonic() - started < 5
