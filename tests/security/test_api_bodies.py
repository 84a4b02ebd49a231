"""Request bodies: a per-route limit answered before the body is read; YAML bombs bounded."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from pathlib import Path

import httpx

from tests.security.api_proc import start_api
from tests.support.procs import Mosquitto, Proc, rss_kb

BOMB = """a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]
i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]
"""


def raw_request(port: int, head: str, body: bytes = b"", wait: float = 5.0) -> str:
    """Send ``head`` and ``body`` on a plain socket; the answer's status line and body."""
    with socket.create_connection(("127.0.0.1", port), timeout=wait) as sock:
        sock.sendall(head.encode() + b"\r\n" + body)
        answer = b""
        try:
            while chunk := sock.recv(65536):
                answer += chunk
        except (TimeoutError, ConnectionResetError):
            pass
    return answer.decode(errors="replace")


def test_a_huge_login_body_is_refused_before_it_is_read(
    tmp_path: Path, procs: list[Proc], mosquitto: Mosquitto
) -> None:
    api = start_api(tmp_path, procs, mosquitto)
    pid = api.proc.process.pid
    login = "POST /api/auth/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    # the baseline: the same request with a small body, as a process's first request costs
    # ~20 MB of its own (modules loaded on first use), body or not
    small = b'{"password": "x"}'
    warm = raw_request(
        api.port, login + f"Content-Length: {len(small)}\r\nConnection: close\r\n", small
    )
    assert warm.startswith("HTTP/1.1 401"), warm[:200]
    before = rss_kb(pid)
    started = time.monotonic()
    head = login + f"Content-Length: {400 * 1024 * 1024}\r\n"
    answer = raw_request(api.port, head, b'{"password": "' + b"x" * 100_000)
    assert answer.startswith("HTTP/1.1 413"), answer[:200]
    assert "the body is over 65536 B" in answer
    assert time.monotonic() - started < 5
    assert rss_kb(pid) - before < 10_000, (before, rss_kb(pid))  # 400 MB were announced
    # a chunked body is cut at the limit too
    with httpx.Client(base_url=api.base, timeout=10) as http:
        chunks = (b"x" * 65536 for _ in range(200))  # 13 MB, no Content-Length
        got = http.post(
            "/api/auth/login", content=chunks, headers={"Content-Type": "application/json"}
        )
        assert got.status_code == 413
        # a settings file has its own, larger limit: 300 kB of YAML reaches the route
        with api.login() as owner:
            big = "# " + "x" * 300_000 + "\n"
            got = owner.post(
                "/api/settings/restore", content=big, headers={"Content-Type": "application/yaml"}
            )
            assert got.status_code == 413 and "262144" in got.json()["detail"], got.text
            fits = owner.post(
                "/api/settings/restore",
                content="# fine\napi: {}\n",
                headers={"Content-Type": "application/yaml"},
            )
            assert fits.status_code == 200, fits.text
        assert http.get("/healthz").status_code == 200
    # the chunked 13 MB and the settings files: not their size (pages the API touched once)
    assert rss_kb(pid) - before < 50_000, (before, rss_kb(pid))
    assert "Traceback" not in api.proc.log()


def test_a_yaml_alias_bomb_and_deep_nesting_are_one_clear_400(
    tmp_path: Path, procs: list[Proc], mosquitto: Mosquitto
) -> None:
    api = start_api(tmp_path, procs, mosquitto)
    pid = api.proc.process.pid
    before = rss_kb(pid)
    deep = "a: " + "[" * 60_000 + "]" * 60_000 + "\n"
    with api.login() as owner:
        for text, words in ((BOMB, "aliases"), (deep, "nested")):
            for send in (
                lambda t: owner.post(
                    "/api/settings/restore", content=t, headers={"Content-Type": "application/yaml"}
                ),
                lambda t: owner.put("/api/settings/file", json={"yaml": t}),
            ):
                got = send(text)
                assert got.status_code == 400, got.text[:300]
                detail = got.json()["detail"]
                assert words in detail and "\n" not in detail, detail
        deep_json = b'{"password": ' + b"[" * 32_000 + b"]" * 32_000 + b"}"
        got = owner.post(
            "/api/auth/login", content=deep_json, headers={"Content-Type": "application/json"}
        )
        assert got.status_code in (400, 422), got.text[:300]
    assert rss_kb(pid) - before < 50_000, (before, rss_kb(pid))
    assert "Traceback" not in api.proc.log()


async def _trickle(port: int, length: int, step: bytes, every: float) -> tuple[str, float]:
    """A login whose body of ``length`` B comes ``step`` at a time; the answer and when [s]."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    started = time.monotonic()
    head = (
        "POST /api/auth/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Content-Length: {length}\r\n\r\n"
    )
    writer.write(head.encode())

    async def feed() -> None:
        with contextlib.suppress(OSError):
            while True:
                await asyncio.sleep(every)
                writer.write(step)
                await writer.drain()

    feeding = asyncio.create_task(feed())
    try:
        answer = await asyncio.wait_for(reader.read(4096), 30)
    except (OSError, TimeoutError):
        answer = b""
    feeding.cancel()
    writer.close()
    return answer.decode(errors="replace"), time.monotonic() - started


async def _health(port: int) -> tuple[str, float]:
    """GET /healthz on a new connection: the status line and how long it took [s]."""
    started = time.monotonic()
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 5)
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        answer = await asyncio.wait_for(reader.read(4096), 5)
        writer.close()
    except (OSError, TimeoutError) as err:
        return f"failed: {err!r}", time.monotonic() - started
    return answer.decode(errors="replace").split("\r\n")[0], time.monotonic() - started


def test_a_trickled_body_is_cut_by_its_rate_and_time_and_cannot_crowd_out_requests(
    tmp_path: Path, procs: list[Proc], mosquitto: Mosquitto
) -> None:
    api = start_api(tmp_path, procs, mosquitto, api={"max_connections": 16})

    async def attack() -> None:
        # 5 B/s: behind the 1 KiB/s floor once the 2 s grace is over, long before the 10 s
        answer, took = await _trickle(api.port, 1000, b" ", 0.2)
        assert answer.startswith("HTTP/1.1 408"), answer[:200]
        assert "the body did not arrive in time" in answer and 1.5 < took < 6, (answer, took)
        # 2 KiB/s keeps above the floor, but 60 kB would take 30 s: cut at the 10 s limit
        answer, took = await _trickle(api.port, 60_000, b" " * 2048, 1.0)
        assert answer.startswith("HTTP/1.1 408") and 9 < took < 14, (answer[:200], took)
        # 40 connections trickling bodies fast enough for the floor, against a limit of 16:
        # each new connection closes the oldest of them, and /healthz is answered
        crowd = [
            asyncio.create_task(_trickle(api.port, 60_000, b" " * 1500, 1.0)) for _ in range(40)
        ]
        await asyncio.sleep(2)
        for _ in range(5):
            status, took = await _health(api.port)
            assert status == "HTTP/1.1 200 OK" and took < 2, (status, took)
            await asyncio.sleep(0.3)
        answers = await asyncio.gather(*crowd)
        closed = [a for a, _ in answers if not a]  # closed by newer connections, no answer
        assert len(closed) >= 24, [a[:40] for a, _ in answers]

    asyncio.run(attack())
    log = api.proc.log()
    assert "open HTTP connections" in log and "Traceback" not in log
