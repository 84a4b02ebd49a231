"""What the Status page shows besides the packs: banks, the sky, and the installer's branding."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import FileResponse, Response
from pydantic import BaseModel, Field

from bmsgate_bms.registry import infos
from bmsgate_common.models import utcnow
from bmsgate_common.settings import LOGO_TYPES

from ..deps import Ctx, Reader, shown
from ..sky import Sky, sky
from ..views import BankView, PackView, bank_view, pack_view

router = APIRouter(prefix="/api", tags=["status"])


class ProtocolView(BaseModel):
    """A protocol as it describes itself (bmsgate_bms.registry), for the setup page and layouts."""

    name: str = Field(description="the configuration's `protocol`")
    label: str = Field(description="what a person picks")
    manufacturer: str
    model: str
    baudrates: list[int] = Field(description="[baud] the default first")
    addresses: list[int] = Field(description="lowest and highest address on one bus")
    variants: dict[str, list[int]] = Field(description="variant -> its address range")
    layout: Literal["daly", "jk"] = Field(description="the status card that suits the make")
    mos_switching: bool = Field(description="charge/discharge MOSFETs can be switched")
    soc_setting: bool = Field(description="the SOC can be set")
    read_only_note: str = Field(description="why commands are refused, if they are")


@router.get("/protocols", dependencies=[Reader])
async def protocols() -> list[ProtocolView]:
    """Every protocol bmsgate speaks, in scan order."""
    return [ProtocolView(**i.as_dict()) for i in infos()]


def pack_names(ctx: Ctx) -> dict[str, str]:
    """Display names of the configured packs, then of packs only seen on the backbone."""
    names = {p.id: p.display_name for bus in ctx.settings.buses for p in bus.packs}
    for pack in ctx.store.packs():
        state = ctx.store.states.get(pack)
        names.setdefault(pack, state.name if state else pack)
    return names


def bank_views(ctx: Ctx, only_with: str | None = None) -> list[BankView]:
    """Every configured bank (or those with the member ``only_with``), combined now."""
    wanted = [b for b in ctx.settings.banks if only_with is None or only_with in b.packs]
    if not wanted:  # the common case at every state: no names of every pack to look up
        return []
    now, names = utcnow(), pack_names(ctx)
    return [bank_view(ctx.store, bank, names, now) for bank in wanted]


def refuse_bank(ctx: Ctx, pack: str, what: str) -> None:
    """A 400 at once when ``pack`` is a bank: it has no line of its own to send anything on."""
    bank = next((b for b in ctx.settings.banks if b.id == pack), None)
    if bank is not None:
        members = ", ".join(bank.packs)
        detail = f"{pack!r} is a bank: {what} go to its member packs ({members})"
        raise HTTPException(status_code=400, detail=detail)


@router.get("/banks", dependencies=[Reader])
async def banks(request: Request, ctx: Ctx) -> list[BankView]:
    """Every bank of the configuration (``banks:``): the members combined as the publisher does."""
    return [b for b in bank_views(ctx) if shown(request, b.pack)]


def pack_views(request: Request, ctx: Ctx) -> list[PackView]:
    """Every pack the asker may read, at a glance, in the configuration's order."""
    now = utcnow()
    return [pack_view(ctx.store, p, now) for p in ctx.store.packs() if shown(request, p)]


class StatusPage(BaseModel):
    """What the Status page shows first, in one answer; the changes come by api/events."""

    packs: list[PackView] = Field(description="every pack, in the configuration's order")
    banks: list[BankView] = Field(description="every bank, in the configuration's order")
    sky: Sky
    layouts: dict[str, Literal["daly", "jk"]] = Field(description="protocol -> its card layout")
    labels: dict[str, str] = Field(description="protocol -> its display name (registry label)")
    order: list[str] = Field(
        description="configured pack ids, then bank ids: where a pack heard later is placed"
    )


@router.get("/status", dependencies=[Reader])
async def status_page(request: Request, ctx: Ctx) -> StatusPage:
    """The Status page's first paint at once (a slow phone link pays one round trip, not four)."""
    return StatusPage(
        packs=pack_views(request, ctx),
        banks=[b for b in bank_views(ctx) if shown(request, b.pack)],
        sky=sky(ctx.settings, ctx.weather, utcnow()),
        layouts={i.name: i.layout for i in infos()},
        labels={i.name: i.label for i in infos()},
        order=[p for p in ctx.store.order if shown(request, p)],
    )


@router.get("/sky", dependencies=[Reader])
async def sky_now(ctx: Ctx) -> Sky:
    """Sunrise and sunset today at the configured coordinates; the forecast when at hand."""
    return sky(ctx.settings, ctx.weather, utcnow())


def _luminance(colour: str) -> float:
    """WCAG 2 relative luminance of #rrggbb."""
    channels = [int(colour[i : i + 2], 16) / 255 for i in (1, 3, 5)]
    r, g, b = (c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels)
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def contrast(a: str, b: str) -> float:
    """WCAG 2 contrast ratio of two #rrggbb colours (1 to 21)."""
    hi, lo = sorted((_luminance(a), _luminance(b)), reverse=True)
    return (hi + 0.05) / (lo + 0.05)


ON_LIGHT, ON_DARK = "#ffffff", "#0f1216"  # text on an accent: white, or the dark theme's background


def on_accent(accent: str) -> str:
    """The text colour that reads best on ``accent`` (buttons, the current page, chosen tabs)."""
    return max((ON_LIGHT, ON_DARK), key=lambda text: contrast(text, accent))


def branding_css(accent: str | None, accent_dark: str | None) -> str:
    """CSS that overrides the accent colours of style.css (values checked as #rrggbb).

    Each comes with the text colour that reads on it (``on_accent``).
    """

    def colours(value: str) -> str:
        return f"--accent: {value}; --on-accent: {on_accent(value)};"

    out = []
    if accent:
        out.append(f":root {{ {colours(accent)} }}")
    if accent_dark or accent:
        dark = colours(accent_dark or accent or "")
        out.append(
            '@media (prefers-color-scheme: dark) { :root:not([data-theme="light"]) '
            f"{{ {dark} }} }}"
        )
        out.append(f':root[data-theme="dark"] {{ {dark} }}')
        if accent:
            out.append(f':root[data-theme="light"] {{ {colours(accent)} }}')
    return "\n".join(out) + "\n"


@router.get(
    "/branding.css", response_class=Response, responses={200: {"content": {"text/css": {}}}}
)
async def branding(ctx: Ctx) -> Response:
    """The configured accent colours as CSS (empty without any); public like the title."""
    api = ctx.settings.api
    return Response(branding_css(api.accent, api.accent_dark), media_type="text/css")


@router.get("/branding/logo", response_class=FileResponse, responses={404: {}})
async def logo(ctx: Ctx) -> FileResponse:
    """The configured logo (api.logo); public like the title."""
    path = ctx.settings.api.logo
    if path is None or not path.is_file():
        raise HTTPException(status_code=404, detail="no logo is configured or the file is missing")
    return FileResponse(
        path,
        media_type=LOGO_TYPES[path.suffix.lower()],
        headers={"Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'"},
    )
