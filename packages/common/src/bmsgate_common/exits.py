"""Exit codes and reasons a supervisor and the services agree on, without any import.

Here rather than in service.py, which loads the settings model (pydantic): the lean supervisor
of ``bmsgate run --only reader`` and the lean reader read these too (docs/performance.md).
"""

from __future__ import annotations

from typing import Final

# exit code of every bmsgate command and service that stopped on a problem only the user can fix
# (configuration, input, a port it may not bind): a supervisor does not restart it in a loop
USER_ERROR: Final = 2  # as argparse's usage errors
# exit code of a service that stopped because a restart was asked for over the backbone:
# not 0, so a restart policy "on-failure" (systemd) starts it again like "unless-stopped" does
RESTART_EXIT: Final = 75  # EX_TEMPFAIL, sysexits.h
# the reason of a pack's ``offline`` availability when its reader stopped cleanly: consumers
# show the pack offline at once, and the notifier does not report a BMS that went silent
READER_STOPPED: Final = "reader stopped"
