"""A missing tool or reference file skips a test on a developer's machine and fails it in CI."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.needs import in_ci, missing, require

ROOT = Path(__file__).parents[1]


@pytest.mark.parametrize(
    ("value", "ci"), [("true", True), ("1", True), ("", False), ("false", False), ("0", False)]
)
def test_ci_is_recognised(monkeypatch: pytest.MonkeyPatch, value: str, ci: bool) -> None:
    monkeypatch.setenv("CI", value)
    assert in_ci() is ci


def test_missing_fails_in_ci_and_skips_elsewhere(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI must not skip"):
        missing("frobnicator is not installed")
    monkeypatch.delenv("CI")
    with pytest.raises(pytest.skip.Exception):
        require(None, "frobnicator is not installed")
    require("/usr/bin/true", "never raised: found")


def test_needs_mark_fails_a_test_in_ci(tmp_path: Path) -> None:
    # a test file inside the repository, so that the root conftest's hook applies
    probe = ROOT / "tests" / f"test_zz_needs_probe_{tmp_path.name}.py"
    probe.write_text(
        "from tests.support.needs import needs\n\n"
        "@needs(None, 'frobnicator is not installed')\n"
        "def test_it() -> None:\n    pass\n"
    )
    try:
        outcomes = {}
        for ci in ("true", ""):
            # fmt: off
            run = subprocess.run(
                [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(probe)],
                cwd=ROOT, capture_output=True, text=True, env={"PATH": "/usr/bin:/bin", "CI": ci},
                timeout=60, check=False,
            )
            # fmt: on
            outcomes[ci] = run.stdout.strip().splitlines()[-1]
    finally:
        probe.unlink()
    assert "1 error" in outcomes["true"]  # failed at setup: the run fails
    assert "1 skipped" in outcomes[""]
