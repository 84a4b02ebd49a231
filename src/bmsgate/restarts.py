"""The restart rules of ``bmsgate run``'s supervisors, with neither asyncio nor pydantic.

Both supervisors use them: run.py's (every service, an event loop) and edge.py's (only readers,
a small process without the settings model; docs/performance.md). A child that ended is looked
at by ``ended``; the configuration file by ``file_signature``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Final

from bmsgate_common.exits import RESTART_EXIT, USER_ERROR

log = logging.getLogger("bmsgate.run")

STOP_TIMEOUT: Final = 10.0  # [s] a child gets to stop after SIGTERM before it is killed
TICK: Final = 1.0  # [s] between looks at the children and the configuration file


def restart_delay(last: float, lived: float) -> float:
    """How long to wait before starting again what ran ``lived`` seconds and then ended [s].

    A run of more than a minute starts again after 1 s; a quicker end doubles the last wait
    (``last``), up to a minute, so a crash loop costs little. Children and the private broker.
    """
    return 1.0 if lived > 60 else min(60.0, max(last, 0.5) * 2)


def ended(name: str, code: int, lived: float, backoff: float) -> float | None:
    """The wait before child ``name`` starts again after it exited with ``code`` [s].

    None: it stays stopped until its configuration changes (USER_ERROR, exit code 2: a problem
    only the user can fix; restarting would only repeat the message). RESTART_EXIT, a restart
    asked for over the backbone, starts it again at once; any other end after restart_delay.
    """
    if code == USER_ERROR:
        log.error("%s stopped (see its message above); not restarting", name)
        return None
    if code == RESTART_EXIT:
        log.info("%s restarting on request", name)
        return 0.0
    wait = restart_delay(backoff, lived)
    log.warning("%s exited with code %s; restarting in %.0f s", name, code, wait)
    return wait


def file_signature(path: Path | None) -> tuple[int, int, int] | None:
    """Changes when the file is written or replaced; None while it does not exist."""
    if path is None:
        return None
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino)
