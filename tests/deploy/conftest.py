"""Shared loading of the deployment files for the checks in tests/deploy."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
EXAMPLE_ENV = ROOT / "deploy" / "example.env"


def compose_text() -> str:
    """docker-compose.yml without its comment lines (compose interpolates none of them)."""
    lines = COMPOSE.read_text().splitlines()
    return "\n".join(line for line in lines if not line.lstrip().startswith("#")) + "\n"


def compose() -> dict[str, Any]:
    """docker-compose.yml as data (YAML anchors and merge keys resolved)."""
    return dict(yaml.safe_load(COMPOSE.read_text()))


def example_env() -> dict[str, str]:
    """deploy/example.env; empty secrets get a stand-in so interpolation can be checked."""
    out: dict[str, str] = {}
    for line in EXAMPLE_ENV.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            out[key.strip()] = value.strip() or f"test-{key.strip().lower()}"
    return out


_VAR = re.compile(r"\$\{([A-Z0-9_]+)(:?[-?][^}]*)?\}")


def interpolate(text: str, env: dict[str, str]) -> str:
    """Compose's ${VAR}, ${VAR:?msg} and ${VAR:-default} with ``env`` ($$ stays a dollar)."""

    def one(m: re.Match[str]) -> str:
        name, rule = m.group(1), m.group(2) or ""
        if env.get(name):
            return env[name]
        if rule.startswith((":-", "-")):
            return rule.split("-", 1)[1]
        raise KeyError(f"{name} is not set")

    return _VAR.sub(one, text).replace("$$", "$")


def bmsgate_services() -> dict[str, dict[str, Any]]:
    """The compose services that run bmsgate code (their command is `python -m bmsgate_…`)."""
    return {name: svc for name, svc in compose()["services"].items() if "build" in svc}
