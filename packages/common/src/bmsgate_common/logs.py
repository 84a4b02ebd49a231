"""Logging set-up shared by every service: one line per event, secrets never printed."""

from __future__ import annotations

import logging
import sys

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def setup_logging(level: str = "INFO", service: str | None = None) -> None:
    """Log to stderr (journald and docker collect it); quiet the chatty libraries."""
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
