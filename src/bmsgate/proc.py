"""Child-process helpers shared by the supervisor and the private broker."""

from __future__ import annotations

import contextlib
import ctypes
import signal
import sys

PR_SET_PDEATHSIG = 1  # prctl option, <linux/prctl.h>
PR_SET_NAME = 15  # prctl option, <linux/prctl.h>: the name ps and top show (15 bytes)


def die_with_parent() -> None:
    """In a child before exec: get SIGTERM when the supervisor dies, even by SIGKILL (Linux).

    Without it, services in their own session would outlive a killed supervisor and keep
    polling a serial port that may by then belong to someone else.
    """
    if sys.platform == "linux":
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def set_name(name: bytes) -> None:
    """Name this process (or thread) as ps, top and ``ps -L`` show it (Linux)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_NAME, ctypes.c_char_p(name[:15]))
