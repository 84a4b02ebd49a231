"""Build hook: the web UI's chart library (npm, not in git) must be in the wheel.

A wheel built without ``npm ci`` having run would install a web UI without charts and nobody
would notice until a page is opened. This hook runs ``npm ci`` into the static folder when the
library is missing and npm is at hand, and otherwise stops the build with one line saying so.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

from hatchling.builders.hooks.plugin.interface import BuildHookInterface

STATIC = Path("src/bmsgate_api/static")
LIBRARY = STATIC / "node_modules" / "uplot" / "dist" / "uPlot.iife.min.js"


class ChartLibraryHook(BuildHookInterface):  # type: ignore[type-arg]
    """Make sure uPlot is under static/node_modules before the wheel is assembled."""

    PLUGIN_NAME = "custom"

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        """Fetch the library from the npm lockfile if it is missing."""
        if self.target_name != "wheel":
            return
        root = Path(self.root)
        if (root / LIBRARY).is_file():
            return
        npm = shutil.which("npm")
        if npm is None:
            raise RuntimeError(
                f"bmsgate-api: {LIBRARY} is missing and npm is not installed; run "
                "`npm ci --prefix services/api/src/bmsgate_api/static` (scripts/setup.sh does)"
            )
        subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund", "--omit=dev", "--prefix", str(root / STATIC)],
            check=True,
        )
        if not (root / LIBRARY).is_file():
            raise RuntimeError(f"bmsgate-api: npm ci did not provide {LIBRARY}")
