"""The compose stack for real: engine, images from the project's Dockerfile, `up --wait`, checks.

One stack is brought up for the whole module (the sim profile: the readers of deploy/bmsgate.yaml
with a simulated board each), with tests/ecosystem/compose.lane.yaml laid over docker-compose.yml
(loopback ports, VictoriaMetrics for InfluxDB, control on). scripts/ecosystem_docker.sh installs
and starts what is missing (needs root; its cache is outside the clone). Locally without root or
Docker the module is skipped with the reason; in CI that is a failure (tests/support/needs.py).
The figures of a warm and a cold run are in docs/deploy.md.
"""

from __future__ import annotations

import http.cookiejar
import itertools
import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from bmsgate.broker import free_port
from bmsgate_api.auth import hash_password
from bmsgate_bms import daly_classic
from tests.support.needs import missing

pytestmark = [pytest.mark.ecosystem, pytest.mark.timeout(1800)]

ROOT = Path(__file__).resolve().parents[2]
OVERRIDE = Path(__file__).with_name("compose.lane.yaml")
PROJECT = "bmsgate-lane"
PASSWORD = "lane " + secrets.token_hex(8)  # the web password, set ahead as a hash in the env file
SERVICES = ["mosquitto", "influxdb", "api", "publisher", "modbus", "history", "notifier", "tunnel"]
SIM = ["reader-0-sim", "reader-1-sim"]
PACKS = {"pack-1": 1, "pack-2": 2}  # pack -> Modbus unit (deploy/bmsgate.yaml order)


@dataclass
class Stack:
    """The running stack: how to run compose against it and where it answers."""

    env_file: Path
    ports: dict[str, int]
    timings: dict[str, float] = field(default_factory=dict)
    cookies: http.cookiejar.CookieJar = field(default_factory=http.cookiejar.CookieJar)

    def compose(self, *args: str, check: bool = True, timeout: float = 600) -> str:
        """``docker compose`` with the lane's project, files and env file; its stdout."""
        argv = ["docker", "compose", "-p", PROJECT, "--env-file", str(self.env_file)]
        argv += ["-f", str(ROOT / "docker-compose.yml"), "-f", str(OVERRIDE), *args]
        done = subprocess.run(
            argv, cwd=ROOT, capture_output=True, text=True, timeout=timeout, check=False
        )
        if check and done.returncode:
            raise AssertionError(f"{' '.join(args)}: {done.stderr[-3000:]}")
        return done.stdout

    def up(self) -> float:
        """``up --wait``: every container running and healthy; the seconds it took."""
        start = time.monotonic()
        self.compose("up", "-d", "--no-build", "--wait", "--wait-timeout", "300", timeout=400)
        return time.monotonic() - start

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.ports['http']}{path}"

    def http(self, method: str, path: str, body: object = None) -> tuple[int, Any]:
        """A request to the web API with the lane's session; (status, parsed JSON or text)."""
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.url(path), data=data, method=method)
        if data is not None:
            request.add_header("Content-Type", "application/json")
        opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.cookies))
        try:
            with opener.open(request, timeout=30) as answer:
                raw, status = answer.read(), answer.status
        except urllib.error.HTTPError as err:
            raw, status = err.read(), err.code
        text = raw.decode(errors="replace")
        try:
            return status, json.loads(text)
        except ValueError:
            return status, text

    def container(self, service: str) -> str:
        return self.compose("ps", "-q", service).strip()

    def logs_since(self, since: str, *services: str) -> str:
        return self.compose("logs", "--no-color", "--since", since, *services)


NOT_READY: list[str] = []  # why the engine could not be made ready: tried once per session


def _ready_engine() -> dict[str, float]:
    """Run scripts/ecosystem_docker.sh; the seconds of each of its steps."""
    if NOT_READY:
        missing(NOT_READY[0])
    if os.geteuid() != 0:
        missing("the compose lane needs root: it installs and starts a Docker engine")
    if not shutil.which("apt-get"):
        missing("the compose lane needs a Debian machine (apt-get)")
    done = subprocess.run(
        ["scripts/ecosystem_docker.sh"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=1500,
        check=False,
    )
    if done.returncode:
        tail = (done.stdout + done.stderr)[-3000:]
        NOT_READY.append(f"no Docker engine or images for the compose lane: {tail}")
        missing(NOT_READY[0])
    return {k: float(v) for k, v in re.findall(r"^seconds (\S+) (\d+)$", done.stdout, re.M)}


def _env_file(folder: Path, ports: dict[str, int]) -> Path:
    """deploy/example.env filled in: random secrets, the lane's ports, the hash quoted."""
    lines = []
    for line in (ROOT / "deploy" / "example.env").read_text().splitlines():
        key, sep, value = line.partition("=")
        if not sep or line.lstrip().startswith("#"):
            continue
        if key == "COMPOSE_PROFILES":
            value = "sim"  # so that a plain `down -v` takes the sim readers too
        elif not value:
            value = "Europe/Berlin" if key == "TZ" else secrets.token_hex(16)
        lines.append(f"{key}={value}")
    lines.append(f"API_PASSWORD_HASH='{hash_password(PASSWORD)}'")  # holds `$`: single quotes
    lines += [f"LANE_{name.upper()}_PORT={port}" for name, port in ports.items()]
    path = folder / "lane.env"
    path.write_text("\n".join(lines) + "\n")
    path.chmod(0o600)
    return path


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    timings = _ready_engine()
    ports = {name: free_port() for name in ("mqtt", "http", "modbus", "tunnel")}
    lane = Stack(_env_file(tmp_path_factory.mktemp("compose"), ports), ports, timings)
    lane.compose("--profile", "sim", "down", "-v", "--remove-orphans", check=False)
    try:
        lane.timings["up"] = lane.up()
        status, _ = lane.http("POST", "/api/auth/login", {"password": PASSWORD})
        assert status == 204, f"login with the password set ahead: {status}"
        yield lane
    finally:
        print(f"compose lane seconds: {lane.timings}")  # the figures, shown with -s
        lane.compose("--profile", "sim", "down", "-v", "--remove-orphans", check=False)


def _health(lane: Stack) -> dict[str, str]:
    rows = [json.loads(line) for line in lane.compose("ps", "--format", "json").splitlines()]
    return {row["Service"]: row.get("Health") or row["State"] for row in rows}


def _wait(what: str, check: Any, seconds: float = 90) -> Any:
    deadline = time.monotonic() + seconds
    while True:
        got = check()
        if got:
            return got
        assert time.monotonic() < deadline, f"{what}: not within {seconds:g} s"
        time.sleep(1)


def _states(lane: Stack) -> dict[str, dict[str, Any]]:
    """The state of every pack that is online (both, when all is well)."""
    status, packs = lane.http("GET", "/api/packs")
    assert status == 200, packs
    out = {}
    for pack in [p["pack"] for p in packs if p["online"]]:
        status, state = lane.http("GET", f"/api/packs/{pack}/state")
        if status == 200:
            out[pack] = state
    return out


def _modbus_voltage(lane: Stack, unit: int) -> float:
    """Holding register 145 (pack voltage, 0.01 V) of ``unit``, read with mbpoll."""
    done = subprocess.run(
        [
            "mbpoll",
            "-m",
            "tcp",
            "-p",
            str(lane.ports["modbus"]),
            "-a",
            str(unit),
            "-t",
            "4",
            "-r",
            "145",
            "-0",
            "-c",
            "1",
            "-1",
            "127.0.0.1",
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    found = re.search(r"\[145\]:\s+(-?\d+)", done.stdout)
    assert found, done.stdout + done.stderr
    return int(found.group(1)) / 100


def _mqtt_delivered(lane: Stack, user: str, password: str, topic: str) -> bool:
    """Whether ``user`` publishing a marker on ``topic`` reaches a subscriber (as admin)."""
    admin = _env(lane)["MQTT_ADMIN_PASSWORD"]
    port, marker = str(lane.ports["mqtt"]), secrets.token_hex(6)
    sub = subprocess.Popen(
        [
            "mosquitto_sub",
            "-h",
            "127.0.0.1",
            "-p",
            port,
            "-u",
            "admin",
            "-P",
            admin,
            "-t",
            topic,
            "-C",
            "1",
            "-W",
            "8",
            "-R",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,  # "Timed out" where nothing came
        text=True,
    )
    time.sleep(1.5)  # subscribed before the publish
    subprocess.run(
        [
            "mosquitto_pub",
            "-h",
            "127.0.0.1",
            "-p",
            port,
            "-u",
            user,
            "-P",
            password,
            "-t",
            topic,
            "-m",
            marker,
            "-q",
            "1",
        ],
        capture_output=True,
        timeout=30,
        check=False,
    )
    out, _ = sub.communicate(timeout=30)
    return marker in out


def _env(lane: Stack) -> dict[str, str]:
    pairs = (line.partition("=") for line in lane.env_file.read_text().splitlines())
    return {key: value for key, _, value in pairs}


@pytest.mark.usefixtures("stack")  # it installed Compose v2
def test_ports_are_published_on_loopback_unless_the_user_opts_in(tmp_path: Path) -> None:
    """The file alone, with example.env: every published port on 127.0.0.1."""
    env = tmp_path / "example.env"
    env.write_text(
        "".join(
            f"{k}={v or 'x'}\n"
            for k, _, v in (
                line.partition("=")
                for line in (ROOT / "deploy" / "example.env").read_text().splitlines()
                if "=" in line and not line.startswith("#")
            )
        )
    )
    for profile in ("serial", "sim"):
        rendered = subprocess.run(
            [
                "docker",
                "compose",
                "--env-file",
                str(env),
                "--profile",
                profile,
                "config",
                "--format",
                "json",
            ],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        )
        services = json.loads(rendered.stdout)["services"]
        published = [(n, p) for n, s in services.items() for p in s.get("ports", [])]
        assert published
        for name, port in published:
            assert port.get("host_ip") == "127.0.0.1", (name, port)


def test_every_container_is_healthy_in_the_local_time_zone(stack: Stack) -> None:
    health = _health(stack)
    assert set(health) == set(SERVICES + SIM), health
    assert all(state == "healthy" for state in health.values()), health
    assert stack.timings["up"] < 120, f"up --wait took {stack.timings['up']:.0f} s"
    zone = stack.compose("exec", "-T", "api", "python", "-c", "import time; print(time.tzname)")
    assert "CET" in zone, zone  # TZ=Europe/Berlin from the env file, not UTC
    # the readers' passwords were made at the first start, each in its own volume
    secret = stack.compose("exec", "-T", "reader-0-sim", "ls", "/run/secrets/mqtt")
    assert secret.split() == ["password"]


def test_a_quiet_minute_web_modbus_and_history(stack: Stack) -> None:
    """Over a minute: no broker refusal or reconnect; meanwhile the web UI, Modbus, history."""
    since = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    began, start = int(time.time()), time.monotonic()
    status, page = stack.http("GET", "/")
    assert status == 200 and "<html" in str(page).lower()
    states = _wait("both packs reporting", lambda: len(_states(stack)) == 2 and _states(stack))
    for pack, unit in PACKS.items():
        got = _modbus_voltage(stack, unit)
        assert got > 10 and abs(got - states[pack]["pack_voltage"]) < 1.0, (pack, got)
    # history: VictoriaMetrics took the InfluxDB line protocol writes
    time.sleep(max(0.0, 60 - (time.monotonic() - start)))
    # mosquitto's own time stamps: its stdout is buffered, so docker's may come later
    minute = [
        line
        for line in stack.compose("logs", "--no-color", "mosquitto").splitlines()
        if (at := re.search(r"\| (\d{9,}): ", line)) and int(at.group(1)) >= began
    ]
    broker = "\n".join(minute)
    assert "not authorised" not in broker, broker[-2000:]
    assert "Denied" not in broker, broker[-2000:]
    # every service's client connected once, before the minute: no new connection in it
    again = [line for line in minute if re.search(r" as bmsgate-\S+ ", line)]
    assert not again, (since, again)
    services = stack.logs_since(since, *[s for s in SERVICES + SIM if s not in ("mosquitto",)])
    for line in services.splitlines():
        assert "backbone connected" not in line and "unreachable" not in line, line
        assert "Traceback" not in line, services[-3000:]


def test_a_command_round_trip_and_settings_saved(stack: Stack) -> None:
    status, done = stack.http(
        "POST", "/api/packs/pack-1/commands", {"action": "set_charge_mos", "value": False}
    )
    assert status == 200, done
    assert done["result"]["status"] == "ok", done
    status, done = stack.http(
        "POST", "/api/packs/pack-1/commands", {"action": "set_charge_mos", "value": True}
    )
    assert status == 200 and done["result"]["status"] == "ok", done
    # the configuration is writable under compose: Settings saves into the bmsgate-config volume
    status, current = stack.http("GET", "/api/settings/file")
    assert status == 200, current
    text = current["yaml"] if isinstance(current, dict) else str(current)
    data = yaml.safe_load(text)
    data.setdefault("api", {})["title"] = "Lane"
    status, saved = stack.http("PUT", "/api/settings/file", {"yaml": yaml.safe_dump(data)})
    assert status == 200, saved
    stored = stack.compose("exec", "-T", "api", "cat", "/config/bmsgate.yaml")
    assert "Lane" in stored


def _system(lane: Stack) -> dict[str, dict[str, Any]]:
    """The System page's services: name -> its view."""
    status, view = lane.http("GET", "/api/system")
    assert status == 200, view
    return {s["name"]: s for s in view["services"]}


def _restarts(lane: Stack, service: str) -> int:
    inspect = ["docker", "inspect", "-f", "{{.RestartCount}}", lane.container(service)]
    return int(subprocess.check_output(inspect, text=True))


def _gap(lane: Stack, pack: str, seconds: float) -> float:
    """The median time between ``pack``'s states over ``seconds`` (its reader's poll cycle)."""
    seen: set[str] = set()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        status, state = lane.http("GET", f"/api/packs/{pack}/state")
        if status == 200:
            seen.add(state["ts"])
        time.sleep(0.3)
    stamps = sorted(datetime.fromisoformat(ts) for ts in seen)
    gaps = sorted((b - a).total_seconds() for a, b in itertools.pairwise(stamps))
    assert gaps, (pack, seen)
    return gaps[len(gaps) // 2]


def _running(lane: Stack, names: list[str]) -> dict[str, dict[str, Any]] | None:
    """The System page's services once each of ``names`` is running; None before (or while
    the api itself restarts)."""
    try:
        services = _system(lane)
    except OSError:
        return None
    return services if all(services.get(n, {}).get("state") == "running" for n in names) else None


def test_system_forms_save_and_restart_over_the_backbone(stack: Stack) -> None:
    """What the System and Settings pages do, across containers: each service's state and log
    over the backbone; the forms' save into the volume; *Restart them now* restarts the listed
    services' containers, and reader-0 then polls as saved."""
    containers = {"reader-0": "reader-0-sim", "reader-1": "reader-1-sim"}
    containers |= {s: s for s in SERVICES if s not in ("mosquitto", "influxdb")}
    # every container's service running, also those the file gives nothing to do
    services = _wait("every service running", lambda: _running(stack, list(containers)), 60)
    assert "nothing to do" in services["notifier"]["why"], services["notifier"]
    # the log lines of other containers' services, asked for over the backbone
    for name in ("reader-0", "history", "notifier"):
        status, log = stack.http("GET", f"/api/system/logs/{name}")
        assert status == 200 and log["reachable"] and log["lines"], (name, log)
    assert not stack.http("GET", "/api/system/logs/reader-7")[1]["reachable"]
    # the forms' save (PUT /api/settings/form): pack-1's bus polls every 2 s instead of 5
    assert _gap(stack, "pack-1", 12) > 3.5
    status, form = stack.http("GET", "/api/settings/form")
    assert status == 200 and form["applies_now"] is False, form
    values = form["values"]
    values["buses"][0]["poll_interval"] = 2
    status, saved = stack.http("PUT", "/api/settings/form", {"values": values})
    assert status == 200 and saved["applies_now"] is False, saved
    listed = [*saved["restarted"], *saved["started"]]
    assert "reader-0" in listed and "reader-1" not in listed and listed[-1] == "api", saved
    for reader in ("api", "reader-0-sim"):  # the one volume: the api writes, the readers read
        stored = yaml.safe_load(stack.compose("exec", "-T", reader, "cat", "/config/bmsgate.yaml"))
        assert stored["buses"][0]["poll_interval"] == 2, (reader, stored)
        assert stored["api"]["title"] == "Lane"  # the YAML save before is kept
    # Restart them now, as the page does: each listed service asked over the backbone in turn
    # (the api last); each stops with exit code 75 and its container's policy starts it again
    before = {name: _restarts(stack, containers[name]) for name in listed}
    for name in listed:
        status, asked = stack.http("POST", "/api/services/restart", {"service": name})
        assert status == 202 and asked["state"] == "restart requested", (name, asked)
    _wait(
        "each listed service's container restarted",
        lambda: all(_restarts(stack, containers[n]) > before[n] for n in listed),
        120,
    )
    _wait("every container healthy again", lambda: set(_health(stack).values()) == {"healthy"}, 180)
    after = _wait("every service running again", lambda: _running(stack, list(containers)), 120)
    for name in containers:  # the listed ones started anew, the others kept running
        assert (after[name]["started"] != services[name]["started"]) == (name in listed), name
    assert "restart requested: asked for in the web UI" in stack.compose(
        "logs", "--no-color", "reader-0-sim"
    )
    assert _gap(stack, "pack-1", 12) < 3.5  # it polls as saved


def test_the_tunnel_reaches_a_sim_board(stack: Stack) -> None:
    """The sim's packs are the file's: the tunnel opens for pack-1 and its board answers."""
    status, opened = stack.http(
        "POST", "/api/packs/pack-1/tunnel", {"action": "open", "minutes": 2}
    )
    assert status == 200, opened
    try:
        ask = daly_classic.request(0x90, board=1)  # SOC, voltage, current

        def answer() -> bytes:
            try:
                with socket.create_connection(("127.0.0.1", stack.ports["tunnel"]), 5) as conn:
                    conn.settimeout(10)
                    conn.sendall(ask)
                    return conn.recv(64)
            except OSError:
                return b""

        got = _wait("an answer through the tunnel", answer, 60)
        assert got[:1] == b"\xa5" and got[2] == 0x90, got.hex()
    finally:
        stack.http("POST", "/api/packs/pack-1/tunnel", {"action": "close"})


def test_a_reader_cannot_publish_another_buss_pack(stack: Stack) -> None:
    password = stack.compose(
        "exec", "-T", "mosquitto", "cat", "/mosquitto/secrets/reader-0/password"
    ).strip()
    assert password
    assert _mqtt_delivered(stack, "reader-0", password, "bmsgate/bus/reader-0/sniff")
    assert not _mqtt_delivered(stack, "reader-0", password, "bmsgate/bms/pack-2/state")
    assert not _mqtt_delivered(stack, "reader-0", password, "bmsgate/bus/reader-1/sniff")


def test_api_health_follows_the_broker(stack: Stack) -> None:
    """The api's healthcheck (compose's command) fails while the broker is away."""
    container = stack.container("api")

    def healthy() -> bool:
        check = ["docker", "exec", container, "python", "/app/healthcheck.py", "api", "--http"]
        check.append("http://127.0.0.1:8080/healthz")
        return subprocess.run(check, capture_output=True, check=False).returncode == 0

    assert healthy()
    stack.compose("stop", "mosquitto")
    try:
        _wait("the api's healthcheck failing without the broker", lambda: not healthy(), 30)
    finally:
        stack.compose("start", "mosquitto")
    _wait("every container healthy again", lambda: set(_health(stack).values()) == {"healthy"})


def test_a_crashed_service_restarts(stack: Stack) -> None:
    container = stack.container("publisher")
    before = int(
        subprocess.check_output(
            ["docker", "inspect", "-f", "{{.RestartCount}}", container], text=True
        )
    )
    pid = subprocess.check_output(
        ["docker", "inspect", "-f", "{{.State.Pid}}", container], text=True
    )
    os.kill(int(pid), 9)  # the service's PID 1 dies as in a crash, not a `docker stop`
    _wait(
        "the publisher restarted",
        lambda: (
            int(
                subprocess.check_output(
                    ["docker", "inspect", "-f", "{{.RestartCount}}", container], text=True
                )
            )
            > before
        ),
    )
    _wait("the publisher healthy again", lambda: _health(stack)["publisher"] == "healthy", 120)


def test_counters_history_and_settings_survive_down_and_up(stack: Stack) -> None:
    month = datetime.now().strftime("%Y-%m")

    def samples() -> int:
        status, days = stack.http("GET", f"/api/packs/pack-1/days/{month}")
        assert status == 200, days
        return sum(day["samples"] for day in days)

    stored = _wait("history archived some samples", samples, 120)
    energy = {p: s.get("energy_in") for p, s in _states(stack).items()}
    stack.compose("down")  # no -v: the volumes stay
    stack.up()
    status, _ = stack.http("POST", "/api/auth/login", {"password": PASSWORD})
    assert status == 204
    after = _wait("both packs reporting again", lambda: len(_states(stack)) == 2 and _states(stack))
    for pack, was in energy.items():  # counters only go up, also across a restart
        now = after[pack].get("energy_in")
        assert was is None or (now is not None and now >= was), (pack, was, now)
    assert samples() >= stored  # the day's archive kept what it had
    assert "Lane" in stack.compose("exec", "-T", "api", "cat", "/config/bmsgate.yaml")


def test_down_v_leaves_nothing(stack: Stack) -> None:
    """COMPOSE_PROFILES=sim in the env file: a plain `down -v` also takes the sim readers."""
    stack.compose("down", "-v")
    label = f"label=com.docker.compose.project={PROJECT}"
    for kind in ("ps -a", "network ls", "volume ls"):
        left = subprocess.check_output(
            ["docker", *kind.split(), "-q", "--filter", label], text=True
        )
        assert not left.strip(), f"docker {kind}: {left}"
