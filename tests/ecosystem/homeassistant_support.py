"""A real Home Assistant for the ecosystem lane: its chroot, its process, its REST and websocket API.

The chroot (scripts/homeassistant_chroot.sh) holds the pinned release; each run gets a fresh
configuration directory, bound into the chroot in a private mount namespace (so the mounts go
away with the process). The API calls are the ones HA's own frontend makes: onboarding
(homeassistant/components/onboarding/views.py), the config flow of the MQTT integration
(``POST /api/config/config_entries/flow``, components/mqtt/config_flow.py, step ``broker``) and
websocket commands (developers.home-assistant.io/docs/api/websocket).
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
from websockets.sync.client import ClientConnection, connect

from bmsgate.broker import wait_for_port

ROOT_DIR = Path(__file__).resolve().parents[2]
# the newest release that installs on Debian testing's Python 3.14 (docs/homeassistant.md)
HA_VERSION = "2026.11.0"
# not BMSGATE_*: bmsgate reads those as settings and refuses an unknown one
CACHE = Path(os.environ.get("HA_LANE_CACHE", "/var/cache/bmsgate-ha"))
CLIENT_ID = "http://127.0.0.1/"  # the OAuth client: any URL on HA's own host (IndieAuth)
OWNER = {"name": "Owner", "username": "owner", "language": "en"}

CONFIGURATION = """\
homeassistant:
  name: bmsgate lane
  unit_system: metric
  time_zone: UTC
  currency: EUR
  country: DE
  latitude: 52.5
  longitude: 13.4
  elevation: 40
http:
  server_host: 127.0.0.1
  server_port: {port}
recorder:
  commit_interval: 1
energy:
history:
logger:
  default: warning
"""


def build_chroot() -> Path:
    """The chroot of HA_VERSION, built on first use (about 1.5 min) and cached under CACHE."""
    script = ROOT_DIR / "scripts" / "homeassistant_chroot.sh"
    done = subprocess.run(
        [str(script), HA_VERSION, str(CACHE)], capture_output=True, text=True, timeout=1200
    )
    if done.returncode != 0:
        raise RuntimeError(f"the Home Assistant chroot failed:\n{done.stderr[-3000:]}")
    return Path(done.stdout.strip().splitlines()[-1])


class HomeAssistant:
    """One Home Assistant on loopback, started and stopped as often as a test needs."""

    def __init__(self, chroot: Path, config: Path, port: int) -> None:
        self.chroot, self.config, self.port = chroot, config, port
        self.url = f"http://127.0.0.1:{port}"
        self.process: subprocess.Popen[bytes] | None = None
        self.token = ""
        config.mkdir(parents=True, exist_ok=True)
        (config / "configuration.yaml").write_text(CONFIGURATION.format(port=port))
        self.output = config / "stdout.log"

    @property
    def log(self) -> Path:
        """HA's own log file (every start appends; the previous run's is renamed .1)."""
        return self.config / "home-assistant.log"

    def start(self, within: float = 180) -> None:
        (self.chroot / "config").mkdir(exist_ok=True)
        script = (
            'mount -t proc proc "$0/proc" && mount --rbind /dev "$0/dev" && '
            'mount --bind "$1" "$0/config" && '
            'exec chroot "$0" /srv/ha/bin/hass --config /config --skip-pip'
        )
        argv = ["unshare", "--mount", "--propagation", "private", "--", "sh", "-c", script]
        with self.output.open("ab") as out:
            self.process = subprocess.Popen(
                [*argv, str(self.chroot), str(self.config)], stdout=out, stderr=out
            )
        if not wait_for_port("127.0.0.1", self.port, within):
            raise RuntimeError(f"Home Assistant did not listen within {within} s")
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:  # the API answers once core is running
            try:
                if httpx.get(f"{self.url}/manifest.json", timeout=5).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if self.process.poll() is not None:
                raise RuntimeError(f"Home Assistant exited: {self.output.read_text()[-2000:]}")
            time.sleep(0.5)
        raise RuntimeError("Home Assistant's web server did not answer")

    def stop(self, timeout: float = 60) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    # --- REST -------------------------------------------------------------------------------

    def rest(self, method: str, path: str, body: Any = None, *, auth: bool = True) -> Any:
        headers = {"Authorization": f"Bearer {self.token}"} if auth else {}
        answer = httpx.request(method, f"{self.url}{path}", json=body, headers=headers, timeout=30)
        if answer.status_code >= 400:
            raise AssertionError(f"{method} {path}: {answer.status_code} {answer.text}")
        return answer.json() if answer.content else None

    def onboard(self, password: str) -> None:
        """The owner user, analytics and integration steps; keeps a long-lived access token.

        The core_config step is left out: it only sets up the weather, radio and text-to-speech
        integrations, which need the internet (the location comes from configuration.yaml).
        """
        done = self.rest(
            "POST",
            "/api/onboarding/users",
            {**OWNER, "password": password, "client_id": CLIENT_ID},
            auth=False,
        )
        token = httpx.post(
            f"{self.url}/auth/token",
            data={
                "grant_type": "authorization_code",
                "code": done["auth_code"],
                "client_id": CLIENT_ID,
            },
            timeout=30,
        )
        token.raise_for_status()
        self.token = token.json()["access_token"]
        self.rest("POST", "/api/onboarding/analytics")
        self.rest(
            "POST",
            "/api/onboarding/integration",
            {"client_id": CLIENT_ID, "redirect_uri": f"{CLIENT_ID}?auth_callback=1"},
        )
        # a long-lived token, so the HA restarts need no new login
        with self.ws() as ws:
            self.token = ws.command("auth/long_lived_access_token", client_name="lane", lifespan=1)
            # HA stages configuration.yaml's http: block as a trial; unconfirmed for 5 min, it
            # reverts to its default port and restarts. The owner confirms it, as in HA's UI.
            if ws.command("http/config")["active_config_type"] == "pending":
                ws.command("http/config/promote")

    def add_mqtt(self, port: int, username: str, password: str) -> dict[str, Any]:
        """The MQTT integration's config entry for a broker on loopback, as a user adds it."""
        flow = self.rest("POST", "/api/config/config_entries/flow", {"handler": "mqtt"})
        assert flow["step_id"] == "broker", flow
        result = self.rest(
            "POST",
            f"/api/config/config_entries/flow/{flow['flow_id']}",
            {
                "broker": "127.0.0.1",
                "port": port,
                "username": username,
                "password": password,
                "other_settings": {"set_client_cert": False, "set_ca_cert": "off"},
            },
        )
        assert result["type"] == "create_entry", result
        return dict(result)

    def ws(self) -> Socket:
        return Socket(self)

    def states(self) -> dict[str, dict[str, Any]]:
        return {s["entity_id"]: s for s in self.rest("GET", "/api/states")}


class Socket:
    """HA's websocket API, authenticated, one command at a time."""

    def __init__(self, ha: HomeAssistant) -> None:
        self.ha = ha
        self.ids = itertools.count(1)
        self.conn: ClientConnection | None = None
        self.stack = contextlib.ExitStack()

    def __enter__(self) -> Socket:
        self.conn = self.stack.enter_context(
            connect(
                f"ws://127.0.0.1:{self.ha.port}/api/websocket",
                max_size=64 * 2**20,
                open_timeout=30,
            )
        )
        assert json.loads(self.conn.recv(timeout=30))["type"] == "auth_required"
        self.conn.send(json.dumps({"type": "auth", "access_token": self.ha.token}))
        answer = json.loads(self.conn.recv(timeout=30))
        assert answer["type"] == "auth_ok", answer
        return self

    def __exit__(self, *_: object) -> None:
        self.stack.close()

    def command(self, kind: str, **fields: Any) -> Any:
        assert self.conn is not None
        n = next(self.ids)
        self.conn.send(json.dumps({"id": n, "type": kind, **fields}))
        while True:
            answer = json.loads(self.conn.recv(timeout=60))
            if answer.get("id") == n and answer["type"] == "result":
                if not answer["success"]:
                    raise AssertionError(f"{kind}: {answer['error']}")
                return answer["result"]
