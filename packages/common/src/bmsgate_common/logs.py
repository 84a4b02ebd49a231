"""Logging set-up shared by every service: one line per event, secrets never printed."""

from __future__ import annotations

import logging
import sys
from contextvars import ContextVar

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# the service whose code runs, where several share a process (bmsgate run): its log lines
# name it as a process of its own would; every task and worker thread it starts inherits it
SERVICE: ContextVar[str | None] = ContextVar("bmsgate_service", default=None)


class _ServiceName(logging.Filter):
    def __init__(self, default: str) -> None:
        super().__init__()
        self.default = default

    def filter(self, record: logging.LogRecord) -> bool:
        record.service = SERVICE.get() or self.default
        return True


def setup_logging(level: str = "INFO", service: str | None = None, *, shared: bool = False) -> None:
    """Log to stderr (journald and docker collect it); quiet the chatty libraries.

    ``shared``: services run in this process, each line names the one it comes from (SERVICE,
    ``service`` for lines of none). A service in such a process only sets the level.
    """
    if SERVICE.get() is not None:  # hosted: the process's handler is set up already
        logging.getLogger().setLevel(level)
    elif shared:
        handler = logging.StreamHandler(sys.stderr)
        handler.addFilter(_ServiceName(service or "services"))
        fmt = "%(asctime)s %(levelname)s [%(service)s] %(name)s: %(message)s"
        handler.setFormatter(logging.Formatter(fmt))
        logging.basicConfig(level=level, handlers=[handler], force=True)
    else:
        fmt = (
            FORMAT
            if service is None
            else f"%(asctime)s %(levelname)s [{service}] %(name)s: %(message)s"
        )
        logging.basicConfig(level=level, format=fmt, stream=sys.stderr, force=True)
    for noisy in ("faststream", "uvicorn.access"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLogger().level))
    # zmqtt logs every reconnect attempt with a traceback; Backbone reports outages in one line
    logging.getLogger("zmqtt").setLevel(logging.ERROR)
