"""Focused Dockerfile checks (no hadolint here): pinned bases, lockfile install, non-root, no secrets."""

from __future__ import annotations

import re

from tests.deploy.conftest import ROOT

DOCKERFILE = (ROOT / "Dockerfile").read_text()
# instructions with their continuation lines joined, comments dropped
LINES = [
    ln.strip()
    for ln in re.sub(r"\\\n", " ", DOCKERFILE).splitlines()
    if ln.strip() and not ln.lstrip().startswith("#")
]


def test_base_images_are_pinned_to_a_version_or_digest() -> None:
    bases = [ln.split()[1] for ln in LINES if ln.startswith("FROM ")]
    assert bases
    for image in bases:
        assert re.search(r":\d+\.\d+\.\d+[\w.-]*$|@sha256:[0-9a-f]{64}$", image), image


def test_dependencies_come_from_the_lockfile_without_dev_tools() -> None:
    syncs = [ln for ln in LINES if ln.startswith("RUN") and "uv sync" in ln]
    assert syncs
    for ln in syncs:
        assert "--frozen" in ln and "--no-dev" in ln and "--package" in ln
    assert not any(re.search(r"\bpip install\b", ln) for ln in LINES)


def test_the_final_image_runs_as_a_non_root_user() -> None:
    final = LINES[max(i for i, ln in enumerate(LINES) if ln.startswith("FROM ")) :]
    users = [ln.split()[1] for ln in final if ln.startswith("USER ")]
    assert users, "no USER in the final stage"
    assert users[-1].split(":")[0] not in ("0", "root")


def test_no_secrets_in_env_or_arg() -> None:
    for ln in LINES:
        if ln.startswith(("ENV ", "ARG ")):
            assert not re.search(r"PASSWORD|TOKEN|SECRET|_KEY\b", ln, re.I), ln


def test_the_build_context_leaves_out_env_files_and_data() -> None:
    rules = [
        r.strip()
        for r in (ROOT / ".dockerignore").read_text().splitlines()
        if r.strip() and not r.startswith("#")
    ]
    assert rules[0] == "*"  # everything out, then only what the build copies back in
    included = [r[1:] for r in rules if r.startswith("!")]
    assert not any(
        ".env" in r or (r.startswith(("data", "deploy/")) and r != "deploy/healthcheck.py")
        for r in included
    )
    for ln in LINES:
        if ln.startswith("COPY ") and "--from" not in ln:
            for source in ln.split()[1:-1]:
                assert any(source.rstrip("/") == r.rstrip("/") for r in included), source


def test_the_process_gets_signals_directly() -> None:
    cmd = next(ln for ln in reversed(LINES) if ln.startswith("CMD "))
    assert cmd.startswith('CMD ["') and "exec " in cmd  # exec form; the shell execs Python
