"""Golden files: output pinned byte for byte, rewritten only on purpose.

``BMSGATE_PIN=write pytest <test file>`` writes what the code gives now; commit that only for an
intended change. Otherwise the test compares with the file, entry by entry, so a failure names
the first entry that moved instead of printing two whole documents.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


def assert_pinned(
    got: list[Any] | dict[str, Any], golden: Path, *, indent: int | None = None
) -> None:
    """``got`` (JSON data: a list, or a dict of named parts) equals the golden file ``golden``.

    ``indent`` is how the file is written (None: one line), so a rewrite keeps its diff small.
    """
    got = json.loads(json.dumps(got))  # tuples become lists, keys strings: as the file reads back
    if os.environ.get("BMSGATE_PIN") == "write":
        text = json.dumps(got, indent=indent, ensure_ascii=False) + "\n"
        golden.write_text(text, encoding="utf-8")
    pinned = json.loads(golden.read_text(encoding="utf-8"))
    if isinstance(got, dict):
        assert got.keys() == pinned.keys()
        for key in got:
            assert got[key] == pinned[key], key
    else:
        assert len(got) == len(pinned)
        for index, (mine, theirs) in enumerate(zip(got, pinned, strict=True)):
            assert mine == theirs, index
