"""The configuration file checked for ``bmsgate run --only reader``, in a short-lived process.

Validating takes pydantic and the settings model (about 20 MB of memory): the lean supervisor
(edge.py) has this child do it at start and on each change of the file, so the processes that
stay are small (docs/performance.md). One rule for validity: the Settings model's.

``python -m bmsgate.run_check CONFIG OUT [OVERRIDES]`` validates CONFIG (a missing file reads as
defaults; OVERRIDES: the command line's settings as JSON) and writes the effective settings, every
secret in clear, to OUT (mode 0600) as JSON, with what the readers derive from them
(``settings_view.derived``). It prints one line of JSON: ``{"log_level": ..., "edge": WHY}``,
WHY being null when only readers can run here without the full supervisor (a broker is
configured and a bus is), else why not; or ``{"error": "one line"}`` and exits with USER_ERROR.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from bmsgate_common.config_file import revealed
from bmsgate_common.durable import write_durably
from bmsgate_common.exits import USER_ERROR
from bmsgate_common.settings import ConfigError, Settings, load_settings


def edge_data(cfg: Settings) -> dict[str, Any]:
    """The effective settings as JSON data, each bus and pack with what a reader derives."""
    data = revealed(cfg)
    for bus, raw in zip(cfg.buses, data.get("buses", []), strict=True):
        raw["driver_options"] = bus.driver_options()
        for pack, raw_pack in zip(bus.packs, raw["packs"], strict=True):
            raw_pack["display_name"] = pack.display_name
    return data


def not_edge(cfg: Settings) -> str | None:
    """Why this configuration needs the full supervisor; None when the lean one can run it."""
    if cfg.mqtt.host is None:
        return "no broker is configured (the private one is started by the full supervisor)"
    if not cfg.buses:
        return "no bus is configured (a simulated pack is started by the full supervisor)"
    return None


def main(argv: list[str]) -> int:
    """Check, write, answer (see the module's docstring)."""
    config, out, *rest = argv
    overrides = json.loads(rest[0]) if rest else {}
    try:
        cfg = load_settings(config, missing_ok=True, **overrides)
    except ConfigError as err:
        print(json.dumps({"error": str(err)}), flush=True)  # noqa: T201
        return USER_ERROR
    write_durably(Path(out), json.dumps(edge_data(cfg)).encode())  # 0600: it holds secrets
    print(json.dumps({"log_level": cfg.log_level, "edge": not_edge(cfg)}), flush=True)  # noqa: T201
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
