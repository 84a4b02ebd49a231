"""The configuration file checked for ``bmsgate run --only reader``, in a short-lived process.

Validating takes pydantic and the settings model (about 20 MB of memory): the lean supervisor
(edge.py) has this child do it at start and on each change of the file, so the processes that
stay are small (docs/performance.md). One rule for validity: the Settings model's.

``python -m bmsgate.run_check CONFIG OVERRIDES`` validates CONFIG (empty: $BMSGATE_CONFIG,
else ./bmsgate.yaml; a missing file reads as defaults) with OVERRIDES (the command line's
settings, JSON) and writes the effective settings, every secret in clear, with what the readers
derive from them (``settings_view.DERIVED``) to ``<data_dir>/run/readers.json`` (mode 0600).
It prints one line of JSON: ``config_file`` (absolute), ``runtime`` (that file), ``log_level``
and ``edge``: null when the lean supervisor can run the readers of this configuration, else
why not; or ``{"error": "one line"}``, and then exits with USER_ERROR.

``python -m bmsgate.run_check --forget RUNTIME WHAT``: after the lean supervisor stopped the
readers of removed buses or packs, the broker's retained messages of those packs are deleted and
each retired reader marked as left out, as run.py's supervisor does (``forget_packs``); WHAT is
``{"packs": [...], "retired": {"reader-1": "why"}}``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from bmsgate_common.config_file import config_path, revealed
from bmsgate_common.durable import write_durably
from bmsgate_common.exits import USER_ERROR
from bmsgate_common.settings import ConfigError, Settings, load_settings
from bmsgate_common.settings_view import DERIVED
from bmsgate_common.version import VERSION


def edge_data(cfg: Settings) -> dict[str, Any]:
    """The effective settings as JSON data, and what a reader derives of each bus and pack.

    The names derived are settings_view.DERIVED's, computed by the Settings model's own code.
    """
    buses = []
    for bus in cfg.buses:
        derived = {name: _value(getattr(bus, name)) for name in DERIVED["bus"]}
        packs = [{name: getattr(pack, name) for name in DERIVED["pack"]} for pack in bus.packs]
        buses.append({**derived, "packs": packs})
    return {"settings": revealed(cfg), "derived": {"buses": buses, "version": VERSION}}


def _value(value: Any) -> Any:
    return value() if callable(value) else value


def not_edge(cfg: Settings) -> str | None:
    """Why this configuration needs the full supervisor; None when the lean one can run it."""
    if cfg.mqtt.host is None:
        return "no broker is configured (the private one is started by the full supervisor)"
    if not cfg.buses:
        return "no bus is configured (a simulated pack is started by the full supervisor)"
    return None


def forget(runtime: Path, packs: list[str], retired: dict[str, str]) -> int:
    """Delete the retained messages of removed packs, mark retired readers (run.forget_packs)."""
    import asyncio

    from .run import forget_packs

    settings = Settings.model_validate(json.loads(runtime.read_text())["settings"])
    asyncio.run(forget_packs(settings.mqtt, packs, retired))
    return 0


def main(argv: list[str]) -> int:
    """Check, write, answer (see the module's docstring); or ``--forget RUNTIME WHAT``."""
    if argv[0] == "--forget":
        what = json.loads(argv[2])
        return forget(Path(argv[1]), what["packs"], what["retired"])
    config, overrides = argv
    path = config_path(config or None)
    try:
        cfg = load_settings(path, missing_ok=True, **json.loads(overrides))
    except ConfigError as err:
        print(json.dumps({"error": str(err)}), flush=True)  # noqa: T201
        return USER_ERROR
    out = cfg.data_dir.resolve() / "run" / "readers.json"
    write_durably(out, json.dumps(edge_data(cfg)).encode())  # 0600: it holds secrets
    answer = {
        "config_file": str(path.resolve()),
        "runtime": str(out),
        "log_level": cfg.log_level,
        "edge": not_edge(cfg),
    }
    print(json.dumps(answer), flush=True)  # noqa: T201
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
