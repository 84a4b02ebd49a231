"""The simulated packs of ``bmsgate run`` (a demo, load tests): their names, without imports.

The command line checks the file against them before any simulator runs (cli.py), the
supervisor starts them (run.py's Demo).
"""

from __future__ import annotations

from typing import Final

DEMO_PROTOCOL: Final = "daly_classic"  # simulated when no protocol is named


def simulated_pack_ids(count: int) -> list[str]:
    """The ids of ``count`` simulated packs, one per simulated bus."""
    return [f"sim-{i + 1}" for i in range(count)]


def simulated_bus_entries(count: int, protocol: str) -> list[dict[str, object]]:
    """The buses a simulated run will have, for validating the file before they exist.

    A bank may name the simulated packs; the ports are replaced by the simulators' own ptys.
    """
    return [
        {"port": f"/dev/bmsgate-simulated-{i}", "protocol": protocol, "packs": [{"id": pack}]}
        for i, pack in enumerate(simulated_pack_ids(count))
    ]
