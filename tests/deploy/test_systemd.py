"""The systemd units: real entry points, a dedicated user, hardening, port 502 by capability."""

from __future__ import annotations

import importlib.util
import tomllib

import pytest

from bmsgate.cli import build_parser
from bmsgate.services import SERVICES
from tests.deploy.conftest import ROOT

UNITS = ROOT / "deploy" / "systemd"


def unit(name: str) -> dict[str, list[str]]:
    """Key → values of a unit file (keys may repeat, as DeviceAllow does)."""
    out: dict[str, list[str]] = {}
    for line in (UNITS / name).read_text().splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, _, value = line.partition("=")
            out.setdefault(key, []).append(value)
    return out


@pytest.mark.parametrize("name", ["bmsgate@.service", "bmsgate-reader@.service", "bmsgate.service"])
def test_units_run_as_a_dedicated_user_with_hardening(name: str) -> None:
    u = unit(name)
    assert u["User"] == ["bmsgate"] and u["Group"] == ["bmsgate"]
    for key, value in {
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "RestrictNamespaces": "yes",
    }.items():
        assert u[key] == [value], key
    assert u["RestartPreventExitStatus"] == ["2"]  # a bad config is not restarted forever
    assert all("PASSWORD" not in e and "TOKEN" not in e for e in u.get("Environment", []))


def test_modbus_may_bind_port_502_and_the_reader_gets_no_capability() -> None:
    for name in ("bmsgate@.service", "bmsgate.service"):
        assert unit(name)["AmbientCapabilities"] == ["CAP_NET_BIND_SERVICE"]
    assert unit("bmsgate-reader@.service")["CapabilityBoundingSet"] == [""]


def test_every_exec_start_is_an_entry_point() -> None:
    for service, spec in SERVICES.items():
        template = "bmsgate-reader@.service" if spec.per_bus else "bmsgate@.service"
        (exec_start,) = unit(template)["ExecStart"]
        argv = exec_start.replace("%i", "0" if spec.per_bus else service).split()
        module = argv[argv.index("-m") + 1]
        assert module == spec.module
        assert importlib.util.find_spec(f"{module}.__main__") is not None
    (run,) = unit("bmsgate.service")["ExecStart"]
    assert run.split()[0].endswith("/bmsgate") and run.split()[1] == "run"
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["bmsgate"] == "bmsgate.cli:main"
    assert build_parser().parse_args(run.split()[1:]).command == "run"


def families(name: str) -> set[str]:
    """The address families a unit (or drop-in) allows, every assignment merged as systemd does."""
    return {f for value in unit(name).get("RestrictAddressFamilies", []) for f in value.split()}


def test_the_api_may_announce_itself_by_mdns_and_only_the_api_lists_interfaces() -> None:
    # python-zeroconf lists the interfaces by netlink (getifaddrs) and multicasts over AF_INET
    api = families("bmsgate@.service") | families("bmsgate@api.service.d/mdns.conf")
    for allowed in (api, families("bmsgate.service")):  # bmsgate run supervises the api too
        assert {"AF_INET", "AF_NETLINK"} <= allowed
    assert "AF_NETLINK" not in families("bmsgate@.service") | families("bmsgate-reader@.service")
    assert unit("bmsgate@api.service.d/mdns.conf") == {"RestrictAddressFamilies": ["AF_NETLINK"]}
    for name in ("bmsgate@.service", "bmsgate.service", "bmsgate@api.service.d/mdns.conf"):
        u = unit(name)  # nothing that would keep multicast from the network
        assert not {"IPAddressDeny", "PrivateNetwork", "RestrictNetworkInterfaces"} & set(u), name
