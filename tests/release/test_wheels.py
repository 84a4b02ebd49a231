"""The wheels of every package build, and a fresh virtual environment made from them alone (no
source tree; dependencies from the package index) runs ``bmsgate run`` on the simulator and serves
the web UI with its chart library."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import httpx
import pytest

from bmsgate.broker import free_port
from bmsgate_common.version import VERSION
from tests.support.procs import find_mosquitto, wait_until

ROOT = Path(__file__).resolve().parents[2]
UV = ROOT / ".tools" / "bin" / "uv"
pytestmark = pytest.mark.integration


def distributions() -> list[str]:
    """bmsgate and every workspace member, by their wheel names."""
    root = tomllib.loads((ROOT / "pyproject.toml").read_text())
    members = [
        d.split("==")[0] for d in root["project"]["dependencies"] if d.startswith("bmsgate-")
    ]
    return sorted(["bmsgate", *members])


def clean_env(**extra: str) -> dict[str, str]:
    """This environment without anything pointing at the checkout or its virtual environment."""
    drop = ("PYTHONPATH", "VIRTUAL_ENV", "BMSGATE_CONFIG", "UV_PROJECT_ENVIRONMENT")
    env = {k: v for k, v in os.environ.items() if k not in drop and not k.startswith("BMSGATE_")}
    env["PATH"] = os.pathsep.join(
        p for p in env["PATH"].split(os.pathsep) if not p.startswith(str(ROOT))
    )
    return {**env, **extra}


def test_the_wheels_install_alone_and_run(tmp_path: Path) -> None:
    assert find_mosquitto(), "mosquitto is needed (scripts/setup.sh test installs it)"
    dist = tmp_path / "dist"
    subprocess.run(
        [UV, "build", "--all-packages", "--wheel", "--out-dir", dist],
        cwd=ROOT,
        check=True,
        capture_output=True,
        timeout=300,
    )
    wheels = sorted(dist.glob("*.whl"))
    names = sorted(w.name.split("-")[0].replace("_", "-") for w in wheels)
    assert names == distributions()
    assert all(f"-{VERSION}-py3-none-any.whl" in w.name for w in wheels)
    api_wheel = next(w for w in wheels if w.name.startswith("bmsgate_api-"))
    with zipfile.ZipFile(api_wheel) as z:
        assert "bmsgate_api/static/node_modules/uplot/dist/uPlot.iife.min.js" in z.namelist()
        assert "bmsgate_api/static/index.html" in z.namelist()

    # a fresh environment outside the checkout, from the wheels; the rest from the index
    home = tmp_path / "elsewhere"
    home.mkdir()
    venv = home / "venv"
    subprocess.run(
        [UV, "venv", "--python", sys.executable, venv],
        cwd=home,
        env=clean_env(),
        check=True,
        capture_output=True,
        timeout=120,
    )
    python = venv / "bin" / "python"
    subprocess.run(
        [UV, "pip", "install", "--python", python, *wheels],
        cwd=home,
        env=clean_env(),
        check=True,
        capture_output=True,
        timeout=600,
    )
    where = subprocess.run(
        [
            python,
            "-c",
            "import bmsgate, bmsgate_api, bmsgate_common; print(bmsgate.__file__, bmsgate_api.__file__)",
        ],
        cwd=home,
        env=clean_env(),
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    assert all(p.startswith(str(venv)) for p in where), where  # not the checkout's sources
    bmsgate = venv / "bin" / "bmsgate"
    shown = subprocess.run(
        [bmsgate, "--version"], cwd=home, env=clean_env(), capture_output=True, text=True
    )
    assert shown.stdout.strip() == f"bmsgate {VERSION}"

    # the README's one command, with the wheels in place of the index: `uv tool install`
    tools = clean_env(UV_TOOL_DIR=str(home / "tools"), UV_TOOL_BIN_DIR=str(home / "bin"))
    bmsgate_wheel = next(w for w in wheels if w.name.startswith("bmsgate-"))
    subprocess.run(
        [UV, "tool", "install", "--python", sys.executable, "--find-links", dist, bmsgate_wheel],
        cwd=home,
        env=tools,
        check=True,
        capture_output=True,
        timeout=600,
    )
    tool = subprocess.run(
        [home / "bin" / "bmsgate", "upgrade", "--no-backup"],
        cwd=home,
        env=tools,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert tool.splitlines()[:3] == [
        f"bmsgate {VERSION}, installed as: uv-tool",
        "to upgrade:",
        "  uv tool upgrade bmsgate",
    ]

    http = free_port()
    log = home / "run.log"
    argv = [
        bmsgate,
        "run",
        "--simulate",
        "daly_classic",
        "--data-dir",
        home / "data",
        "--http-port",
        str(http),
        "--modbus-port",
        str(free_port()),
    ]
    with log.open("wb") as out:
        run = subprocess.Popen(argv, cwd=home, env=clean_env(), stdout=out, stderr=out)
    try:
        serve(http)
    finally:
        run.send_signal(signal.SIGINT)
        code = run.wait(30)
    assert code == 0 and "Traceback" not in log.read_text(), log.read_text()[-3000:]


def serve(http: int) -> None:
    """The web UI and its chart library answer, and the simulated pack shows."""
    base = f"http://127.0.0.1:{http}"
    with httpx.Client(base_url=base, timeout=10) as client:

        def answering() -> bool:
            try:
                return client.get("/healthz").status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(answering, timeout=60)
        info = client.get("/api/version").json()
        assert info["version"] == VERSION and info["install"] == "pip"
        for page in ("/", "/battery.html", "/monitor.html", "/history.html", "/settings.html"):
            got = client.get(page)
            assert got.status_code == 200 and "<html" in got.text, page
        battery = client.get("/battery.html").text
        for asset in re.findall(r'(?:src|href)="(/vendor/uplot/[^"]+)"', battery):
            got = client.get(asset)
            assert got.status_code == 200 and len(got.content) > 1000, asset
        library = client.get("/vendor/uplot/uPlot.iife.min.js").text
        assert "uPlot" in library
        wait_until(lambda: client.get("/api/packs").json(), timeout=30)  # the simulated pack
