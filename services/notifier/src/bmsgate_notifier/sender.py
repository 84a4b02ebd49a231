"""The only Apprise code: URL checks, per-message priority, secret parts, and the send itself."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, Final
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

import apprise

from bmsgate_common.logs import secret_parts
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
_PARTS: Final = re.compile(r"[/@:?&=#,]")  # how a URL is cut into parts to compare
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


def secrets_of(url: str) -> set[str]:
    """What of a target URL to mask in the notifier's log lines (bmsgate_common.logs).

    The parts common to every URL (logs.secret_parts: password, generated-looking keys and
    paths, never a host name), and those Apprise itself hides when it prints the URL: each of
    its plugins marks which of its parts are private (Pushover's user key and token, Discord's
    and Slack's webhook tokens, Gotify's app token), whatever they look like.
    """
    found = secret_parts(url)
    plugin: Any = apprise.Apprise.instantiate(url)  # its url() is untyped
    if plugin is not None:
        shown = {unquote(p) for p in _PARTS.split(plugin.url(privacy=True))}
        found |= {unquote(p) for p in _PARTS.split(plugin.url())} - shown
    return found


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
