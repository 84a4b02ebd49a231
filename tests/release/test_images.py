"""The images' build definition, checked statically (no Docker engine needed): every image for
amd64 and arm64, labelled with the packages' version."""

from __future__ import annotations

import json
import re
import subprocess
import sys

from bmsgate_common.version import VERSION
from tests.deploy.conftest import ROOT, compose

BAKE = json.loads((ROOT / "docker-bake.json").read_text())
DOCKERFILE = (ROOT / "Dockerfile").read_text()
LINES = [
    ln.strip()
    for ln in re.sub(r"\\\n", " ", DOCKERFILE).splitlines()
    if ln.strip() and not ln.lstrip().startswith("#")
]
FINAL = LINES[max(i for i, ln in enumerate(LINES) if ln.startswith("FROM ")) :]
# base images whose registries publish linux/amd64 and linux/arm64 variants (docs/release.md)
MULTI_ARCH_BASES = ("python:", "node:", "ghcr.io/astral-sh/uv:")


def test_bake_builds_every_compose_image_for_amd64_and_arm64() -> None:
    targets = BAKE["target"]
    common = targets.pop("_common")
    assert common["platforms"] == ["linux/amd64", "linux/arm64"]
    assert common["dockerfile"] == "Dockerfile" and common["context"] == "."
    assert common["args"] == {"VERSION": "${VERSION}", "REVISION": "${REVISION}"}
    assert sorted(BAKE["group"]["default"]["targets"]) == sorted(targets)
    built = {
        svc["image"].split("/")[-1]: svc["build"]["args"]
        for svc in compose()["services"].values()
        if "build" in svc
    }
    assert set(built) == set(targets)
    for name, target in targets.items():
        assert target["inherits"] == ["_common"]
        assert target["args"] == built[name], name  # the same package and module as compose
        assert target["tags"] == [
            f"${{REGISTRY}}/{name}:${{VERSION}}",
            f"${{REGISTRY}}/{name}:latest",
        ]
    assert set(BAKE["variable"]) == {"VERSION", "REVISION", "REGISTRY"}


def test_no_stage_is_tied_to_one_architecture() -> None:
    for ln in LINES:
        if ln.startswith("FROM "):
            assert "--platform" not in ln, ln
            assert ln.split()[1].startswith(MULTI_ARCH_BASES), ln
    assert not re.search(r"x86_64|amd64|aarch64|arm64", " ".join(LINES))  # comments aside


def test_the_final_image_carries_oci_labels_and_its_install_kind() -> None:
    labels = " ".join(ln for ln in FINAL if ln.startswith("LABEL "))
    for key, value in (
        ("version", "${VERSION}"),
        ("revision", "${REVISION}"),
        ("title", "${PACKAGE}"),
        ("licenses", "MIT"),
    ):
        assert f'org.opencontainers.image.{key}="{value}"' in labels, key
    for arg in ("VERSION", "REVISION", "PACKAGE"):
        assert any(ln.startswith(f"ARG {arg}") for ln in FINAL), arg  # ARGs end at each FROM
    assert any("BMSGATE_INSTALL=container" in ln for ln in FINAL if ln.startswith("ENV "))


def version_check() -> str:
    """The build stage's RUN that compares the VERSION argument with the packages' version."""
    run = next(ln for ln in LINES if ln.startswith("RUN ") and "VERSION" in ln)
    return run.removeprefix("RUN ").replace("/app/.venv/bin/python", sys.executable)


def test_a_version_label_other_than_the_packages_fails_the_build() -> None:
    check = version_check()
    for given, code in ((VERSION, 0), ("unset", 0), ("9.9.9", 1)):
        done = subprocess.run(
            ["sh", "-c", check], env={"VERSION": given}, capture_output=True, text=True
        )
        assert done.returncode == code, (given, done.stderr)
    assert f"VERSION=9.9.9 but the packages are {VERSION}" in done.stderr
