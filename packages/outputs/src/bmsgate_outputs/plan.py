"""What a publisher target is sent when: a ``Plan`` per target over ``HeardPacks``.

No I/O here: the publisher feeds backbone messages into a ``HeardPacks`` and asks each target's
``Plan`` for the MQTT messages of one tick; the link to the target's broker sends them. The API's
discovery preview and openHASP pages run the same ``Plan`` and ``hasp_messages``.
"""

from __future__ import annotations

import json
import re
import string
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final, NamedTuple

from bmsgate_common.liveness import Arrivals, liveness
from bmsgate_common.models import Availability, BmsSettings, DailyStats, PackState
from bmsgate_common.settings import TargetSettings

from . import discovery, dongle
from .entities import (
    ALARM_DESCRIPTIONS,
    MOS_ACTIONS,
    MOS_DESCRIPTIONS,
    PACK_DESCRIPTIONS,
    SWITCH_STATES,
    Description,
    Scalar,
    descriptions,
    shown_values,
    values,
)
from .topics import TargetTopics


class TargetMessage(NamedTuple):
    """One MQTT publish."""

    topic: str
    payload: bytes
    qos: int = 0
    retain: bool = False
    # a value of the moment (a packet, a state): worthless once the pack would count as stale
    perishable: bool = False


@dataclass
class HeardPack:
    """The latest of everything the backbone said about one pack."""

    state: PackState | None = None
    availability: Availability | None = None
    daily: DailyStats | None = None
    settings: BmsSettings | None = None  # the BMS's own, as last read
    mos: dict[str, bool] = field(default_factory=dict)  # confirmed switch states by key
    arrivals: Arrivals | None = None  # of the HeardPacks holding it: ages on the monotonic clock

    def online(self, now: datetime, stale_after: float) -> bool:
        """Live by the one rule (bmsgate_common.liveness)."""
        return liveness(self.state, self.availability, now, stale_after, self.arrivals)[0]


@dataclass
class HeardPacks:
    """Every pack the publisher has heard of, by id."""

    stale_after: float = 60.0
    packs: dict[str, HeardPack] = field(default_factory=dict)
    arrivals: Arrivals = field(default_factory=Arrivals)

    def view(self, pack: str) -> HeardPack:
        """The view of ``pack``, created on first use."""
        return self.packs.setdefault(pack, HeardPack(arrivals=self.arrivals))

    def on_availability(self, availability: Availability) -> None:
        """A pack came or went."""
        self.arrivals.heard(availability.pack, availability)
        self.view(availability.pack).availability = availability

    def on_state(self, state: PackState) -> None:
        """A new state; it also confirms the MOS switches."""
        self.arrivals.heard(state.pack, state)
        view = self.view(state.pack)
        view.state = state
        for key in MOS_ACTIONS:
            flag = SWITCH_STATES[key](state)
            if flag is not None:
                view.mos[key] = flag

    def on_result(self, pack: str, action: str, status: str, value: object) -> str | None:
        """A command result: the switch key whose confirmed state it carries, if any."""
        key = next((k for k, a in MOS_ACTIONS.items() if a == action), None)
        if key is None:
            return None
        if status == "ok" and isinstance(value, bool):
            self.view(pack).mos[key] = value
        return key  # on error the last confirmed state is sent again: the switch flips back


def flat_payload(value: Scalar) -> bytes:
    """A value as text: numbers as JSON numbers, ON/OFF and texts as they are."""
    return (value if isinstance(value, str) else json.dumps(value)).encode()


class Formatter(string.Formatter):
    """str.format restricted to plain names: no attribute or index access from config."""

    def get_field(self, field_name: str, args: Any, kwargs: Any) -> Any:
        """Look up one plain name."""
        if not field_name.isidentifier():
            raise KeyError(field_name)
        return kwargs[field_name], field_name


def hasp_problem(template: str) -> str | None:
    """Why an openHASP value template is unusable (checked at start), or None."""
    try:
        names = [n for _, n, _, _ in string.Formatter().parse(template) if n is not None]
    except ValueError as err:
        return f"{template!r}: {err}"
    bad = [n for n in names if not n.isidentifier()]
    return f"{template!r}: {{{bad[0]}}} is not a value name" if bad else None


def hasp_messages(
    plate: str, objects: dict[str, str], vals: dict[str, Scalar | None]
) -> list[TargetMessage]:
    """One ``hasp/<plate>/command/<obj.prop>`` per object whose template has all its values."""
    available = {k: v for k, v in vals.items() if v is not None}
    out = []
    for target, template in objects.items():
        try:
            text = Formatter().format(template, **available)
        except (KeyError, ValueError, TypeError):
            continue  # a value this pack does not have (yet); the others still go
        out.append(TargetMessage(f"hasp/{plate}/command/{target}", text.encode(), perishable=True))
    return out


@dataclass
class Plan:
    """What one target has been sent, so each tick sends only what is new."""

    target: TargetSettings
    control: bool
    version: str
    stale_after: float
    configuration_url: str | None = None  # the web UI, HA's "Visit" link and the origin's url
    topics: TargetTopics = field(init=False)
    # the state last sent, not its time: a bank's combination can change with the same newest ts
    sent_state: dict[str, PackState] = field(default_factory=dict)
    sent_online: dict[str, bool] = field(default_factory=dict)
    sent_daily: dict[str, DailyStats] = field(default_factory=dict)
    sent_config: dict[str, bytes] = field(default_factory=dict)
    sent_gateway: bool = False
    sent_mos: dict[tuple[str, str], bool] = field(default_factory=dict)
    sent_settings: dict[str, BmsSettings] = field(default_factory=dict)
    settings_of: dict[str, BmsSettings] = field(default_factory=dict)  # for the discovery
    # every component announced per pack since start: a value that goes missing stays announced
    # (None in the state, "unknown" in HA) so HA's entities never lose their config
    announced: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    state_keys: dict[str, dict[str, None]] = field(default_factory=dict)  # ordered, per pack
    removals: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)  # to send once

    def __post_init__(self) -> None:
        self.topics = TargetTopics(self.target.topic_prefix)

    def wants(self, pack: str) -> bool:
        """Whether this target publishes ``pack``."""
        return self.target.packs is None or pack in self.target.packs

    def _retained(self, topic: str, payload: bytes) -> TargetMessage:
        return TargetMessage(topic, payload, qos=1, retain=True)

    def _value(self, topic: str, payload: bytes) -> TargetMessage:
        t = self.target
        return TargetMessage(topic, payload, qos=t.qos, retain=t.retain, perishable=True)

    def tick(
        self, hub: HeardPacks, now: datetime, local_now: datetime, uptime: float, free_memory: int
    ) -> list[TargetMessage]:
        """The messages of one interval: everything new, plus the dongle's status packets."""
        out: list[TargetMessage] = []
        if self.target.homeassistant.enabled and not self.sent_gateway:
            self.sent_gateway = True  # retained: the target sends it again after HA's birth
            config = discovery.gateway_config(
                self.topics, version=self.version, configuration_url=self.configuration_url
            )
            topic = discovery.gateway_topic(self.target.homeassistant.discovery_prefix, self.topics)
            out.append(self._retained(topic, json.dumps(config, separators=(",", ":")).encode()))
        # the status packet is the same for every pack that is (or is not) live: made twice a tick
        status = {
            online: dongle.status_packet(online, local_now, uptime, free_memory)
            for online in (True, False)
        }
        for pack, view in hub.packs.items():
            if self.wants(pack):
                out += self._pack_tick(pack, view, now, status)
        return out

    def _pack_tick(
        self,
        pack: str,
        view: HeardPack,
        now: datetime,
        status: dict[bool, bytes],
    ) -> list[TargetMessage]:
        t = self.target
        out: list[TargetMessage] = []
        online = view.online(now, self.stale_after)
        if self.sent_online.get(pack) != online:
            self.sent_online[pack] = online
            text = b"online" if online else b"offline"
            out.append(self._retained(self.topics.availability(pack), text))
        state = view.state
        sent = self.sent_state.get(pack)
        if state is not None and online and sent is not state and sent != state:
            self.sent_state[pack] = state
            out += self._state_messages(state)
        out += self.mos_messages(pack, view)
        if view.settings is not None and t.homeassistant.enabled and state is not None:
            out += self._settings_messages(state, view.settings)
        if t.dongle.enabled and view.daily is not None and self.sent_daily.get(pack) != view.daily:
            self.sent_daily[pack] = view.daily
            packet = dongle.daily_packet(view.daily)
            if packet is not None:
                out.append(self._value(self.topics.render(t.dongle.daily_topic, pack), packet))
        if t.dongle.enabled:  # whatever the BMS does: Status 0 while it does not answer
            topic = self.topics.render(t.dongle.status_topic, pack)
            out.append(self._value(topic, status[online]))
        return out

    def _state_messages(self, state: PackState) -> list[TargetMessage]:
        t = self.target
        pack = state.pack
        out: list[TargetMessage] = []
        if t.dongle.enabled:
            packet = dongle.main_packet(state, t.dongle.style, t.dongle.fields)
            out.append(self._value(self.topics.render(t.dongle.main_topic, pack), packet))
        if not (t.homeassistant.enabled or t.flat):
            return out + self._hasp_messages(state)
        # the rows and their values only when a format shows them: ~0.5 ms a pack
        rows = descriptions(state, control=self.control)
        vals = values(state, rows)
        if t.homeassistant.enabled:
            out += self._discovery(state, rows)
            ha_state = {key: vals.get(key) for key in self.state_keys[pack]}
            payload = json.dumps(ha_state, separators=(",", ":")).encode()
            out.append(self._value(self.topics.state(pack), payload))
        if t.flat:
            out += [
                self._value(self.topics.flat(pack, r.flat_topic), flat_payload(v))
                for r in _flat_rows(rows)
                if (v := vals[r.key]) is not None
            ]
        return out + self._hasp_messages(state)

    def _hasp_messages(self, state: PackState) -> list[TargetMessage]:
        out: list[TargetMessage] = []
        for plate in self.target.openhasp:
            if plate.pack == state.pack:
                every = shown_values(state, _all_rows(state))
                out += hasp_messages(plate.plate, plate.objects, every)
        return out

    def _settings_messages(self, state: PackState, settings: BmsSettings) -> list[TargetMessage]:
        """The BMS's settings as JSON for HA's diagnostic sensors, and the discovery with them."""
        if self.sent_settings.get(state.pack) == settings:
            return []
        self.sent_settings[state.pack] = self.settings_of[state.pack] = settings
        values = {row.key: row.value for row in settings.settings}
        payload = json.dumps(values, separators=(",", ":")).encode()
        topic = self.topics.flat(state.pack, discovery.SETTINGS_LEVEL)
        rows = descriptions(state, control=self.control)
        return [self._retained(topic, payload), *self._discovery(state, rows)]

    def _discovery(self, state: PackState, rows: list[Description]) -> list[TargetMessage]:
        expire = int(max(self.stale_after, 3 * self.target.interval))
        config = discovery.device_config(
            state,
            rows,
            self.topics,
            version=self.version,
            expire_after=expire,
            settings=self.settings_of.get(state.pack),
            configuration_url=self.configuration_url,
            control=self.control,
        )
        config["cmps"] = self._stable(state.pack, rows, config["cmps"])
        payload = json.dumps(config, separators=(",", ":")).encode()
        if self.sent_config.get(state.pack) == payload:
            return []
        self.sent_config[state.pack] = payload
        topic = discovery.config_topic(self.target.homeassistant.discovery_prefix, state.pack)
        return [self._retained(topic, payload)]

    def _stable(
        self, pack: str, rows: list[Description], cmps: dict[str, dict[str, Any]]
    ) -> dict[str, dict[str, Any]]:
        """The components to announce: all announced before, updated, plus the new ones.

        A BMS setting a newer read no longer lists really went away: it becomes HA's removal
        (only its platform) and stays so in every later config of this run, so whichever of
        them HA (or a restarted HA, from the retained copy) reads removes it.
        """
        before = self.announced.get(pack, {})
        gone = {
            key: {"p": cmp["p"]}
            for key, cmp in before.items()
            if key.startswith(discovery.SETTING_PREFIX) and key not in cmps and len(cmp) > 1
        }
        result = before | self.removals.pop(pack, {}) | gone | cmps  # a row back is announced
        self.announced[pack] = result
        keys = self.state_keys.setdefault(pack, {})
        keys.update((r.key, None) for r in rows if r.in_ha and r.platform != "switch")
        return result

    def seed(self, pack: str, cmps: dict[str, Any]) -> bool:
        """Components a retained config from before announced: kept, or removed.

        A row this version still has stays announced (its value null until the pack reports
        it again); one it no longer has is removed as HA documents. True: something changed,
        so the config and the state are sent again at the next tick.
        """
        before = self.announced.setdefault(pack, {})
        keys = self.state_keys.setdefault(pack, {})
        changed = False
        for key, cmp in cmps.items():
            if not isinstance(cmp, dict) or len(cmp) <= 1 or key in before:
                continue  # a removal sent before, or already announced this run
            changed = True
            if known_component(key):
                before[key] = cmp
                if cmp.get("stat_t") == self.topics.state(pack) and cmp.get("p") != "number":
                    keys[key] = None
            else:
                self.removals.setdefault(pack, {})[key] = {"p": cmp.get("p", "sensor")}
        if changed:
            self.sent_config.pop(pack, None)
            self.sent_state.pop(pack, None)
        return changed

    def refresh(self, hub: HeardPacks, pack: str, now: datetime) -> list[TargetMessage]:
        """The pack's discovery and state again (after ``seed``), when it is live."""
        view = hub.packs.get(pack)
        if view is None or view.state is None or not view.online(now, self.stale_after):
            return []
        self.sent_state[pack] = view.state
        return self._state_messages(view.state)

    def mos_messages(
        self, pack: str, view: HeardPack, *, again: str | None = None
    ) -> list[TargetMessage]:
        """Confirmed switch states not sent yet (``again``: send that key even if unchanged)."""
        if not (self.target.flat or self.target.homeassistant.enabled):
            return []
        out = []
        for key, flag in view.mos.items():
            if self.sent_mos.get((pack, key)) != flag or key == again:
                self.sent_mos[(pack, key)] = flag
                topic = self.topics.flat(pack, key)
                out.append(self._retained(topic, b"ON" if flag else b"OFF"))
        return out

    def result_message(
        self, pack: str, key: str, ok: bool, error: str | None, ts: datetime
    ) -> list[TargetMessage]:
        """How a switch's last command ended, kept (retained) until the next one.

        Home Assistant shows it as the switch's attributes (``result``, ``error``, ``ts``): a
        command that failed flips the switch back to the state read from the BMS, and this says
        why, for as long as nothing newer happened.
        """
        if not (self.target.flat or self.target.homeassistant.enabled) or not self.wants(pack):
            return []
        body = {"result": "ok" if ok else "command failed", "error": error, "ts": ts.isoformat()}
        payload = json.dumps(body, separators=(",", ":")).encode()
        return [self._retained(self.topics.command_result(pack, key), payload)]


ROW_KEYS: Final = frozenset(
    r.key for r in (*PACK_DESCRIPTIONS, *ALARM_DESCRIPTIONS, *MOS_DESCRIPTIONS) if r.in_ha
)
NUMBERED: Final = re.compile(r"(cell|temperature)_[1-9][0-9]*")


def known_component(key: str) -> bool:
    """Whether this version still announces a component of that id on some pack."""
    return (
        key in ROW_KEYS
        or NUMBERED.fullmatch(key) is not None
        or key.startswith(discovery.SETTING_PREFIX)
        or key in ("online", discovery.SET_SOC)
    )


def _flat_rows(rows: list[Description]) -> list[Description]:
    # the MOS states go out as confirmed states (mos_messages), not as plain values
    return [r for r in rows if r.key not in MOS_ACTIONS]


def _all_rows(state: PackState) -> list[Description]:
    return descriptions(state, control=False)
