"""The benches' broker: a plain Mosquitto that anyone on loopback may use, as in the tests.

``bmsgate run``'s private broker wants a user and password per service; a bench that starts the
services itself gives them none, so it uses this one (tests.support.procs.Mosquitto).
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
from tests.support.procs import Mosquitto  # noqa: E402


def local_broker(workdir: Path) -> Mosquitto:
    """A Mosquitto for ``workdir`` (made if missing), not started yet."""
    workdir.mkdir(parents=True, exist_ok=True)
    return Mosquitto(workdir)
