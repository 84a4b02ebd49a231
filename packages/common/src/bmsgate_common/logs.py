"""Logging set-up shared by every service: one line per event, secrets never printed."""

from __future__ import annotations

import logging
import sys
from collections import deque
from contextvars import ContextVar
from typing import Final

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


KEPT_LINES: Final = 500  # recent lines each service keeps for the web UI's System page
LINE_CHARS: Final = 1000  # a longer line is cut


class _Recent(logging.Handler):
    """Keeps each service's newest lines in memory (by SERVICE: several may share a process)."""

    def __init__(self) -> None:
        super().__init__()
        self.lines: dict[str | None, deque[str]] = {}

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record)[:LINE_CHARS]
        except Exception:
            self.handleError(record)
            return
        key = SERVICE.get()
        kept = self.lines.get(key)
        if kept is None:
            kept = self.lines[key] = deque(maxlen=KEPT_LINES)
        kept.append(line)


_RECENT = _Recent()


def recent_lines(count: int = KEPT_LINES) -> list[str]:
    """The newest ``count`` log lines of the service running here (this thread's), oldest first."""
    kept = _RECENT.lines.get(SERVICE.get(), ())
    return list(kept)[-count:] if count > 0 else []


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
        _RECENT.addFilter(_ServiceName(service or "services"))
        _RECENT.setFormatter(logging.Formatter(fmt))
        logging.basicConfig(level=level, handlers=[handler, _RECENT], force=True)
    else:
        fmt = (
            FORMAT
            if service is None
            else f"%(asctime)s %(levelname)s [{service}] %(name)s: %(message)s"
        )
        logging.basicConfig(level=level, format=fmt, stream=sys.stderr, force=True)
        _RECENT.setFormatter(logging.Formatter(fmt))
        logging.getLogger().addHandler(_RECENT)
    logging.getLogger("uvicorn.access").setLevel(max(logging.WARNING, logging.getLogger().level))
