"""docs/protocols/README.md's table is made from the registry; drift fails here.

Regenerate with ``uv run python scripts/protocols_table.py``.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

SCRIPT = Path(__file__).parents[1] / "scripts" / "protocols_table.py"


def _script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("protocols_table", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_protocol_table_matches_the_registry() -> None:
    script = _script()
    page = script.PAGE.read_text(encoding="utf-8")
    assert script.BEGIN in page and script.END in page
    assert page == script.updated(page), "run `uv run python scripts/protocols_table.py`"
