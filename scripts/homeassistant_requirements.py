"""Print the Python requirements of the Home Assistant integrations the ecosystem lane loads.

Run with the Python of a Home Assistant install (scripts/homeassistant_chroot.sh does, inside its
chroot). The integrations: those Home Assistant's bootstrap loads at every start
(``CORE_INTEGRATIONS`` and ``DEFAULT_INTEGRATIONS``), those the lane's configuration.yaml
and config entry add, and every dependency and after-dependency of these, read
from each integration's manifest.json.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import homeassistant.bootstrap as bootstrap
from homeassistant import components

LANE = {
    "api",
    "binary_sensor",
    "config",
    "energy",
    "history",
    "mqtt",
    "number",
    "onboarding",
    "recorder",
    "select",
    "sensor",
    "switch",
    "text",
    "websocket_api",
}


def bootstrap_integrations() -> set[str]:
    """What bootstrap sets up without a configuration entry for it (no Supervisor here)."""
    return set(bootstrap.CORE_INTEGRATIONS) | set(bootstrap.DEFAULT_INTEGRATIONS)


def main() -> None:
    base = Path(components.__path__[0])
    todo = sorted(LANE | bootstrap_integrations())
    seen: set[str] = set()
    wanted: set[str] = set()
    while todo:
        name = todo.pop()
        if name in seen or not (base / name / "manifest.json").exists():
            continue
        seen.add(name)
        manifest = json.loads((base / name / "manifest.json").read_text())
        wanted.update(manifest.get("requirements", []))
        # after_dependencies too: their modules are imported when present (analytics -> hassio)
        todo.extend(manifest.get("dependencies", []) + manifest.get("after_dependencies", []))
    print(f"# integrations: {' '.join(sorted(seen))}", file=sys.stderr)
    print("\n".join(sorted(wanted)))


if __name__ == "__main__":
    main()
