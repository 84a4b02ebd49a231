from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from services.api.tests.inprocess import app_client as in_process

from bmsgate_api.auth import (
    RateLimiter,
    Sessions,
    configured_hash,
    hash_password,
    verify_password,
)
from bmsgate_api.store import PackStore
from bmsgate_common.models import BmsSettings, SettingValue, utcnow
from bmsgate_common.settings import ConfigError, Settings, load_settings
from tests.support.store import with_garage


def test_scrypt_hash_roundtrip_and_no_plain_text() -> None:
    encoded = hash_password("correct horse")
    assert encoded.startswith("scrypt$16384$8$1$") and "correct" not in encoded
    assert verify_password("correct horse", encoded)
    assert not verify_password("correct hors", encoded)
    assert not verify_password("x", "scrypt$1$2$3$bad")
    assert hash_password("a" * 8) != hash_password("a" * 8)  # salted


def test_sessions_expire_are_signed_and_end_with_the_password() -> None:
    s = Sessions(key=b"k" * 32, lifetime=3600)
    token = s.issue("h1", now=1000)
    assert s.valid(token, "h1", now=1100)
    assert not s.valid(token, "h1", now=1000 + 3601)  # expired
    assert not s.valid(token, "h2", now=1100)  # password changed
    assert not s.valid(token[:-2] + "xx", "h1", now=1100)  # tampered
    assert not Sessions(key=b"o" * 32, lifetime=3600).valid(token, "h1", now=1100)
    s.revoke(token)
    assert not s.valid(token, "h1", now=1100)
    assert not s.valid(None, "h1") and not s.valid("a.b", "h1")


def test_rate_limiter_window() -> None:
    rl = RateLimiter(attempts=3, window=60)
    for t in (0, 1, 2):
        assert rl.retry_after("c", now=t) == 0
        rl.failed("c", now=t)
    assert rl.retry_after("c", now=3) == pytest.approx(57)
    assert rl.retry_after("other", now=3) == 0
    assert rl.retry_after("c", now=61) == 0


def test_configured_hash_from_file_or_setting(tmp_path: Path) -> None:
    plain = tmp_path / "pw"
    plain.write_text("from-a-secret\n")
    assert verify_password("from-a-secret", configured_hash(None, plain) or "")
    hashed = tmp_path / "hash"
    encoded = hash_password("hashed-secret")
    hashed.write_text(encoded)
    assert configured_hash(None, hashed) == encoded
    assert configured_hash("scrypt$1$1$1$a$b", plain) == "scrypt$1$1$1$a$b"


def test_a_plain_password_in_the_config_is_refused(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("api:\n  password_hash: hunter2\n")
    with pytest.raises(ConfigError, match="password_hash"):
        load_settings(cfg)


def app_client(
    settings: Settings, tmp_path: Path | None = None, store: PackStore | None = None
) -> httpx.AsyncClient:
    store = with_garage(store, alarms=["cell_overvoltage"])
    return in_process(store, settings, data_dir=tmp_path)


async def test_first_visit_sets_the_password_then_login_logout(tmp_path: Path) -> None:
    settings = Settings.model_validate({"api": {"public_read": "never", "login_attempts": 3}})
    async with app_client(settings, tmp_path) as http:
        status = (await http.get("/api/auth/status")).json()
        assert status["setup_required"] and not status["logged_in"] and not status["can_read"]
        assert (await http.get("/api/packs")).status_code == 401
        assert (await http.get("/api/overview")).status_code == 401
        got = await http.post("/api/auth/setup", json={"password": "short"})
        assert got.status_code == 400 and "8 characters" in got.json()["detail"]
        assert (
            await http.post("/api/auth/setup", json={"password": "long enough"})
        ).status_code == 204
        stored = (tmp_path / "api" / "password").read_text()
        assert stored.startswith("scrypt$") and "long enough" not in stored
        assert (tmp_path / "api" / "password").stat().st_mode & 0o777 == 0o600
        assert (await http.get("/api/packs")).status_code == 200
        overview = (await http.get("/api/overview")).json()[0]
        assert overview["activity"] == "discharging" and overview["cell_delta"] == 0.01
        assert overview["alarms"][0]["text"] == "cell 2 over-voltage, 3.36 V"
        # a second setup is refused: the first one wins
        assert (
            await http.post("/api/auth/setup", json={"password": "another one"})
        ).status_code == 409
        session = http.cookies.get("bmsgate_session")
        assert (await http.post("/api/auth/logout")).status_code == 204
        http.cookies.clear()
        assert (await http.get("/api/packs")).status_code == 401
        for _ in range(3):
            assert (
                await http.post("/api/auth/login", json={"password": "wrong pass"})
            ).status_code == 401
        limited = await http.post("/api/auth/login", json={"password": "long enough"})
        assert limited.status_code == 429 and "Retry-After" in limited.headers
    # a restart keeps the password (stored hash), the sessions key, the logout and the failures
    async with app_client(settings, tmp_path) as http:
        assert not (await http.get("/api/auth/status")).json()["setup_required"]
        http.cookies.set("bmsgate_session", session or "")
        assert (await http.get("/api/packs")).status_code == 401  # logged out stays logged out
        http.cookies.clear()
        got = await http.post("/api/auth/login", json={"password": "long enough"})
        assert got.status_code == 429  # the failures before the restart still count
    (tmp_path / "api" / "login_failures.json").unlink()  # as if the window had passed
    async with app_client(settings, tmp_path) as http:
        got = await http.post("/api/auth/login", json={"password": "long enough"})
        assert got.status_code == 204
        cookie = got.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=strict" in cookie
        assert (await http.get("/api/packs")).status_code == 200
        changed = await http.post(
            "/api/auth/password",
            json={"old_password": "long enough", "new_password": "newer secret"},
        )
        assert changed.status_code == 204


async def test_state_changes_need_a_login_and_enabled_control() -> None:
    encoded = hash_password("the password")
    settings = Settings.model_validate({"api": {"password_hash": encoded}})
    async with app_client(settings) as http:
        # reading from this machine is public by default (public_read: local); changing never is
        assert (await http.get("/api/packs")).status_code == 200
        cmd = {"action": "set_charge_mos", "value": False}
        assert (await http.post("/api/packs/garage/commands", json=cmd)).status_code == 401
        assert (await http.delete("/api/packs/garage/days/2024-01-01")).status_code == 401
        assert (await http.post("/api/auth/setup", json={"password": "x" * 9})).status_code == 409
        assert (
            await http.post("/api/auth/login", json={"password": "the password"})
        ).status_code == 204
        got = await http.post("/api/packs/garage/commands", json=cmd)
        assert got.status_code == 403 and "control is disabled" in got.json()["detail"]
        # a password from the configuration cannot be changed here
        got = await http.post(
            "/api/auth/password", json={"old_password": "the password", "new_password": "y" * 9}
        )
        assert got.status_code == 409


async def test_bad_requests_are_clear_4xx(tmp_path: Path) -> None:
    settings = Settings.model_validate({"control": {"enabled": True}})
    async with app_client(settings, tmp_path) as http:
        await http.post("/api/auth/setup", json={"password": "long enough"})
        got = await http.post(
            "/api/packs/garage/commands", json={"action": "set_soc", "value": 150}
        )
        assert got.status_code == 400 and "0..100" in got.json()["detail"]
        got = await http.post("/api/packs/garage/commands", json={"action": "explode"})
        # in words, named by the field: what the pages show
        assert got.status_code == 422 and got.json()["detail"].startswith("Action: must be one of ")
        got = await http.get("/api/packs/garage/history", params={"fields": "volts"})
        assert got.status_code == 422 and got.json()["detail"].startswith(
            "Fields #1: must be one of"
        )
        # path traversal in a pack id or a day never reaches the file system
        for url in (
            "/api/packs/..%2F..%2Fetc/csv/2024-01-01",
            "/api/packs/garage/csv/..%2Fpasswd",
            "/api/packs/Garage/csv/2024-01-01",
            "/api/packs/garage/zip/2024-13",
        ):
            got = await http.get(url)
            assert got.status_code in (404, 422), url
            assert "Traceback" not in got.text
        # the history service answers for the archive; with no backbone there is nobody to ask
        got = await http.get("/api/packs/garage/csv/2024-01-01")
        assert got.status_code == 503 and "backbone" in got.json()["detail"]


async def test_commands_and_setting_writes_take_one_road(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Control, bank, the route's own check, then the audit line: the same for both kinds."""
    bus = {
        "port": "/dev/null",
        "protocol": "jk_pb",
        "packs": [{"id": "garage", "address": 1}, {"id": "shed", "address": 2}],
    }
    settings = Settings.model_validate(
        {
            "buses": [bus],
            "control": {"enabled": True},
            "banks": [{"id": "house", "packs": ["garage", "shed"]}],
        }
    )
    store = PackStore()
    async with app_client(settings, tmp_path, store) as http:
        await http.post("/api/auth/setup", json={"password": "long enough"})
        store.settings["garage"] = BmsSettings(
            pack="garage",
            protocol="jk_pb",
            ts=utcnow(),
            settings=[
                SettingValue(
                    key="balance_start_voltage",
                    label="Balance start",
                    unit="V",
                    value=3.4,
                    writable=True,
                    min=3.0,
                    max=3.6,
                ),
                SettingValue(key="cell_count", label="Cells", unit="", value=16, writable=False),
            ],
        )
        url = "/api/packs/{}/settings/{}"
        got = await http.put(url.format("house", "x"), json={"value": 1})
        assert got.status_code == 400 and "is a bank: settings writes go to" in got.text
        got = await http.post("/api/packs/house/commands", json={"action": "reset"})
        assert got.status_code == 400 and "is a bank: commands go to" in got.text
        got = await http.put(url.format("garage", "cell_count"), json={"value": 8})
        assert got.status_code == 400 and "read-only" in got.text
        got = await http.put(url.format("garage", "balance_start_voltage"), json={"value": 3.9})
        assert got.status_code == 400 and "3..3.6 V, not 3.9" in got.text
        assert "asked by" not in caplog.text  # nothing refused before sending is logged as sent
        with caplog.at_level("INFO"):
            got = await http.put(url.format("garage", "balance_start_voltage"), json={"value": 3.4})
            assert got.status_code == 503  # no backbone here: checked and logged, then not sent
            got = await http.post(
                "/api/packs/garage/commands", json={"action": "set_charge_mos", "value": False}
            )
            assert got.status_code == 503
        assert "setting balance_start_voltage = 3.4 on garage, asked by" in caplog.text
        assert "command set_charge_mos False to garage, asked by" in caplog.text
