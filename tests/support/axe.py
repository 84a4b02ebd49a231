"""axe-core in the browser tests: the web UI's own copy (a dev dependency of its npm lockfile;
scripts/setup.sh test runs npm ci) and a check of a page as it is now."""

from __future__ import annotations

from typing import Any

from bmsgate_api.app import STATIC
from tests.support.browser import fits

AXE = STATIC / "node_modules" / "axe-core"
TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]  # WCAG 2.0 and 2.1, A and AA


def axe_source() -> str:
    """axe-core's script, to evaluate in a page (``check`` does)."""
    path = AXE / "axe.min.js"
    assert path.is_file(), f"{path}: run scripts/setup.sh test (npm ci)"
    return path.read_text()


def check(page: Any, axe: str, where: str) -> list[str]:
    """axe-core's violations and any horizontal overflow of the page as it is now; ``axe`` is
    ``axe_source()``, ``where`` begins each line found."""
    found = []
    if not page.evaluate("() => typeof axe === 'object'"):
        page.evaluate(axe)  # evaluated by the browser's debugger: the page's CSP does not apply
    result = page.evaluate(
        "async (tags) => (await axe.run(document, { runOnly: { type: 'tag', values: tags },"
        " resultTypes: ['violations'] })).violations.map(v => ({ id: v.id, help: v.help,"
        " nodes: v.nodes.slice(0, 4).map(n => n.target.join(' ') + ': '"
        " + (n.failureSummary || '').split('\\n')[1].trim().slice(0, 160)) }))",
        TAGS,
    )
    for violation in result:
        nodes = "; ".join(violation["nodes"])
        found.append(f"{where}: axe {violation['id']} ({violation['help']}): {nodes}")
    try:
        fits(page, where)  # no sideways scrolling
    except AssertionError as wide:
        found.append(f"{where}: too wide: {wide}")
    return found
