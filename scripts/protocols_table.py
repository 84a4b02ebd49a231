"""Regenerate the protocol table of docs/protocols/README.md from the registry.

``uv run python scripts/protocols_table.py``; tests/test_protocols_doc.py fails when the page is
out of date. The table sits between the two marker comments; the rest of the page is prose.
"""

from __future__ import annotations

import json
from pathlib import Path

from bmsgate_bms.discovery import DEFAULT_TIMEOUT, plan_probes
from bmsgate_bms.driver import ProtocolInfo, ScanStep
from bmsgate_bms.registry import infos

ROOT = Path(__file__).parents[1]
PAGE = ROOT / "docs" / "protocols" / "README.md"
VECTORS = ROOT / "packages" / "bms" / "tests" / "vectors"
BEGIN = "<!-- protocol table: made by scripts/protocols_table.py from bmsgate_bms.registry -->"
END = "<!-- end of protocol table -->"


def _span(low: int, high: int) -> str:
    return str(low) if low == high else f"{low}..{high}"


def _step(step: ScanStep) -> str:
    variant = f" {step.variant}" if step.variant else ""
    later = ", last" if step.alternate else ""
    return f"{step.baudrate}{variant}: {_span(step.addresses[0], step.addresses[-1])}{later}"


def _vectors(name: str) -> str:
    path = VECTORS / f"{name}.json"
    if not path.exists():
        return "none"
    vectors = json.loads(path.read_text(encoding="utf-8"))
    bad = sum(not v["verified"] for v in vectors)
    return f"{len(vectors)}" + (f" ({bad} broken, must be rejected)" if bad else "")


def _row(i: ProtocolInfo) -> str:
    bauds = " / ".join(str(b) for b in i.baudrates)
    addresses = _span(*i.addresses)
    if i.variants:
        addresses += " (" + ", ".join(f"{k}: {_span(*v)}" for k, v in i.variants.items()) + ")"
    commands = [c for c, ok in (("MOS", i.mos_switching), ("SOC", i.soc_setting)) if ok]
    return (
        f"| [`{i.name}`]({i.name}.md) | {i.label} | {i.manufacturer}, {i.model} | {bauds} "
        f"| {addresses} | {'; '.join(_step(s) for s in i.scan)} "
        f"| {', '.join(commands) or 'read-only'} | {i.layout} | {_vectors(i.name)} |"
    )


def render() -> str:
    """The table and the scan's length, between the markers."""
    probes = len(plan_probes())
    lines = [
        BEGIN,
        "| protocol | label | make, model (Home Assistant) | baud (default first) | addresses "
        "| scan: baud variant: addresses | writes | web UI layout | vectors |",
        "|---|---|---|---|---|---|---|---|---|",
        *(_row(i) for i in infos()),
        "",
        f"A full `bmsgate scan` of a silent port sends {probes} probes: "
        f"{probes * DEFAULT_TIMEOUT:.1f} s with the default {DEFAULT_TIMEOUT} s timeout.",
        END,
    ]
    return "\n".join(lines)


def updated(page: str) -> str:
    """``page`` with its table replaced by the current one."""
    head, _, rest = page.partition(BEGIN)
    _, _, tail = rest.partition(END)
    return head + render() + tail


if __name__ == "__main__":
    PAGE.write_text(updated(PAGE.read_text(encoding="utf-8")), encoding="utf-8")
    print(PAGE)
