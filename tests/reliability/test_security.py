"""Security checks of issue 13: credentials, authentication, secrets in logs, paths, login rate.

MQTT commands acting only with control enabled are covered where the handlers live (see
docs/reliability.md); they are not repeated here.
"""

from __future__ import annotations

import re
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from bmsgate.broker import free_port
from bmsgate_api.app import create_app
from bmsgate_api.auth import hash_password
from bmsgate_common.settings import Settings
from tests.reliability.counts import COUNTS
from tests.support.procs import (
    Mosquitto,
    Proc,
    start_service,
    wait_for_api,
    wait_until,
    write_config,
)
from tests.support.store import with_garage

ROOT = Path(__file__).parents[2]
SECRET_KEY = re.compile(
    r"""(?ix)(?P<key>[A-Za-z0-9_.-]*(password|passwd|token|secret|api_?key)[A-Za-z0-9_]*)["']?
    \s*(?P<sep>[:=])\s*(?P<value><[^>]*>|[^\s#]*)"""
)
PLACEHOLDER = re.compile(
    r"""(?x)^(
      |["']{2}                     # empty
      |\$\{[A-Z0-9_]+:\?[^}]*\}?   # ${VAR:?message}: compose refuses to start without it
      |\$__env\{[A-Z0-9_]+\}       # Grafana's env lookup
      |\$\{?[A-Z0-9_]+\}?          # a shell variable
      |\.\.\.|<[^>]*>|change-?me|CHANGE[_-]?ME|xxx+|\*+
      |["']?[\w$-]*\.\.\.          # elided, e.g. 'scrypt$...'
      |/\S*                        # a path: a compose volume's mount point, a file
      |null|~|None|true|false|[\[{(]  # not a literal secret (a flag, a structure)
    )["',;]*$"""
)
EXAMPLE_SUFFIXES = (
    ".yml",
    ".yaml",
    ".env",
    ".service",
    ".conf",
    ".md",
    ".toml",
    ".json",
    ".example",
)


def example_files() -> list[Path]:
    listed = subprocess.run(
        ["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    out = []
    for name in listed:
        if "/tests/" in f"/{name}" or name == "uv.lock" or "node_modules" in name:
            continue  # tests use throwaway passwords on purpose
        if name.endswith(EXAMPLE_SUFFIXES) or Path(name).name in (
            "Dockerfile",
            "docker-compose.yml",
        ):
            out.append(ROOT / name)
    return out


def credentials(path: Path) -> list[str]:
    """Lines of ``path`` that set a password, token or secret to something not a placeholder.

    Markdown counts only inside fenced blocks; in comments and Markdown only ``NAME=value``
    counts (``password: set at the first visit`` is prose).
    """
    found = []
    fenced = path.suffix != ".md"
    for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
        if path.suffix == ".md" and line.lstrip().startswith("```"):
            fenced = not fenced
            continue
        if not fenced and "=" not in line:
            continue
        prose = (path.suffix == ".md" and not fenced) or line.lstrip().startswith("#")
        for match in SECRET_KEY.finditer(line):
            if prose and match["sep"] != "=":
                continue
            value = match["value"].rstrip("`.,;):")
            if match["key"].lower().endswith("_file") or PLACEHOLDER.match(value):
                continue
            found.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    return found


def test_no_default_credentials_in_configs_compose_systemd_or_docs() -> None:
    files = example_files()
    found = [hit for path in files for hit in credentials(path)]
    COUNTS["security: files scanned for default credentials"] += len(files)
    assert not found, "\n".join(found)


def test_the_credential_scan_finds_a_literal(tmp_path: Path) -> None:
    sample = tmp_path / "x.yaml"
    sample.write_text("mqtt:\n  password: hunter2\n  token: ${T:?set it}\n")
    lines = [hit.split(": ", 1)[1] for hit in credentials_in(sample)]
    assert lines == ["password: hunter2"]
    elided = tmp_path / "x.env"
    elided.write_text("API_PASSWORD_HASH='scrypt$...'\nsecret=/run/secrets/x\nsecret=s3cr3t\n")
    assert [hit.split(": ", 1)[1] for hit in credentials_in(elided)] == ["secret=s3cr3t"]


def credentials_in(path: Path) -> list[str]:
    """credentials() for a file outside the repository."""
    found = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        for match in SECRET_KEY.finditer(line):
            if not PLACEHOLDER.match(match["value"].rstrip("`.,;):")):
                found.append(f"{number}: {line.strip()}")
    return found


# --- the API: every state-changing route needs a session ------------------------------------

OPEN_ROUTES = {  # state-changing routes that must work without a session, and why
    ("POST", "/api/auth/login"): "logging in",
    ("POST", "/api/auth/logout"): "ends the caller's own session only",
    ("POST", "/api/auth/setup"): "the first password only; 409 once one exists (checked)",
}
STATE_CHANGING = {"POST", "PUT", "PATCH", "DELETE"}


def api(tmp_path: Path, **api_settings: Any) -> httpx.AsyncClient:
    settings = Settings.model_validate(
        {"data_dir": str(tmp_path), "api": {"public_read": "never", **api_settings}}
    )
    store = with_garage()
    app = create_app(store, settings=settings)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    client = httpx.AsyncClient(transport=transport, base_url="http://t")
    client.app = app  # type: ignore[attr-defined]
    return client


def concrete(path: str) -> str:
    values = {"pack": "garage", "day": "2026-01-02", "month": "2026-01"}
    return re.sub(r"\{(\w+)\}", lambda m: values.get(m[1], "x"), path)


async def test_every_state_changing_route_needs_a_session(tmp_path: Path) -> None:
    async with api(tmp_path) as http:
        setup = await http.post("/api/auth/setup", json={"password": "the password"})
        assert setup.status_code == 204
        http.cookies.clear()  # a stranger from here on
        # the OpenAPI document lists every route (FastAPI 0.165 nests included routers)
        paths = http.app.openapi()["paths"]  # type: ignore[attr-defined]
        routes = [
            (method.upper(), path)
            for path, operations in paths.items()
            for method in operations
            if method.upper() in STATE_CHANGING
        ]
        assert len(routes) >= 5, routes
        # the tunnel and raw-frame injection are among them (a closed tunnel has no listener)
        injection = [r for r in routes if "/tunnel" in r[1] or "/raw" in r[1]]
        assert len(injection) >= 2, routes
        checked = 0
        for method, path in routes:
            if (method, path) in OPEN_ROUTES:
                continue
            if (method, path) == ("POST", "/api/settings/restore"):  # the route takes YAML
                got = await http.post(path, content="{}", headers={"Content-Type": "text/yaml"})
            else:
                got = await http.request(method, concrete(path), json={})
            assert got.status_code in (401, 403), (method, path, got.status_code, got.text)
            checked += 1
        # setup once a password exists: refused, so it cannot take over the account
        again = await http.post("/api/auth/setup", json={"password": "mine now!!"})
        assert again.status_code == 409
    COUNTS["security: state-changing API routes refused without a session"] += checked
    COUNTS["security: of them tunnel and raw-frame routes"] += len(injection)
    COUNTS["security: state-changing API routes open by design (login, logout, first setup)"] += (
        len([r for r in routes if r in OPEN_ROUTES])
    )


async def test_login_attempts_are_rate_limited(tmp_path: Path) -> None:
    async with api(tmp_path, login_attempts=3, login_window=60) as http:
        assert (
            await http.post("/api/auth/setup", json={"password": "the password"})
        ).status_code == 204
        http.cookies.clear()
        codes = [
            (await http.post("/api/auth/login", json={"password": f"guess {i}!!"})).status_code
            for i in range(6)
        ]
        assert codes == [401, 401, 401, 429, 429, 429], codes
        right = await http.post("/api/auth/login", json={"password": "the password"})
        assert right.status_code == 429 and int(right.headers["Retry-After"]) > 0
    COUNTS["security: login attempts answered 429"] += 4


TRAVERSALS = [
    "/api/packs/..%2F..%2F..%2Fetc%2Fpasswd/csv/2026-01-02",
    "/api/packs/garage/csv/..%2F..%2F..%2Fetc%2Fpasswd",
    "/api/packs/garage/csv/2026-01-02%2F..%2F..%2Fpasswd",
    "/api/packs/..%5C..%5Cwindows/csv/2026-01-02",
    "/api/packs/garage/zip/..%2F2026-01",
    "/api/packs/%2e%2e/days/2026-01",
    "/api/packs/garage/../../../etc/passwd/csv/2026-01-02",
    "/api/packs/garage/csv/....%2F%2F....%2F%2Fetc%2Fpasswd",
    "/api/export/..%2F..%2Fetc%2Fpasswd",
    "/api/packs/garage%00/csv/2026-01-02",
]


async def test_path_traversal_on_the_csv_and_file_endpoints_is_refused(tmp_path: Path) -> None:
    (tmp_path / "history").mkdir()
    outside = tmp_path / "outside.csv"
    outside.write_text("SECRET-ROW\n")
    async with api(tmp_path) as http:
        assert (
            await http.post("/api/auth/setup", json={"password": "the password"})
        ).status_code == 204
        for path in [*TRAVERSALS, "/api/packs/..%2Foutside/csv/2026-01-02"]:
            got = await http.get(path)
            assert got.status_code in (400, 404, 422), (path, got.status_code, got.text[:200])
            assert "root:" not in got.text and "SECRET-ROW" not in got.text
    COUNTS["security: path traversal requests refused"] += len(TRAVERSALS) + 1


# --- secrets never in a service's log -------------------------------------------------------

MQTT_PASSWORD = "mqtt-Secret-7f3a9c"
TARGET_PASSWORD = "target-Secret-41bd2e"
INFLUX_TOKEN = "influx-Token-93c0aa"
INFLUX_URL_PASSWORD = "influx-Url-Secret-5d21"
NOTIFY_PASSWORD = "notify-Secret-b7e410"
UI_PASSWORD = "ui-password-for-the-test"
SECRETS = (MQTT_PASSWORD, TARGET_PASSWORD, INFLUX_TOKEN, INFLUX_URL_PASSWORD, NOTIFY_PASSWORD)
EVERY_SERVICE = ("reader", "api", "publisher", "modbus", "history", "notifier", "tunnel")


@pytest.mark.integration
def test_secrets_in_the_config_never_reach_the_logs_or_the_ui(
    tmp_path: Path, mosquitto: Mosquitto, procs: list[Proc]
) -> None:
    """Every service at DEBUG with every kind of secret in its config; then the UI's views."""
    http, dead = free_port(), free_port()  # nothing listens on ``dead``: sends there fail
    config = write_config(
        tmp_path,
        {
            "log_level": "DEBUG",
            "mqtt": {
                "host": "127.0.0.1",
                "port": mosquitto.port,
                "username": "svc",
                "password": MQTT_PASSWORD,
            },
            "buses": [
                {"port": "/dev/null", "protocol": "daly_classic", "packs": [{"id": "garage"}]}
            ],
            "control": {"enabled": True},
            "api": {"host": "127.0.0.1", "port": http, "password_hash": hash_password(UI_PASSWORD)},
            "modbus": {"host": "127.0.0.1", "port": free_port()},
            "tunnel": {"host": "127.0.0.1", "port": free_port()},
            "publisher": {
                "targets": [
                    {
                        "name": "cloud",
                        "host": "127.0.0.1",
                        "port": mosquitto.port,
                        "username": "u",
                        "password": TARGET_PASSWORD,
                        "interval": 1,
                    }
                ]
            },
            "timezone": "UTC",
            "history": {
                "influx": {
                    "enabled": True,
                    "url": f"http://admin:{INFLUX_URL_PASSWORD}@127.0.0.1:{dead}",
                    "token": INFLUX_TOKEN,
                    "flush_interval": 0.5,
                    "timeout": 1,
                }
            },
            "notifier": {
                "targets": [
                    {"name": "phone", "url": f"json://me:{NOTIFY_PASSWORD}@127.0.0.1:{dead}/"}
                ]
            },
            "data_dir": str(tmp_path / "data"),
        },
    )
    running = [start_service(tmp_path, name, config) for name in EVERY_SERVICE]
    procs.extend(running)
    base = f"http://127.0.0.1:{http}"
    wait_for_api(base, 45)
    publisher = running[EVERY_SERVICE.index("publisher")]
    wait_until(lambda: "target cloud connected" in publisher.log(), timeout=45)
    # a failed login is logged too; then the UI's configuration views, logged in
    httpx.post(f"{base}/api/auth/login", json={"password": "x" * 10}, timeout=2)
    with httpx.Client(base_url=base, timeout=5) as ui:
        ui.post("/api/auth/login", json={"password": UI_PASSWORD}).raise_for_status()
        views = [
            ui.get(path)
            for path in ("/api/settings", "/api/settings/download", "/api/settings/file")
        ]
    assert views[0].status_code == 200, views[0].text[:300]
    for view in views:
        assert not [x for x in SECRETS if x in view.text], (view.url, view.text[:500])
    time.sleep(2)  # history tries InfluxDB, the reader its port: their failures are logged
    for proc in running:
        log = proc.log()
        assert log, proc.name
        assert not [x for x in SECRETS if x in log], proc.name
    COUNTS["security: service logs at DEBUG checked for 5 secrets (all 7 services)"] += len(running)
    COUNTS["security: UI configuration views checked for secrets"] += len(views)
