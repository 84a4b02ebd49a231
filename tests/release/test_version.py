"""The version comes from one place (package metadata) and shows wherever bmsgate is asked."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from importlib.metadata import version
from pathlib import Path

import pytest
from scripts.set_version import projects, set_version

from bmsgate_common.models import ServiceStatus
from bmsgate_common.mqtt import VERSION as BACKBONE_VERSION
from bmsgate_common.version import VERSION, installed_version
from tests.support.mqtt import listen
from tests.support.procs import Mosquitto

ROOT = Path(__file__).resolve().parents[2]
BMSGATE = Path(sys.executable).parent / "bmsgate"


def pyproject(path: Path) -> dict:  # type: ignore[type-arg]
    return tomllib.loads(path.read_text(encoding="utf-8"))


def test_the_version_is_the_package_metadata() -> None:
    root = pyproject(ROOT / "pyproject.toml")["project"]["version"]
    assert VERSION == installed_version() == version("bmsgate-common") == version("bmsgate") == root
    assert BACKBONE_VERSION == VERSION  # what every service's status and HA's sw_version carry


def test_every_distribution_has_the_same_version_and_bmsgate_pins_them() -> None:
    files = projects()
    workspace = sorted((ROOT / "packages").glob("*/pyproject.toml")) + sorted(
        (ROOT / "services").glob("*/pyproject.toml")
    )
    assert files == [ROOT / "pyproject.toml", *workspace]
    versions = {p.parent.name: pyproject(p)["project"]["version"] for p in files}
    assert set(versions.values()) == {VERSION}, versions
    deps = pyproject(ROOT / "pyproject.toml")["project"]["dependencies"]
    members = {pyproject(p)["project"]["name"] for p in files[1:]}
    pinned = {d.split("==")[0] for d in deps if d.startswith("bmsgate-")}
    assert pinned == members
    assert all(d.endswith(f"=={VERSION}") for d in deps if d.startswith("bmsgate-"))


def test_set_version_rewrites_the_version_and_the_pins_only() -> None:
    text = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    out = set_version(text, "9.8.7")
    assert pyproject_text(out)["project"]["version"] == "9.8.7"
    deps = pyproject_text(out)["project"]["dependencies"]
    assert "bmsgate-history==9.8.7" in deps
    assert "aiomqtt==2.5.1" in pyproject_text(out)["dependency-groups"]["dev"]  # not a member
    assert out.count("9.8.7") == len(projects())  # the version and each pin; nothing else


def pyproject_text(text: str) -> dict:  # type: ignore[type-arg]
    return tomllib.loads(text)


def test_cli_version() -> None:
    out = subprocess.run([BMSGATE, "--version"], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == f"bmsgate {VERSION}"


async def test_a_services_status_carries_the_version(mosquitto: Mosquitto) -> None:
    from bmsgate_common.mqtt import Backbone
    from bmsgate_common.settings import MqttSettings

    async with listen(mosquitto.port, "bmsgate/service/+/status") as seen:
        async with Backbone(MqttSettings(host="127.0.0.1", port=mosquitto.port), "history"):
            online = await seen.wait_for(
                lambda s: [p for p in s.on("history/status") if p["state"] == "online"]
            )
        offline = await seen.wait_for(
            lambda s: [p for p in s.on("history/status") if p["state"] == "offline"]
        )
    assert ServiceStatus.model_validate(online[0]).version == VERSION
    assert ServiceStatus.model_validate(offline[0]).version == VERSION


@pytest.mark.parametrize("name", ["bmsgate", "bmsgate-api", "bmsgate-history"])
def test_every_installed_distribution_reports_the_same_version(name: str) -> None:
    assert version(name) == VERSION
