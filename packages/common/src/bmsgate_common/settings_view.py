"""A typed, read-only view of settings already validated, for processes without pydantic.

The lean reader of ``bmsgate run --only reader`` (docs/performance.md) reads the effective
settings that the Settings model validated and wrote as JSON (bmsgate.run_check): every default
is filled in there, so nothing here restates a default or a bound. A value the model left None
is absent from that data and reads as None. What the model computes for a reader (a bus's
``baud`` and ``driver_options``, a pack's ``display_name``) is written beside them by the
model's own code, under ``derived`` (``DERIVED``), with bmsgate's version (version.py reads it
from the package metadata, an import of 5 MB). A test holds every name here to the model.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Final

# the model's computed values a reader uses, by section: written into the data by run_check
DERIVED: Final = {"bus": ("baud", "driver_options"), "pack": ("display_name",)}


class _View:
    def __init__(self, data: dict[str, Any], derived: dict[str, Any] | None = None) -> None:
        self.data = data
        self.derived = derived or {}

    def _get(self, name: str) -> Any:
        return self.derived[name] if name in self.derived else self.data.get(name)


class MqttSection(_View):
    """``mqtt``: the backbone's broker."""

    @property
    def host(self) -> str | None:
        return self._get("host")  # type: ignore[no-any-return]

    @property
    def port(self) -> int:
        return int(self._get("port"))

    @property
    def username(self) -> str | None:
        return self._get("username")  # type: ignore[no-any-return]

    @property
    def password(self) -> str | None:
        return self._get("password")  # type: ignore[no-any-return]

    @property
    def base_topic(self) -> str:
        return str(self._get("base_topic"))

    @property
    def heartbeat(self) -> float:
        return float(self._get("heartbeat"))


class PackSection(_View):
    """One pack of a bus."""

    @property
    def id(self) -> str:
        return str(self._get("id"))

    @property
    def address(self) -> int:
        return int(self._get("address"))

    @property
    def display_name(self) -> str:
        return str(self._get("display_name"))

    @property
    def invert_current(self) -> bool:
        return bool(self._get("invert_current"))

    @property
    def current_scale(self) -> float:
        return float(self._get("current_scale"))

    @property
    def current_offset(self) -> float:
        return float(self._get("current_offset"))

    @property
    def nominal_capacity(self) -> float | None:
        return self._get("nominal_capacity")  # type: ignore[no-any-return]

    @property
    def own_soc(self) -> bool:
        return bool(self._get("own_soc"))


class BusSection(_View):
    """One bus: its port, protocol, polling and packs."""

    @property
    def port(self) -> str:
        return str(self._get("port"))

    @property
    def protocol(self) -> str:
        return str(self._get("protocol"))

    @property
    def baud(self) -> int:
        return int(self._get("baud"))

    @property
    def poll_interval(self) -> float:
        return float(self._get("poll_interval"))

    @property
    def offline_after(self) -> int:
        return int(self._get("offline_after"))

    @property
    def slow_every(self) -> int:
        return int(self._get("slow_every"))

    @property
    def timeout(self) -> float:
        return float(self._get("timeout"))

    @property
    def retries(self) -> int:
        return int(self._get("retries"))

    @property
    def variant(self) -> str | None:
        return self._get("variant")  # type: ignore[no-any-return]

    @property
    def passthrough(self) -> str | None:
        return self._get("passthrough")  # type: ignore[no-any-return]

    @property
    def sniff(self) -> bool:
        return bool(self._get("sniff"))

    @property
    def keep_awake(self) -> float:
        return float(self._get("keep_awake"))

    @property
    def listen(self) -> bool:
        return bool(self._get("listen"))

    @property
    def packs(self) -> list[PackSection]:
        derived = self.derived.get("packs") or [{} for _ in self.data["packs"]]
        return [PackSection(p, d) for p, d in zip(self.data["packs"], derived, strict=True)]

    def driver_options(self) -> dict[str, str]:
        """Protocol-specific keyword arguments for the driver (as the model gives them)."""
        return dict(self._get("driver_options"))


class ControlSection(_View):
    """``control``: commands to the BMS."""

    @property
    def enabled(self) -> bool:
        return bool(self._get("enabled"))


class ValidatedSettings(_View):
    """The effective settings with what is derived of them, as bmsgate.run_check wrote them.

    ``data``: ``{"settings": the Settings model's data, "derived": {"buses": [...]}}``.
    """

    @property
    def settings(self) -> dict[str, Any]:
        """The settings alone: what the Settings model validates (the full reader's)."""
        return dict(self.data["settings"])

    @property
    def mqtt(self) -> MqttSection:
        return MqttSection(self.data["settings"]["mqtt"])

    @property
    def buses(self) -> list[BusSection]:
        buses = self.data["settings"].get("buses") or []
        derived = self.derived.get("buses") or [{} for _ in buses]
        return [BusSection(b, d) for b, d in zip(buses, derived, strict=True)]

    @property
    def control(self) -> ControlSection:
        return ControlSection(self.data["settings"]["control"])

    @property
    def version(self) -> str:
        """Bmsgate's version (version.py's, read where the settings were checked)."""
        return str(self.derived["version"])

    @property
    def data_dir(self) -> Path:
        return Path(self.data["settings"]["data_dir"])

    @property
    def log_level(self) -> str:
        return str(self.data["settings"]["log_level"])


def settings_view(data: dict[str, Any]) -> ValidatedSettings:
    """The view of what bmsgate.run_check wrote."""
    return ValidatedSettings(data, data.get("derived"))
