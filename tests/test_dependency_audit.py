"""Known vulnerabilities in the locked dependencies: pip-audit over uv.lock, npm audit over each npm lockfile.

Both need a vulnerability database on the network (PyPI's per-version JSON API, else OSV, for
pip-audit; the npm registry's advisory endpoint for npm audit). When none can be reached the test
is skipped with the exact reason (shown by pytest -ra), in CI too: an unreachable database is not a
finding, and a machine behind a package mirror cannot audit. ``BMSGATE_AUDIT=required`` makes that
a failure instead, for a CI that has the internet. A reachable database with a finding always
fails. docs/security.md says what the development machines could reach.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.support.needs import require

ROOT = Path(__file__).parents[1]
STATIC = ROOT / "services" / "api" / "src" / "bmsgate_api" / "static"
PYPI = "https://pypi.org/pypi/{name}/{version}/json"  # what pip-audit's PyPI service asks
OSV = "https://api.osv.dev/v1/query"  # what pip-audit's OSV service asks


def unreachable(why: str) -> None:
    """Stop: the audit could not run. A failure only where the audit is required."""
    if os.environ.get("BMSGATE_AUDIT", "").strip().lower() == "required":
        pytest.fail(f"{why} (BMSGATE_AUDIT=required)")
    pytest.skip(why)


def uv() -> str:
    found = shutil.which("uv") or (ROOT / ".tools" / "bin" / "uv")
    require(Path(found).exists(), "uv (scripts/setup.sh installs it in .tools/)")
    return str(found)


def locked_requirements(tmp_path: Path) -> Path:
    """uv.lock as a requirements file: every third-party package of every member, pinned."""
    out = tmp_path / "requirements.txt"
    # fmt: off
    subprocess.run(
        [uv(), "export", "--frozen", "--no-hashes", "--all-packages", "--no-emit-workspace",
         "--quiet", "-o", str(out)],
        cwd=ROOT, check=True, capture_output=True, timeout=120,
    )
    # fmt: on
    return out


def pins(requirements: Path) -> list[tuple[str, str]]:
    found = []
    for line in requirements.read_text().splitlines():
        name, sep, version = line.split(";")[0].strip().partition("==")
        if sep and not line.startswith("#"):
            found.append((name, version.strip()))
    return found


def pypi_answers(name: str, version: str) -> str | None:
    """None when PyPI's per-version JSON (with its vulnerabilities) answers, else why not."""
    try:
        with urllib.request.urlopen(PYPI.format(name=name, version=version), timeout=15) as r:
            json.load(r)["vulnerabilities"]
    except (urllib.error.URLError, OSError, ValueError, KeyError) as err:
        return f"{PYPI.format(name=name, version=version)}: {err}"
    return None


def osv_answers(name: str, version: str) -> str | None:
    """None when OSV answers a query for this pin, else why not."""
    query = {"package": {"name": name, "ecosystem": "PyPI"}, "version": version}
    request = urllib.request.Request(
        OSV, data=json.dumps(query).encode(), headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=15) as r:
            json.load(r)
    except (urllib.error.URLError, OSError, ValueError) as err:
        return f"{OSV}: {err}"
    return None


def test_python_dependencies_have_no_known_vulnerabilities(tmp_path: Path) -> None:
    requirements = locked_requirements(tmp_path)
    locked = pins(requirements)
    assert len(locked) > 50, requirements.read_text()[:500]
    service, why = "pypi", pypi_answers(*locked[0])
    if why:
        why_osv = osv_answers(*locked[0])
        if why_osv:
            unreachable(f"vulnerability databases unreachable, pip-audit not run: {why}; {why_osv}")
        service = "osv"
    # fmt: off
    done = subprocess.run(
        [sys.executable, "-m", "pip_audit", "-r", str(requirements), "--no-deps", "--disable-pip",
         "--strict", "--progress-spinner", "off", "--desc", "on",
         "--vulnerability-service", service],
        capture_output=True, text=True, timeout=600, check=False,
    )
    # fmt: on
    # --strict: a package the database does not answer for fails the audit instead of passing
    assert done.returncode == 0, done.stdout + done.stderr[-3000:]
    assert "No known vulnerabilities found" in done.stdout + done.stderr


# every npm lockfile of the repository: the web UI's (shipped; axe-core for the tests), the
# Grafana schema check's (tests only) and Lighthouse's (bench only); tests/test_dependency_audit.py
# fails when one is added and not listed here
NPM_LOCKS = {
    "web-ui": STATIC,
    "grafana-schema": ROOT / "tests" / "deploy" / "grafana_schema",
    "lighthouse-bench": ROOT / "bench" / "lighthouse",
}


def test_every_npm_lockfile_is_audited() -> None:
    found = subprocess.run(
        ["git", "ls-files", "*package-lock.json"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    ).stdout.split()
    listed = {
        str((folder / "package-lock.json").relative_to(ROOT)) for folder in NPM_LOCKS.values()
    }
    assert set(found) == listed, (
        f"add new npm lockfiles to NPM_LOCKS: {sorted(set(found) - listed)}"
    )


@pytest.mark.parametrize("folder", NPM_LOCKS.values(), ids=NPM_LOCKS.keys())
def test_npm_libraries_have_no_known_vulnerabilities(folder: Path) -> None:
    npm = shutil.which("npm")
    require(npm, "npm (Debian package npm)")
    # fmt: off
    done = subprocess.run(
        [str(npm), "audit", "--package-lock-only", "--json"],
        cwd=folder, capture_output=True, text=True, timeout=120, check=False,
    )
    # fmt: on
    try:
        report = json.loads(done.stdout)
    except ValueError:
        report = {}
    if "error" in report or "message" in report:  # npm could not ask the advisory endpoint
        reason = report.get("message") or report["error"].get("summary")
        unreachable(f"npm advisory database unreachable, npm audit not run: {reason}")
    counts = report.get("metadata", {}).get("vulnerabilities")
    assert counts is not None, done.stdout[-2000:] + done.stderr[-2000:]
    assert sum(counts.values()) == 0, json.dumps(report.get("vulnerabilities"), indent=1)[:4000]
