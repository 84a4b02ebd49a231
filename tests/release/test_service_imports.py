"""Each service image installs only its own package's locked closure (Dockerfile: `uv sync
--package`); every third-party module a service's code imports must be in that closure. The dev
environment holds every package, so a missing declaration shows only in the built image."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]
SERVICES = sorted(p.name for p in (ROOT / "services").iterdir() if (p / "pyproject.toml").exists())
_PINNED = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==", re.MULTILINE)


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _closure(package: str) -> set[str]:
    """Distribution names uv installs for ``package`` alone, from uv.lock."""
    out = subprocess.run(
        [
            str(ROOT / ".tools" / "bin" / "uv"),
            "export",
            "--package",
            package,
            "--frozen",
            "--no-dev",
            "--no-hashes",
            "--no-emit-workspace",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return {_norm(name) for name in _PINNED.findall(out)}


def _imported(src: Path) -> set[str]:
    """Top-level modules the code under ``src`` imports, wherever in a module (lazy ones too)."""
    names: set[str] = set()
    for path in src.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
    return names - set(sys.stdlib_module_names) - {"__future__"}


@pytest.mark.parametrize("service", SERVICES)
def test_every_third_party_import_is_in_the_service_closure(service: str) -> None:
    closure = _closure(f"bmsgate-{service}")
    providers = metadata.packages_distributions()
    missing = []
    for module in sorted(_imported(ROOT / "services" / service / "src")):
        if module.startswith("bmsgate"):
            continue  # workspace members: their own closures are checked as packages
        dists = {_norm(d) for d in providers.get(module, [module])}
        if not dists & closure:
            missing.append(f"{module} (from {', '.join(sorted(dists))})")
    assert not missing, f"bmsgate-{service} imports what it does not declare: {missing}"
