"""No service imports another service's package or depends on one in its pyproject.toml.

What two services share lives in ``packages/``; what one asks of another goes over the backbone.
Packages depend on no service at all. Parsed from the sources (``ast``) and the pyproject files,
so a lazy import inside a function counts too.
"""

from __future__ import annotations

import ast
import re
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SERVICES = sorted(p.parent for p in ROOT.glob("services/*/pyproject.toml"))
PACKAGES = sorted(p.parent for p in ROOT.glob("packages/*/pyproject.toml"))


def project_name(folder: Path) -> str:
    """The distribution name, ``bmsgate-<x>``."""
    return str(tomllib.loads((folder / "pyproject.toml").read_text())["project"]["name"])


def module(folder: Path) -> str:
    """The import name, ``bmsgate_<x>``."""
    return project_name(folder).replace("-", "_")


SERVICE_MODULES = {module(s): s for s in SERVICES}
SERVICE_PROJECTS = {project_name(s) for s in SERVICES}


def imported(folder: Path, root: Path = ROOT) -> set[tuple[str, str]]:
    """(top-level module, file:line) of every import in the folder's ``src``."""
    out = set()
    for path in (folder / "src").rglob("*.py"):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            where = f"{path.relative_to(root)}:{getattr(node, 'lineno', 0)}"
            out |= {(name.split(".")[0], where) for name in names}
    return out


def dependencies(folder: Path) -> set[str]:
    """The distribution names in the folder's pyproject ``dependencies``."""
    data = tomllib.loads((folder / "pyproject.toml").read_text())
    return {re.split(r"[\s\[<>=!~;]", d, maxsplit=1)[0] for d in data["project"]["dependencies"]}


def test_the_layout_is_found() -> None:
    assert {"bmsgate_api", "bmsgate_reader", "bmsgate_history"} <= set(SERVICE_MODULES)
    assert {"bmsgate_common", "bmsgate_bms"} <= {module(p) for p in PACKAGES}


@pytest.mark.parametrize("folder", SERVICES + PACKAGES, ids=lambda p: p.name)
def test_no_import_of_another_service(folder: Path) -> None:
    own = module(folder)
    wrong = sorted(
        f"{where} imports {name}"
        for name, where in imported(folder)
        if name in SERVICE_MODULES and name != own
    )
    assert wrong == [], "share it through a package or ask over the backbone:\n" + "\n".join(wrong)


@pytest.mark.parametrize("folder", SERVICES + PACKAGES, ids=lambda p: p.name)
def test_no_dependency_on_another_service(folder: Path) -> None:
    wrong = (dependencies(folder) & SERVICE_PROJECTS) - {project_name(folder)}
    assert wrong == set(), f"{folder.relative_to(ROOT)}/pyproject.toml depends on {sorted(wrong)}"


def test_the_check_sees_a_service_import(tmp_path: Path) -> None:
    # the check itself: a lazy import of another service inside a function is found
    src = tmp_path / "src" / "bmsgate_x"
    src.mkdir(parents=True)
    (src / "m.py").write_text("def f():\n    from bmsgate_history.export import day_csv\n")
    assert ("bmsgate_history", "src/bmsgate_x/m.py:2") in imported(tmp_path, tmp_path)
