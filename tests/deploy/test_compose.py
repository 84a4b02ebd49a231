"""docker-compose.yml: valid Compose, no default secrets, healthchecks, real entry points, and
every bmsgate environment validated by bmsgate's own settings loader."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from bmsgate.services import SERVICES
from bmsgate_common.settings import load_settings
from tests.deploy.conftest import (
    ROOT,
    bmsgate_services,
    compose,
    compose_text,
    example_env,
    interpolate,
)

SCHEMA = Path(__file__).with_name("compose-spec.json")
SECRET = re.compile(r"PASSWORD|TOKEN|SECRET")


def test_compose_file_follows_the_compose_specification() -> None:
    validator = jsonschema.Draft7Validator(json.loads(SCHEMA.read_text()))  # its $schema
    validator.validate(compose())  # as written: ${VAR} strings are valid values
    validator.validate(yaml.safe_load(interpolate(compose_text(), example_env())))


def test_every_variable_is_in_the_example_env_and_secrets_have_no_default() -> None:
    text = compose_text()
    used = set(re.findall(r"\$\{([A-Z0-9_]+)", text))
    assert used <= set(example_env()), used - set(example_env())
    for name, rule in re.findall(r"\$\{([A-Z0-9_]+)([^}]*)\}", text):
        assert rule.startswith(":?"), f"${{{name}}} must be required (${{{name}:?…}})"
    for line in (ROOT / "deploy" / "example.env").read_text().splitlines():
        key, _, value = line.partition("=")
        if SECRET.search(key) and not line.startswith("#"):
            assert value == "", f"example.env must not suggest a value for {key}"


def test_every_service_restarts_has_a_healthcheck_and_named_volumes() -> None:
    data = compose()
    declared = set(data["volumes"])
    for name, svc in data["services"].items():
        assert svc.get("restart") == "unless-stopped", name
        assert svc.get("healthcheck", {}).get("test"), f"{name} has no healthcheck"
        for volume in svc.get("volumes", []):
            source = volume.split(":")[0]
            assert source.startswith("./") or source in declared, f"{name}: {source}"
        image = svc.get("image", "")
        if "build" not in svc:  # third-party images: a fixed version, never latest
            assert re.search(r":\d+\.\d+\.\d+$|@sha256:[0-9a-f]{64}$", image), image


def test_every_bmsgate_service_of_the_table_is_in_compose() -> None:
    modules = {
        svc["command"][2] for svc in bmsgate_services().values() if svc["command"][0] == "python"
    }
    assert {s.module for s in SERVICES.values()} <= modules
    for svc in bmsgate_services().values():
        build_module = svc["build"]["args"]["MODULE"]
        command = svc["command"]
        # its own image, or the all-in-one (bmsgate.cli: every service's module is in it)
        assert build_module in (command[2], "bmsgate.cli")


def test_one_reader_per_serial_device_mapped_by_id() -> None:
    cfg = yaml.safe_load((ROOT / "deploy" / "bmsgate.yaml").read_text())
    readers = {
        n: s
        for n, s in bmsgate_services().items()
        if "bmsgate_reader" in s["command"] and s["profiles"] == ["serial"]
    }
    assert len(readers) == len(cfg["buses"])
    env = example_env()
    for svc in readers.values():
        bus = int(svc["command"][svc["command"].index("--bus") + 1])
        (device,) = svc["devices"]
        host, inside = interpolate(device, env).split(":")
        assert host.startswith("/dev/serial/by-id/")
        assert inside == cfg["buses"][bus]["port"]


def test_the_sim_profile_simulates_the_files_buses() -> None:
    """Each serial reader has a sim twin: same bus and user, a simulated board of the bus's
    protocol at the bus's port (so the file's Modbus units and tunnel ports work in the sim)."""
    cfg = yaml.safe_load((ROOT / "deploy" / "bmsgate.yaml").read_text())
    services = bmsgate_services()
    sims = {n: s for n, s in services.items() if s.get("profiles") == ["sim"]}
    assert sorted(sims) == [f"reader-{i}-sim" for i in range(len(cfg["buses"]))]
    for name, svc in sims.items():
        twin = services[name.removesuffix("-sim")]
        bus = int(svc["command"][svc["command"].index("--bus") + 1])
        assert svc["command"] == twin["command"] and name == f"reader-{bus}-sim"
        env = svc["environment"]
        assert env["SIMULATE"] == cfg["buses"][bus]["protocol"]
        assert env["SIMULATE_PORT"] == cfg["buses"][bus]["port"]
        assert env["BMSGATE_MQTT__USERNAME"] == twin["environment"]["BMSGATE_MQTT__USERNAME"]
        assert env["BMSGATE_MQTT__USERNAME"] == f"reader-{bus}"
        assert svc["volumes"] == twin["volumes"]


def _command_help(argv: list[str]) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable if a == "python" else a for a in argv]
    if argv[0] == "bmsgate":
        argv = [sys.executable, "-m", "bmsgate.cli", *argv[1:]]
    # the entry point with --help: it exists, imports and parses its arguments
    return subprocess.run([*argv[:3], "--help"], capture_output=True, text=True, timeout=60)


def test_every_compose_command_is_a_real_entry_point() -> None:
    commands = [svc["command"] for svc in bmsgate_services().values()]
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(_command_help, commands))
    for argv, done in zip(commands, results, strict=True):
        assert done.returncode == 0, (argv, done.stderr[-500:])
        assert "--config" in done.stdout or "run" in done.stdout, argv


def _environment(svc: dict[str, Any], env: dict[str, str]) -> dict[str, str]:
    dockerfile = (ROOT / "Dockerfile").read_text()
    image_env = dict(re.findall(r"(BMSGATE_[A-Z_]+)=(\S+)", dockerfile))
    raw = {k: interpolate(str(v), env) for k, v in svc.get("environment", {}).items()}
    return {**image_env, **raw}


@pytest.mark.parametrize("name", sorted(bmsgate_services()))
def test_each_service_environment_validates_with_the_settings_loader(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    svc = bmsgate_services()[name]
    for key in [k for k in os.environ if k.startswith("BMSGATE_")]:
        monkeypatch.delenv(key)
    for key, value in _environment(svc, example_env()).items():
        monkeypatch.setenv(key, value)
    mounted = {v.split(":")[1]: v.split(":")[0] for v in svc["volumes"] if v.startswith("./")}
    config = ROOT / mounted["/seed/bmsgate.yaml"]  # /config's first content (entrypoint.sh)
    cfg = load_settings(config)  # raises ConfigError naming the key
    secret = svc["environment"].get("MQTT_PASSWORD_FILE")  # a reader's, made by mosquitto
    assert cfg.mqtt.host == "mosquitto" and (cfg.mqtt.password is not None or secret)
    assert cfg.mqtt.username and cfg.data_dir == Path("/data")
    if "--bus" in svc["command"]:
        assert int(svc["command"][svc["command"].index("--bus") + 1]) < len(cfg.buses)
    if name == "history":
        assert cfg.history.influx.enabled and cfg.history.influx.token is not None
