"""Logging set-up shared by every service: one line per event, secrets never printed.

Secrets are masked here and only here, as each line is formatted (its traceback included):
every service hands the secrets it holds to ``hold_secrets``, and a line is masked with those
of the service that logged it (SERVICE, which the tasks and worker threads of a service carry,
Apprise's included). Where several services share a process (``bmsgate run``), one service's
secrets therefore never blank out text in another's lines, and a line that no service is tied
to is masked with every secret held in the process. What counts as a secret: secret_parts.
"""

from __future__ import annotations

import logging
import re
import sys
import threading
from collections import deque
from collections.abc import Iterable
from contextvars import ContextVar
from typing import Final
from urllib.parse import unquote

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# the service whose code runs, where several share a process (bmsgate run): its log lines
# name it as a process of its own would, and are masked with its secrets. Its tasks inherit it,
# and so do worker threads that copy the context (asyncio.to_thread, Apprise's senders); a plain
# threading.Thread does not: its lines are tied to no service
SERVICE: ContextVar[str | None] = ContextVar("bmsgate_service", default=None)


class _ServiceName(logging.Filter):
    def __init__(self, default: str) -> None:
        super().__init__()
        self.default = default

    def filter(self, record: logging.LogRecord) -> bool:
        record.service = SERVICE.get() or self.default
        return True


MASK: Final = "****"
# [characters] a shorter value is never masked: it would blank out ordinary text (a 2-character
# token matches inside words and numbers); it is too short to be a secret worth the name anyway
MIN_SECRET: Final = 4
# [characters] a URL part this long that mixes letters and digits, or upper and lower case,
# looks generated (an API key, a token, a webhook's secret path), not like a word or a name
GENERATED: Final = 8
_URL_PART = re.compile(r"[/?&=#]")  # path segments, query names and values, fragment
_HELD: dict[str | None, frozenset[str]] = {}  # SERVICE -> the secrets it holds
_PATTERNS: dict[str | None, re.Pattern[str] | None] = {}  # made from _HELD on first use
_HOLDING = threading.Lock()


def _generated(part: str) -> bool:
    if len(part) < GENERATED:
        return False
    digits, letters = any(c.isdigit() for c in part), any(c.isalpha() for c in part)
    mixed = any(c.isupper() for c in part) and any(c.islower() for c in part)
    return (digits and letters) or mixed


def url_credentials(url: str) -> set[str]:
    """A URL's password, alone and as ``user:password`` (any URL: a secret or not)."""
    _, sep, rest = url.partition("://")
    userinfo, at, _ = re.split(r"[/?#]", rest, maxsplit=1)[0].rpartition("@")
    if not (sep and at):
        return set()
    _, colon, password = userinfo.partition(":")
    return {password, userinfo, unquote(password), unquote(userinfo)} if colon else set()


def secret_parts(value: str) -> set[str]:
    """What to mask of a secret ``value``: itself and, for a URL, the parts of it that are secret.

    Those are the password (alone and as ``user:password``) and every user name, path segment,
    query value or host-place value that looks generated (GENERATED: an API key, a token, a
    webhook's secret path, as written and percent-decoded). Host names (with a dot), addresses,
    ports, plain words (``webhook``, ``api``, a topic named in words) are not: masked, they
    would blank out the same text wherever it occurs, a client address in an audit line too.
    Values shorter than MIN_SECRET are never masked (hold_secrets drops them).
    """
    out = {value}
    head, sep, rest = value.partition("://")
    if not sep or not head:
        return out
    out |= url_credentials(value)
    authority, *tail = re.split(r"(?=[/?#])", rest, maxsplit=1)
    userinfo, _, hostport = authority.rpartition("@")
    parts = [*userinfo.split(":"), *_URL_PART.split("".join(tail))]
    if "." not in hostport and not hostport.startswith("["):  # not a host name or address
        parts += hostport.split(":")
    for part in parts:
        for text in {part, unquote(part)}:
            if _generated(text):
                out.add(text)
    return out


def hold_secrets(values: Iterable[str | None]) -> None:
    """Mask ``values`` in every line the calling service logs from now on (see secret_parts).

    The service is the caller's SERVICE (None in a process that is one service). Secrets are
    only ever added: a target removed by a restart stays masked in the lines that follow.
    """
    key = SERVICE.get()
    new = frozenset(v for v in values if v and len(v) >= MIN_SECRET)
    with _HOLDING:
        held = _HELD.get(key, frozenset())
        if not new <= held:
            _HELD[key] = held | new
            _PATTERNS.clear()


def _pattern(key: str | None) -> re.Pattern[str] | None:
    try:
        return _PATTERNS[key]
    except KeyError:
        pass
    with _HOLDING:  # a line tied to no service: any service of the process may have logged it
        held = (
            _HELD.get(key, frozenset()) if key is not None else frozenset().union(*_HELD.values())
        )
        # the longest first: a secret inside a longer one (a password in its URL) leaves no rest
        found = (
            re.compile("|".join(re.escape(s) for s in sorted(held, key=len, reverse=True)))
            if held
            else None
        )
        _PATTERNS[key] = found
    return found


def masked(line: str, service: str | None = None) -> str:
    """``line`` with the secrets that ``service`` holds replaced by MASK (None: every service's)."""
    pattern = _pattern(service)
    return line if pattern is None else pattern.sub(MASK, line)


class _Masking(logging.Formatter):
    """The one formatter of bmsgate's handlers: a line, traceback included, with secrets masked."""

    def format(self, record: logging.LogRecord) -> str:
        return masked(super().format(record), SERVICE.get())


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
        handler.setFormatter(_Masking(fmt))
        _RECENT.addFilter(_ServiceName(service or "services"))
        _RECENT.setFormatter(_Masking(fmt))
        logging.basicConfig(level=level, handlers=[handler, _RECENT], force=True)
    else:
        fmt = (
            FORMAT
            if service is None
            else f"%(asctime)s %(levelname)s [{service}] %(name)s: %(message)s"
        )
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(_Masking(fmt))
        _RECENT.setFormatter(_Masking(fmt))
        logging.basicConfig(level=level, handlers=[handler, _RECENT], force=True)
    logging.getLogger("uvicorn.access").setLevel(max(logging.WARNING, logging.getLogger().level))
