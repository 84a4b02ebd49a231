"""Child-process helpers shared by the supervisor and the private broker."""

from __future__ import annotations

import ctypes
import signal
import sys

PR_SET_PDEATHSIG = 1  # prctl option, <linux/prctl.h>


def die_with_parent() -> None:
    """In a child before exec: get SIGTERM when the supervisor dies, even by SIGKILL (Linux).

    Without it, services in their own session would outlive a killed supervisor and keep
    polling a serial port that may by then belong to someone else.
    """
    if sys.platform == "linux":
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
