"""The only Apprise code: URL checks, per-message priority, masking, and the send itself."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable
from typing import Any, Final
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import apprise

from bmsgate_common.settings import NotifyPriority

from .events import Tone
from .policy import Notification

# how each service with a per-message priority spells ours; other URLs keep their own
PRIORITY_VALUES: Final[dict[str, dict[NotifyPriority, str]]] = {
    "pover": {"low": "moderate", "normal": "normal", "high": "high", "emergency": "emergency"},
    "psafer": {"low": "-1", "normal": "0", "high": "1", "emergency": "2"},
    "ntfy": {"low": "low", "normal": "default", "high": "high", "emergency": "max"},
    "gotify": {"low": "low", "normal": "normal", "high": "high", "emergency": "emergency"},
}
TONE_TYPES: Final[dict[Tone, apprise.NotifyType]] = {
    "info": apprise.NotifyType.INFO,
    "success": apprise.NotifyType.SUCCESS,
    "warning": apprise.NotifyType.WARNING,
    "failure": apprise.NotifyType.FAILURE,
}


def scheme(url: str) -> str:
    """The URL's scheme, lowercase, without a trailing 's' for the TLS variant."""
    name = url.split("://", 1)[0].lower()
    return name[:-1] if name.endswith("s") and name[:-1] in PRIORITY_VALUES else name


def mask(url: str) -> str:
    """The URL with everything but its scheme hidden: ``pover://****@****``."""
    head, sep, rest = url.partition("://")
    if not sep:
        return "****"
    return f"{head}://****@****" if "@" in rest.split("/", 1)[0] else f"{head}://****"


def secrets_of(url: str) -> list[str]:
    """The parts of a URL that may be secret (user, password, host, path and query values)."""
    _, _, rest = url.partition("://")
    return sorted({p for p in re.split(r"[/@:?&=#,]", rest) if len(p) >= 4}, key=len, reverse=True)


def check_url(url: str) -> str | None:
    """Why Apprise cannot use this URL, or None if it can (the URL itself is never echoed)."""
    if "://" not in url:
        return f"not an Apprise URL ({mask(url)}): it needs a scheme such as pover://"
    if apprise.Apprise.instantiate(url) is None:
        return f"Apprise does not accept {mask(url)} (unknown service or missing parts)"
    return None


def with_priority(url: str, priority: NotifyPriority) -> str:
    """The URL with our priority, for services that have one, unless the URL sets its own."""
    values = PRIORITY_VALUES.get(scheme(url))
    if values is None:
        return url
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    if any(k.lower() == "priority" for k, _ in query):
        return url
    query.append(("priority", values[priority]))
    return urlunsplit(parts._replace(query=urlencode(query)))


class SecretFilter(logging.Filter):
    """Masks the parts of target URLs in every log record (Apprise's own lines included)."""

    def __init__(self, urls: Iterable[str]) -> None:
        super().__init__()
        self.secrets = sorted({s for u in urls for s in secrets_of(u)}, key=len, reverse=True)

    def add(self, url: str) -> None:
        """Mask this URL's parts too (a URL tested before it is saved)."""
        self.take(secrets_of(url))

    def take(self, secrets: Iterable[str]) -> None:
        """Mask these strings too; the longest first, so a part inside another stays covered."""
        self.secrets = sorted({*self.secrets, *secrets}, key=len, reverse=True)

    def filter(self, record: logging.LogRecord) -> bool:
        """Rewrite the message with the secrets replaced by ****."""
        if not self.secrets:
            return True
        text = record.getMessage()
        masked = text
        for secret in self.secrets:
            masked = masked.replace(secret, "****")
        if masked != text:
            record.msg, record.args = masked, None
        return True


Tune = Callable[[Any], None]  # tests point a plugin at a local receiver (its notify_url)


class AppriseSender:
    """Sends messages to one Apprise URL; one plugin instance per priority, built on first use."""

    def __init__(self, url: str, tune: Tune | None = None) -> None:
        self._url = url
        self._tune = tune
        self._senders: dict[NotifyPriority, apprise.Apprise] = {}

    def _for(self, priority: NotifyPriority) -> apprise.Apprise:
        sender = self._senders.get(priority)
        if sender is None:
            plugin = apprise.Apprise.instantiate(with_priority(self._url, priority))
            if plugin is None:
                raise ValueError(f"Apprise does not accept {mask(self._url)}")
            if self._tune:
                self._tune(plugin)
            sender = self._senders[priority] = apprise.Apprise()
            sender.add(plugin)
        return sender

    async def send(self, message: Notification) -> bool:
        """Deliver; False when the service did not take it (Apprise never raises for that)."""
        result = await self._for(message.priority).async_notify(
            title=message.title, body=message.body, notify_type=TONE_TYPES[message.tone]
        )
        return bool(result)
