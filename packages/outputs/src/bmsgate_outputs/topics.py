"""The topics of one target, all in one place (the tree is drawn in docs/publisher.md)."""

from __future__ import annotations

import string
from dataclasses import dataclass
from typing import Final

from bmsgate_common.topics import match

PLACEHOLDERS: Final = frozenset({"prefix", "pack"})


def template_problem(template: str) -> str | None:
    """Why a topic template is unusable, or None (only {prefix} and {pack}, no wildcards)."""
    try:
        names = {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}
    except ValueError as err:
        return f"{template!r}: {err}"
    unknown = names - PLACEHOLDERS
    if unknown:
        return f"{template!r}: unknown placeholder {{{sorted(unknown)[0]}}}"
    if "{pack}" not in template:
        return f"{template!r}: needs {{pack}}"
    if any(c in template for c in "+#") or "//" in template:
        return f"{template!r}: no wildcards or empty levels"
    return None


def pack_in(template: str, prefix: str, topic: str) -> str | None:
    """The pack a concrete topic names under ``template``, or None if it does not match."""
    return match(subscription(template, prefix), topic)


def subscription(template: str, prefix: str) -> str:
    """The wildcard subscription for a template."""
    return template.replace("{prefix}", prefix).replace("{pack}", "+")


@dataclass(frozen=True)
class TargetTopics:
    """Topic builder for one target's prefix."""

    prefix: str

    def render(self, template: str, pack: str) -> str:
        """A topic template made concrete."""
        return template.replace("{prefix}", self.prefix).replace("{pack}", pack)

    def gateway_availability(self) -> str:
        """``online``/``offline`` of the publisher itself (its last will), retained."""
        return f"{self.prefix}/availability"

    def availability(self, pack: str) -> str:
        """``online``/``offline`` of one pack, retained."""
        return f"{self.prefix}/{pack}/availability"

    def state(self, pack: str) -> str:
        """The JSON state Home Assistant's templates read."""
        return f"{self.prefix}/{pack}/state"

    def flat(self, pack: str, level: str) -> str:
        """One value: ``<prefix>/<pack>/soc``, ``<prefix>/<pack>/cell/3``."""
        return f"{self.prefix}/{pack}/{level}"

    def command(self, pack: str, key: str) -> str:
        """A switch's command topic."""
        return f"{self.prefix}/{pack}/{key}/set"

    def command_result(self, pack: str, key: str) -> str:
        """How a switch's last command ended: JSON, retained (Home Assistant's attributes)."""
        return f"{self.prefix}/{pack}/{key}/result"

    def command_subscription(self) -> str:
        """Every switch command topic of this prefix."""
        return f"{self.prefix}/+/+/set"
