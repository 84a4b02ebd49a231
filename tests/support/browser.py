"""The web UI tests' browser: Debian's chromium driven by playwright, and where screenshots go."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from http import HTTPStatus
from pathlib import Path
from typing import Any

from bmsgate_api.app import STATIC
from tests.support.procs import (
    Mosquitto,
    Proc,
    api_config,
    start_service,
    start_simulator,
    wait_for_api,
)

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(__file__).parents[2] / "build" / "test-artifacts" / "web"
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def shot(page: Any, name: str) -> None:
    """A full-page screenshot ``build/test-artifacts/web/<name>.png``, scrolled to the top first
    (the fixed header would stand in the middle of the shot)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.evaluate("window.scrollTo(0, 0)")
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


# [px] (width, height) of the windows a page is checked in: a laptop, and a phone 390 px wide
# (iPhone 12 to 15); and the browser's own window (conftest's browser_context)
LAPTOP = (1366, 800)
PHONE = (390, 844)
SIZES: tuple[tuple[int, int], ...] = (LAPTOP, PHONE)
WINDOW = (1280, 900)
# the first few elements that reach past the window's right edge, for a failure's message
WIDEST = """[...document.querySelectorAll('body *')].filter(e => e.getBoundingClientRect().right
  + window.scrollX > document.documentElement.clientWidth + 1).slice(0, 5).map(e => e.tagName
  + '.' + e.className + '#' + (e.id || '') + ' ' + Math.round(e.getBoundingClientRect().right))"""


def fits(page: Any, *where: object) -> None:
    """Assert that the page is no wider than its window (no sideways scrolling).

    ``where`` goes into the failure's message, with the window's width and the elements that
    stick out.
    """
    wider = page.evaluate(
        "document.documentElement.scrollWidth - document.documentElement.clientWidth"
    )
    width = page.viewport_size["width"]
    assert wider <= 0, (*where, f"{wider} px wider than {width} px", page.evaluate(WIDEST))


def resize(page: Any, size: tuple[int, int]) -> None:
    """Set the window of ``page`` to ``size`` (width, height [px]: ``LAPTOP``, ``PHONE``, ...)."""
    page.set_viewport_size({"width": size[0], "height": size[1]})


def at_sizes(
    page: Any,
    name: str,
    show: Callable[[], object] = lambda: None,
    sizes: Sequence[tuple[int, int]] = SIZES,
) -> None:
    """Walk ``page`` at each window size of ``sizes`` (width, height [px]; a laptop, then a phone).

    At each size: ``show()`` opens or reveals what is to be seen (it may click, reload, expect
    and call ``fits`` itself, e.g. once per tab), then the page must fit its window (``fits``),
    then a screenshot ``<name>-<width>.png`` (``shot``). The page stays at the last size.
    ``at_sizes(page, "60-energy")`` checks and shoots the page as it is.
    """
    for size in sizes:
        resize(page, size)
        show()
        fits(page, name)
        shot(page, f"{name}-{size[0]}")


def on_a_dark_phone(page: Any, name: str) -> None:
    """The page as it is, in the dark theme on a phone: it must fit (``fits``), and a screenshot
    ``<name>.png``; then light again in the browser's own window."""
    page.emulate_media(color_scheme="dark")
    resize(page, PHONE)
    fits(page, name)
    shot(page, name)
    page.emulate_media(color_scheme="light")
    resize(page, WINDOW)


# the web UI's pages that no link of its navigation leads to: the login (the first visit's too)
# and the setup wizard
UNLINKED_PAGES = ("login.html", "setup.html")


def web_pages(page: Any) -> list[str]:
    """Every page of the web UI: those its navigation links to, in the order ``page`` (showing the
    header, the owner logged in) renders them, then ``UNLINKED_PAGES``.

    Fails when the web UI's files have a page that is neither linked nor unlinked, so a new page
    is linked or named here, and every test that walks the pages reaches it.
    """
    page.wait_for_selector("nav#site-nav a", state="attached")
    linked = page.eval_on_selector_all(
        "nav#site-nav a", "links => links.map(a => a.getAttribute('href'))"
    )
    pages = [*linked, *UNLINKED_PAGES]
    files = sorted(path.name for path in STATIC.glob("*.html"))
    assert sorted(pages) == files, f"navigation {linked} + {UNLINKED_PAGES} is not {files}"
    return pages


class Settled:
    """Counts the page's requests in flight, event streams aside (they stay open)."""

    def __init__(self, page: Any) -> None:
        self.open: set[Any] = set()
        self.last = time.monotonic()
        page.on("request", self._start)
        page.on("requestfinished", self._end)
        page.on("requestfailed", self._end)

    def _start(self, request: Any) -> None:
        if request.resource_type != "eventsource":
            self.open.add(request)
            self.last = time.monotonic()

    def _end(self, request: Any) -> None:
        self.open.discard(request)
        self.last = time.monotonic()

    def wait(self, page: Any, quiet: float = 0.4, timeout: float = 20) -> None:
        """Until no request has been open for ``quiet`` seconds (the page has drawn its data)."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if not self.open and time.monotonic() - self.last >= quiet:
                return
            page.wait_for_timeout(100)
        raise AssertionError(f"{page.url}: requests still open after {timeout} s: {self.open}")


def watch(page: Any) -> list[str]:
    """Collect console errors, page errors and HTTP errors of ``page``; accept its dialogs."""
    problems: list[str] = []
    page.on(
        "console",
        lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None,
    )
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    page.on(
        "response",
        lambda r: problems.append(f"HTTP {r.status} {r.url}") if r.status >= 400 else None,
    )
    page.on("dialog", lambda d: d.accept())
    page.set_default_timeout(20_000)
    return problems


def refusal(status: int, url: str) -> list[str]:
    """What ``watch`` collects when a request to ``url`` is answered ``status`` (a refusal the
    test makes on purpose): the response's line and the console's."""
    console = "console error: Failed to load resource: the server responded with a status of"
    return [f"HTTP {status} {url}", f"{console} {status} ({HTTPStatus(status).phrase})"]


# the site's time zone where a test shows times: UTC+14, never the browser's or the machine's
SITE_ZONE = "Pacific/Kiritimati"

# two JK-PB boards on one bus (start_stack's ``bus``), and the bank they make
TWO_JK_PB: dict[str, Any] = {
    "protocol": "jk_pb",
    "poll_interval": 0.5,
    "packs": [
        {"id": "east", "name": "East", "address": 1},
        {"id": "west", "name": "West", "address": 2},
    ],
}
HOUSE_BANK: dict[str, Any] = {"id": "house", "name": "House bank", "packs": ["east", "west"]}


def start_stack(
    tmp_path: Path,
    mosquitto: Mosquitto,
    procs: list[Proc],
    simulator: Sequence[str],
    bus: Mapping[str, Any],
    *,
    services: Sequence[str] = ("reader", "api"),
    settings: Mapping[str, Any] | None = None,
    api: Mapping[str, Any] | None = None,
    timeout: float = 60,  # a loaded 2-core CI machine can take 20 s and more to start an API
) -> str:
    """A simulator on a pty (``simulator``: its make and arguments) read as ``bus``, and
    ``services`` as processes on ``mosquitto`` with one configuration (``tmp_path``/config.yaml:
    ``settings`` added, ``api`` added to the API's loopback port and ``public_read: never``).
    Returns the API's base URL once it reaches the backbone; ``procs`` stops them all."""
    sim, port = start_simulator(tmp_path, *simulator)
    procs.append(sim)
    buses = [{"port": port, **bus}]
    config, base = api_config(tmp_path, mosquitto.port, api, **{"buses": buses, **(settings or {})})
    for name in services:
        procs.append(start_service(tmp_path, name, config))
    wait_for_api(base, timeout)
    return base


def set_password(page: Any, password: str) -> None:
    """Answer the first visit's form: the password is set and the browser is logged in."""
    page.fill("#password", password)
    page.fill("#again", password)
    page.click("#submit")


def first_visit(page: Any, base: str, password: str, then: str | None = None) -> None:
    """Open the web UI for the first time and set its password (which logs in); with ``then``,
    once the Status page has opened, go to the page ``then`` (e.g. "settings.html#outputs")."""
    page.goto(f"{base}/")
    set_password(page, password)
    if then is not None:
        page.wait_for_url("**/index.html")  # logged in
        page.goto(f"{base}/{then}")


# one simulated DALY classic pack on its own bus (start_stack's ``bus``)
GARAGE_BUS: dict[str, Any] = {
    "protocol": "daly_classic",
    "poll_interval": 0.5,
    "packs": [{"id": "garage", "name": "Garage"}],
}


def start_garage_stack(
    tmp_path: Path,
    mosquitto: Mosquitto,
    procs: list[Proc],
    *,
    bus: Mapping[str, Any] | None = None,
    services: Sequence[str] = ("reader", "history", "api"),
    settings: Mapping[str, Any] | None = None,
    api: Mapping[str, Any] | None = None,
) -> str:
    """``GARAGE_BUS`` (``bus`` added: more of the bus's settings) on a simulator whose clock runs
    30 times as fast, read by ``services`` as processes, history's archive committing every
    0.2 s; ``settings`` and ``api`` as ``start_stack`` takes them. Returns the API's base URL."""
    return start_stack(
        tmp_path,
        mosquitto,
        procs,
        ["daly_classic", "--speed", "30"],
        {**GARAGE_BUS, **(bus or {})},
        services=services,
        settings={"history": {"archive": {"commit_interval": 0.2}}, **(settings or {})},
        api=api,
    )


def start_house_stack(
    tmp_path: Path,
    mosquitto: Mosquitto,
    procs: list[Proc],
    *,
    services: Sequence[str] = ("reader", "api"),
    settings: Mapping[str, Any] | None = None,
    api: Mapping[str, Any] | None = None,
    timeout: float = 60,
) -> str:
    """``TWO_JK_PB`` on a simulator of two boards whose clock runs 30 times as fast, configured
    as ``HOUSE_BANK``, read by ``services`` as processes; ``settings``, ``api`` and ``timeout``
    as ``start_stack`` takes them. Returns the API's base URL."""
    return start_stack(
        tmp_path,
        mosquitto,
        procs,
        ["jk_pb", "--boards", "2", "--speed", "30"],
        TWO_JK_PB,
        services=services,
        settings={"banks": [HOUSE_BANK], **(settings or {})},
        api=api,
        timeout=timeout,
    )


def start_bank_stack(tmp_path: Path, mosquitto: Mosquitto, procs: list[Proc]) -> str:
    """``start_house_stack`` with control on and a publisher target (the exports have one to
    use), read by a reader, with history and API as processes: every page has something to
    show. Returns the API's base URL."""
    settings = {
        "control": {"enabled": True},
        "publisher": {"targets": [{"name": "home", "homeassistant": {"enabled": True}}]},
        "history": {"archive": {"commit_interval": 0.2}},
    }
    return start_house_stack(
        tmp_path, mosquitto, procs, services=("reader", "history", "api"), settings=settings
    )
