"""An openHASP ``pages.jsonl`` for one pack, matching what the publisher pushes into it.

openHASP (openhasp.com; research/FORMATS.md section 3) reads its layout from ``/pages.jsonl``:
one object per line (``page``, ``id``, ``obj``, position, properties); a line without ``id`` is a
comment. The publisher's ``openhasp`` targets push values into ``p<page>b<id>.<property>`` with
format templates over its value names. This file lays out the objects those templates address:
the pack's configured plate objects when there is one, else a default set whose ``objects`` the
file names in its first line, ready to paste into a publisher target. The first values are
formatted by the publisher's own ``hasp_messages`` from the pack's latest state. Pure.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any, Final

from bmsgate_common.models import PackState
from bmsgate_common.settings import OpenHaspSettings
from bmsgate_outputs.entities import descriptions, shown_values
from bmsgate_outputs.plan import hasp_messages

WIDTH, HEIGHT = 480, 320  # [px] the common landscape plates (WT32-SC01, 3.5" ILI9488)
MAX_CELLS: Final = 32  # 4 columns x 8 rows on the cells page
OBJECT = re.compile(r"^p(\d{1,2})b(\d{1,3})\.([a-z_]+)$")


@dataclass(frozen=True)
class Spot:
    """One object of the default layout: where it is, what it is, what fills it."""

    id: int
    obj: str
    x: int
    y: int
    w: int
    h: int
    prop: str | None = None  # the property the publisher sets
    template: str | None = None  # over the publisher's value names
    extra: dict[str, Any] = field(default_factory=dict)


# page 1: the pack at a glance (ids fixed: they are what the publisher's objects address)
# fmt: off
OVERVIEW: Final = (
    Spot(2, "arc", 10, 40, 170, 170, "val", "{soc:.0f}",
         {"min": 0, "max": 100, "line_width": 16, "line_width10": 16}),
    Spot(3, "label", 35, 105, 120, 40, "text", "{soc:.0f} %", {"align": "center", "text_font": 32}),
    Spot(4, "label", 200, 40, 270, 32, "text", "{voltage:.2f} V   {current:+.1f} A",
         {"text_font": 24}),
    Spot(5, "label", 200, 76, 270, 32, "text", "{power:+.0f} W", {"text_font": 24}),
    Spot(6, "label", 200, 116, 270, 26, "text", "Δ {cell_delta} mV, avg {cell_average_mv} mV"),
    Spot(7, "label", 200, 146, 270, 26, "text", "min {cell_min_mv} mV (cell {cell_min_index})"),
    Spot(8, "label", 200, 176, 270, 26, "text", "max {cell_max_mv} mV (cell {cell_max_index})"),
    Spot(9, "label", 10, 220, 230, 26, "text", "{remaining_capacity:.1f} Ah left"),
    Spot(10, "label", 250, 220, 220, 26, "text", "{cycles} cycles"),
    Spot(11, "label", 10, 250, 230, 26, "text", "MOS {mos_temperature:.0f} °C"),
    Spot(12, "label", 250, 250, 220, 26, "text", "sensor 1: {temperature_1:.0f} °C"),
)
# fmt: on
CELL_ID0: Final = 10  # cells page: cell n is object CELL_ID0 + n


@dataclass(frozen=True)
class Pages:
    """The file, and the ``objects`` a publisher target needs for it."""

    lines: list[dict[str, Any]]
    objects: dict[str, str]

    def jsonl(self) -> str:
        """The file's text: one JSON object per line."""
        return "".join(json.dumps(line, ensure_ascii=False) + "\n" for line in self.lines)


def _cell_spots(cells: int) -> list[Spot]:
    cols, w, h = 4, 115, 30  # [px]
    out = []
    for n in range(1, min(cells, MAX_CELLS) + 1):
        x, y = 5 + ((n - 1) % cols) * (w + 4), 40 + ((n - 1) // cols) * (h + 2)
        text = f"{n}: {{cell_{n}:.3f}}"
        out.append(Spot(CELL_ID0 + n, "label", x, y, w, h, "text", text, {"align": "center"}))
    return out


def default_objects(first_page: int, cells: int) -> dict[str, str]:
    """The publisher ``objects`` of the default layout starting on ``first_page``."""
    out = {}
    for page, spots in ((first_page, OVERVIEW), (first_page + 1, _cell_spots(cells))):
        for spot in spots:
            if spot.prop and spot.template:
                out[f"p{page}b{spot.id}.{spot.prop}"] = spot.template
    return out


def _line(page: int, spot: Spot) -> dict[str, Any]:
    line = {
        "page": page,
        "id": spot.id,
        "obj": spot.obj,
        "x": spot.x,
        "y": spot.y,
        "w": spot.w,
        "h": spot.h,
    }
    return line | spot.extra


def _first_values(
    objects: dict[str, str], state: PackState | None
) -> dict[tuple[int, int], tuple[str, str]]:
    """(page, id) -> (property, value now) for every object the state can fill."""
    if state is None:
        return {}
    values = shown_values(state, descriptions(state, control=False))
    out = {}
    for message in hasp_messages("preview", objects, values):
        found = OBJECT.match(message.topic.rsplit("/", 1)[-1])
        if found:
            page, oid, prop = int(found[1]), int(found[2]), found[3]
            out[(page, oid)] = (prop, message.payload.decode())
    return out


def pages(
    name: str,
    cells: int,
    state: PackState | None,
    plate: OpenHaspSettings | None = None,
    first_page: int = 1,
) -> Pages:
    """The pages of one pack: the overview and its cells, from ``first_page`` on.

    With a configured ``plate`` its objects are the ones pushed: any object it names that the
    default layout lacks gets a plain label on its page, so every pushed object exists.
    """
    objects = dict(plate.objects) if plate else default_objects(first_page, cells)
    first = _first_values(objects, state)
    where = f"plate {plate.plate}" if plate else "add to a publisher target's openhasp plate"
    lines: list[dict[str, Any]] = [
        {"comment": f"bmsgate: {name}, {WIDTH}x{HEIGHT}; {where}", "objects": objects},
    ]
    layout = {first_page: list(OVERVIEW), first_page + 1: _cell_spots(cells)}
    titles = {first_page: name, first_page + 1: f"{name}: cells"}
    placed: set[tuple[int, int]] = set()
    for page, spots in layout.items():
        lines.append({"page": page, "comment": titles[page]})
        lines.append(
            {
                "page": page,
                "id": 1,
                "obj": "label",
                "x": 10,
                "y": 5,
                "w": 380,
                "h": 30,
                "text": titles[page],
                "text_font": 24,
            }
        )
        other = first_page + 1 if page == first_page else first_page
        lines.append(
            {
                "page": page,
                "id": 99,
                "obj": "btn",
                "x": 400,
                "y": 2,
                "w": 75,
                "h": 34,
                "text": "Cells" if page == first_page else "Pack",
                "action": {"down": f"page {other}"},
            }
        )
        placed |= {(page, 1), (page, 99)}
        for spot in spots:
            line = _line(page, spot)
            if spot.prop:
                line[spot.prop] = _initial(spot.prop, first.get((page, spot.id)))
            lines.append(line)
            placed.add((page, spot.id))
    lines += _extra_objects(objects, placed, first)
    return Pages(lines, objects)


def _initial(prop: str, found: tuple[str, str] | None) -> Any:
    """A property's first value: the formatted one when the state has it, else a placeholder."""
    if found is None or found[0] != prop:
        return 0 if prop == "val" else "–"
    if prop == "val":
        try:
            return round(float(found[1]))  # openHASP values are int16
        except ValueError:
            return 0
    return found[1]


def _extra_objects(
    objects: dict[str, str],
    placed: set[tuple[int, int]],
    first: dict[tuple[int, int], tuple[str, str]],
) -> list[dict[str, Any]]:
    """Labels (or bars for ``val``) for configured objects the layout has no place for."""
    out = []
    rows: dict[int, int] = {}
    for key in objects:
        found = OBJECT.match(key)
        if not found:
            continue
        page, oid, prop = int(found[1]), int(found[2]), found[3]
        if (page, oid) in placed:
            continue
        placed.add((page, oid))
        row = rows[page] = rows.get(page, 0) + 1
        kind = "bar" if prop == "val" else "label"
        y = HEIGHT - 36 * row  # [px] stacked up from the bottom
        line: dict[str, Any] = {
            "page": page,
            "id": oid,
            "obj": kind,
            "x": 10,
            "y": y,
            "w": WIDTH - 20,
            "h": 30,
        }
        line[prop] = _initial(prop, first.get((page, oid)))
        out.append(line)
    return out
