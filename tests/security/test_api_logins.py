"""Password guessing against the real API: concurrent, from many addresses, and a clock set back."""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
from email.utils import parsedate_to_datetime
from pathlib import Path

import httpx

from tests.security.api_proc import Api, start_api
from tests.support.needs import require
from tests.support.procs import Mosquitto, Proc, wait_until

FAKETIME = Path("/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1")


async def guesses(api: Api, count: int, forwarded: list[str] | None = None) -> list[int]:
    """``count`` wrong passwords sent at once; the status codes (one address per request)."""
    async with httpx.AsyncClient(base_url=api.base, timeout=30) as http:

        async def one(i: int) -> int:
            headers = {"X-Forwarded-For": forwarded[i]} if forwarded else {}
            got = await http.post(
                "/api/auth/login", json={"password": f"guess {i}"}, headers=headers
            )
            return got.status_code

        return list(await asyncio.gather(*(one(i) for i in range(count))))


async def test_concurrent_guesses_are_counted_before_they_are_checked(
    tmp_path: Path, procs: list[Proc], mosquitto: Mosquitto
) -> None:
    api = start_api(tmp_path, procs, mosquitto)  # login_attempts: 5 by default
    codes = await guesses(api, 60)
    assert codes.count(401) == 5 and codes.count(429) == 55, sorted(codes)
    # made-up forwarded addresses from a peer that is no trusted proxy change nothing
    fake = [f"10.9.{i}.1" for i in range(20)]
    assert set(await guesses(api, 20, fake)) == {429}
    failed = [x for x in api.proc.log().splitlines() if "failed login from 127.0.0.1" in x]
    assert len(failed) == 5 and failed[-1].endswith("locked out"), failed
    assert "10.9." not in api.proc.log()


async def test_many_addresses_meet_a_ceiling_and_the_file_is_not_rewritten_per_guess(
    tmp_path: Path, procs: list[Proc], mosquitto: Mosquitto
) -> None:
    api = start_api(
        tmp_path,
        procs,
        mosquitto,
        api={"trusted_proxies": ["127.0.0.1"], "login_ceiling": 20},
    )
    kept = tmp_path / "data" / "api" / "login_failures.json"
    inodes: set[int] = set()
    done = threading.Event()

    def watch() -> None:  # every write replaces the file: a new inode each time
        while not done.is_set():
            with contextlib.suppress(FileNotFoundError):
                inodes.add(os.stat(kept).st_ino)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        addresses = [f"192.0.2.{1 + i // 5}" for i in range(135)]  # 27 addresses x 5
        codes = await guesses(api, 135, addresses)
    finally:
        done.set()
        watcher.join()
    assert codes.count(401) == 20 and codes.count(429) == 115, sorted(codes)
    # a lockout (at most 20 / 5) and the ceiling are written at once, other failures at most
    # every 10 s; one write per guess would be 20 new files
    assert 1 <= len(inodes) <= 20 // 5 + 2, len(inodes)
    failed = [x for x in api.proc.log().splitlines() if "failed login from 192.0.2." in x]
    assert len(failed) == 20


def test_a_wall_clock_set_back_neither_ends_sessions_nor_stretches_a_lockout(
    tmp_path: Path, procs: list[Proc], mosquitto: Mosquitto
) -> None:
    """The API's own wall clock is moved by libfaketime (the machine's clock is not touched)."""
    require(FAKETIME.exists(), "libfaketime is not installed (apt-get install faketime)")
    offset = tmp_path / "faketime"
    offset.write_text("+0\n")
    env = {
        "LD_PRELOAD": str(FAKETIME),
        "FAKETIME_TIMESTAMP_FILE": str(offset),
        "FAKETIME_NO_CACHE": "1",
        "FAKETIME_DONT_FAKE_MONOTONIC": "1",
    }
    api = start_api(tmp_path, procs, mosquitto, env=env)
    with api.login() as owner, httpx.Client(base_url=api.base, timeout=10) as guesser:
        for _ in range(5):
            assert guesser.post("/api/auth/login", json={"password": "wrong!!!"}).status_code == 401
        locked = guesser.post("/api/auth/login", json={"password": "wrong!!!"})
        assert locked.status_code == 429 and 295 <= int(locked.headers["Retry-After"]) <= 300
        before = parsedate_to_datetime(owner.get("/healthz").headers["date"])
        offset.write_text("-3595\n")  # the wall clock an hour back, as a bad NTP or RTC would
        wait_until(  # the API's own clock really moved
            lambda: (
                (
                    parsedate_to_datetime(owner.get("/healthz").headers["date"]) - before
                ).total_seconds()
                < -3500
            )
        )
        status = owner.get("/api/auth/status").json()
        assert status["logged_in"] is True, status
        assert owner.get("/api/settings").status_code == 200
        still = guesser.post("/api/auth/login", json={"password": "wrong!!!"})
        assert still.status_code == 429 and int(still.headers["Retry-After"]) <= 300, still.headers
    assert "Traceback" not in api.proc.log()
