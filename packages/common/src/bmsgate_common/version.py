"""bmsgate's version, read from the installed package metadata: the one place it is written.

Every bmsgate distribution (bmsgate and each bmsgate-* package) carries the same version
(docs/release.md; a test checks the pyproject files agree). bmsgate-common is in every install
(each service and the CLI depend on it), so its metadata is what every process reports: in its
retained status, the web UI, Home Assistant's device info and ``bmsgate --version``.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import Final

DISTRIBUTION: Final = "bmsgate-common"
UNKNOWN: Final = "0+unknown"  # run from a source tree that was never installed


def installed_version() -> str:
    """The installed version of bmsgate (PEP 440 text), or UNKNOWN without package metadata."""
    try:
        return version(DISTRIBUTION)
    except PackageNotFoundError:
        return UNKNOWN


VERSION: Final = installed_version()
