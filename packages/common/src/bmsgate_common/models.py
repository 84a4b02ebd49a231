"""The message contract of the backbone, defined once: every service and tool imports these.

Units are SI and given in each field's description; timestamps are timezone-aware UTC. A model
changes only by adding optional fields; a breaking change bumps ``v``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import date, datetime
from typing import Annotated, Final, Literal, NamedTuple

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from bmsgate_bms.registry import NAMES as PROTOCOL_NAMES

from .clock import WALL
from .ports import port_problem

PACK_ID_PATTERN: Final = r"^[a-z0-9][a-z0-9_-]{0,31}$"  # one MQTT topic level, URL-safe
PackId = Annotated[
    str, Field(pattern=PACK_ID_PATTERN, description="pack id: lowercase letters, digits, - and _")
]


def _known_protocol(name: str) -> str:
    if name not in PROTOCOL_NAMES:
        raise ValueError(f"unknown protocol {name!r}; known: {', '.join(PROTOCOL_NAMES)}")
    return name


# a protocol of bmsgate_bms.registry (the registry's names; its modules are not imported here)
ProtocolName = Annotated[
    str,
    AfterValidator(_known_protocol),
    WithJsonSchema({"enum": list(PROTOCOL_NAMES), "type": "string"}),
]
Extra = str | int | float | bool | None


def _serial_port(port: str) -> str:
    problem = port_problem(port)
    if problem:
        raise ValueError(problem)
    return port


SerialPort = Annotated[str, AfterValidator(_serial_port)]
"""A port given in the configuration, the setup page or ``bmsgate scan`` (ports.py)."""


def utcnow() -> datetime:
    """The current time, timezone-aware UTC; a step of the wall clock is logged (clock.py)."""
    return WALL.now()


class _Message(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CellStats(NamedTuple):
    """The statistics of a pack's cell voltages, computed here only: every service uses these."""

    low: float  # [V]
    high: float  # [V]
    low_cell: int  # 1-based: the first cell at the lowest voltage
    high_cell: int  # 1-based: the first cell at the highest voltage
    average: float  # [V]

    @property
    def delta(self) -> float:
        """Highest minus lowest cell [V]."""
        return self.high - self.low

    @classmethod
    def of(cls, cells: Sequence[float]) -> CellStats | None:
        """The statistics of ``cells`` [V], cell 1 first; None without cells."""
        if not cells:
            return None
        low, high = min(cells), max(cells)
        return cls(low, high, cells.index(low) + 1, cells.index(high) + 1, sum(cells) / len(cells))


class PackState(_Message):
    """One pack's measured state, published retained on ``<base>/bms/<pack>/state``."""

    v: Literal[1] = 1
    pack: PackId
    name: str = Field(description="the pack's display name")
    protocol: ProtocolName
    ts: AwareDatetime = Field(description="when the BMS was read (UTC)")
    pack_voltage: float = Field(description="[V]")
    current: float = Field(description="[A], positive = charging")
    power: float = Field(description="[W], positive = charging")
    soc: float = Field(ge=0, le=100, description="state of charge [%]")
    soc_estimate: float | None = Field(
        default=None,
        ge=0,
        le=100,
        description="bmsgate's own SOC [%]: coulombs counted from the corrected current, "
        "re-synced at full and at the low cut-off; null unless the pack's own_soc is on",
    )
    cell_voltages: list[float] = Field(description="[V], cell 1 first")
    cell_count: int = Field(ge=0, description="cells in series")
    temperatures: list[float] = Field(
        default_factory=list, description="sensors [°C], sensor 1 first"
    )
    mos_temperature: float | None = Field(default=None, description="MOSFET temperature [°C]")
    cycles: int | None = Field(default=None, ge=0, description="charge cycles")
    remaining_capacity: float | None = Field(default=None, description="[Ah]")
    nominal_capacity: float | None = Field(default=None, description="[Ah]")
    charge_mos: bool | None = Field(default=None, description="charge MOSFET on")
    discharge_mos: bool | None = Field(default=None, description="discharge MOSFET on")
    balancing: bool | None = Field(default=None, description="balancer active")
    balancing_cells: list[int] = Field(default_factory=list, description="cells balancing, 1-based")
    energy_in: float | None = Field(
        default=None, ge=0, description="energy charged since the counter started [kWh]"
    )
    energy_out: float | None = Field(
        default=None, ge=0, description="energy discharged since the counter started [kWh]"
    )
    charge_in: float | None = Field(default=None, ge=0, description="charge charged [Ah]")
    charge_out: float | None = Field(default=None, ge=0, description="charge discharged [Ah]")
    alarms: list[str] = Field(default_factory=list, description="active alarm codes")
    extras: dict[str, Extra] = Field(
        default_factory=dict, description="protocol-specific values, named by the protocol module"
    )
    ages: dict[str, float] = Field(
        default_factory=dict,
        description="[s] the values read less often than every poll (the bus's slow_every), "
        "by field name (extras by their key): how old each was at ts, 0 when read for this "
        "state; a field not listed was read for this state",
    )

    @model_validator(mode="after")
    def _cells_match_count(self) -> PackState:
        if len(self.cell_voltages) != self.cell_count:
            raise ValueError(
                f"cell_count is {self.cell_count} but {len(self.cell_voltages)} voltages given"
            )
        return self

    @property
    def cells(self) -> CellStats | None:
        """Lowest, highest, their cells, average and delta; None without cells."""
        return CellStats.of(self.cell_voltages)

    @property
    def cell_delta(self) -> float:
        """Highest minus lowest cell [V]; 0 without cells."""
        stats = self.cells
        return stats.delta if stats else 0.0

    @property
    def cell_average(self) -> float:
        """Mean cell voltage [V]; 0 without cells."""
        stats = self.cells
        return stats.average if stats else 0.0


class Availability(_Message):
    """Whether a pack answers, retained on ``<base>/bms/<pack>/availability``."""

    v: Literal[1] = 1
    pack: PackId
    state: Literal["online", "offline"]
    ts: AwareDatetime
    reason: str | None = Field(default=None, description="why offline, e.g. 'no answer 3 times'")


class AlarmEvent(_Message):
    """An alarm raised or cleared, on ``<base>/bms/<pack>/alarm`` (not retained)."""

    v: Literal[1] = 1
    pack: PackId
    ts: AwareDatetime
    code: str = Field(description="stable alarm code")
    level: Literal["warning", "alarm", "fault"]
    text: str = Field(description="readable, naming the cell or sensor when known")
    active: bool = Field(description="true when raised, false when cleared")


CommandAction = Literal[
    "set_charge_mos",
    "set_discharge_mos",
    "set_soc",
    "reset",
    "set_setting",
    "read_settings",
    "set_balancer",
    "set_keep_awake",
]
SWITCH_ACTIONS: Final = ("set_charge_mos", "set_discharge_mos", "set_balancer", "set_keep_awake")
SETTING_KEY = r"^[a-z][a-z0-9_]{0,63}$"
_TRANSACTION = r"^[A-Za-z0-9_.:-]{1,64}$"


def requester(mqtt_user: str | None, *who: str) -> str:
    """A Command's ``requested_by``: ``mqtt-USER:WHO...``, for the reader's log.

    USER is the broker user the sending service publishes as (the ACL lets only the API, Modbus,
    the publisher and ``admin`` send commands), WHO says who asked that service (a web session or
    token and the client's address, a Modbus client's address, a Home Assistant target).
    """
    text = ":".join((f"mqtt-{mqtt_user or 'anonymous'}", *who))
    return re.sub(r"[^A-Za-z0-9_.:-]", "-", text)[:64]


def asker(requested_by: str | None) -> str:
    """Who asked for a control action, for the reader's log line: ``unnamed`` if nobody said."""
    return requested_by or "unnamed"


# who asked for a control action (a command, the sniffer, the line): models.requester makes it
RequestedBy = Annotated[
    str | None, Field(pattern=_TRANSACTION, description="who asked, for the reader's log")
]


class Command(_Message):
    """A request to change a BMS, on ``<base>/bms/<pack>/set``; answered on ``.../result``."""

    v: Literal[1] = 1
    transaction: str = Field(pattern=_TRANSACTION, description="caller's id, echoed in the result")
    action: CommandAction
    value: bool | float | None = Field(
        default=None,
        description="on/off for switches (MOS, balancer, keep awake), SOC [%] for set_soc, "
        "the new value (in the "
        "setting's unit) for set_setting, none for reset and read_settings",
    )
    setting: str | None = Field(
        default=None, pattern=SETTING_KEY, description="set_setting: which (BmsSettings key)"
    )
    requested_by: RequestedBy = None

    @model_validator(mode="after")
    def _value_fits_action(self) -> Command:
        if self.action in SWITCH_ACTIONS:
            if not isinstance(self.value, bool):
                raise ValueError(f"{self.action} needs value true or false")
        elif self.action == "set_soc":
            if isinstance(self.value, bool) or not isinstance(self.value, int | float):
                raise ValueError("set_soc needs a number 0..100")
            if not 0 <= self.value <= 100:
                raise ValueError("set_soc value must be 0..100 %")
        elif self.action == "set_setting":
            if self.setting is None:
                raise ValueError("set_setting needs the setting's name")
            if isinstance(self.value, bool) or not isinstance(self.value, int | float):
                raise ValueError("set_setting needs a number")
        elif self.value is not None:
            raise ValueError(f"{self.action} takes no value")
        if self.setting is not None and self.action != "set_setting":
            raise ValueError(f"{self.action} takes no setting")
        return self


class SettingValue(_Message):
    """One of the BMS's own settings as read, with what bmsgate may write of it."""

    key: str = Field(pattern=SETTING_KEY, description="as the protocol names it")
    label: str
    unit: str = Field(description="SI unit of value: V, A, Ah, s, °C, % or empty")
    value: Extra
    writable: bool = Field(description="bmsgate may write it (control enabled, logged in)")
    min: float | None = Field(default=None, description="lowest value a write may set")
    max: float | None = Field(default=None, description="highest value a write may set")


class BmsSettings(_Message):
    """The BMS's own settings as last read, retained on ``<base>/bms/<pack>/settings``."""

    v: Literal[1] = 1
    pack: PackId
    protocol: ProtocolName
    ts: AwareDatetime = Field(description="when they were read (UTC)")
    settings: list[SettingValue]


class CommandResult(_Message):
    """The outcome of a Command: the state read back from the BMS, or why it failed."""

    v: Literal[1] = 1
    transaction: str = Field(pattern=_TRANSACTION)
    pack: PackId
    action: CommandAction
    status: Literal["ok", "error"]
    value: bool | float | None = Field(default=None, description="the value read back")
    error: str | None = None
    ts: AwareDatetime


class RawLease(_Message):
    """Ask the reader for the line of a pack's bus (tunnel, raw frames), on ``.../raw/lease``.

    While a lease is held the reader stops polling that bus and relays bytes both ways.
    """

    v: Literal[1] = 1
    transaction: str = Field(pattern=_TRANSACTION)
    holder: str = Field(pattern=r"^[A-Za-z0-9_.:-]{1,64}$", description="who takes the line")
    action: Literal["acquire", "release", "renew"]
    idle_timeout: float | None = Field(
        default=120.0,
        gt=0,
        le=86400,
        description="[s] of no traffic before it expires; null = never",
    )
    requested_by: RequestedBy = None


class RawLeaseState(_Message):
    """Who holds a bus's line, retained on ``.../raw/lease/state``; answers every RawLease."""

    v: Literal[1] = 1
    pack: PackId
    transaction: str | None = Field(default=None, description="the request this answers")
    holder: str | None = Field(description="current holder; null when polling runs")
    ok: bool = Field(description="whether the request was granted")
    error: str | None = None
    expires_in: float | None = Field(default=None, description="[s] left if idle; null = never")
    rx_bytes: int = Field(default=0, ge=0, description="bytes from the BMS during this lease")
    tx_bytes: int = Field(default=0, ge=0, description="bytes to the BMS during this lease")
    ts: AwareDatetime


class RawData(_Message):
    """Bytes on a leased line: ``.../raw/tx`` to the BMS, ``.../raw/rx`` from it."""

    v: Literal[1] = 1
    holder: str = Field(pattern=r"^[A-Za-z0-9_.:-]{1,64}$")
    data: str = Field(pattern=r"^([0-9a-f]{2})*$", max_length=8192, description="hex, lowercase")


class SniffedFrame(_Message):
    """A frame seen on a bus, on ``<base>/bus/<reader>/sniff`` when the sniffer is on."""

    v: Literal[1] = 1
    bus: str = Field(description="the reader that owns the bus, e.g. 'reader-0'")
    ts: AwareDatetime
    direction: Literal["to_bms", "from_bms", "gadget_to_bms", "bms_to_gadget"] = Field(
        description="to/from the BMS for bmsgate's polls; gadget_* for the passthrough device"
    )
    data: str = Field(pattern=r"^([0-9a-f]{2})*$", description="the bytes, hex")
    decoded: dict[str, Extra | list[float] | list[int] | list[str]] | None = Field(
        default=None, description="what the protocol decoder reads in it, if it is a frame"
    )
    error: str | None = Field(default=None, description="why it does not decode")


class SniffSet(_Message):
    """Turn a bus's sniffer on or off at runtime, on ``<base>/bus/<reader>/sniff/set``."""

    v: Literal[1] = 1
    transaction: str = Field(pattern=_TRANSACTION, description="echoed in the SniffState")
    enabled: bool
    requested_by: RequestedBy = None


class SniffState(_Message):
    """Whether a bus's sniffer is on, retained on ``<base>/bus/<reader>/sniff/state``."""

    v: Literal[1] = 1
    bus: str = Field(description="the reader that owns the bus, e.g. 'reader-0'")
    enabled: bool
    ts: AwareDatetime
    transaction: str | None = Field(default=None, description="of the SniffSet it answers")


class DailyStats(_Message):
    """A pack's day so far (local day of the configured time zone), retained on ``.../daily``.

    Feeds the dongle's daily MQTT packet (SCM, MIC, MAC, RCP) and Modbus registers 40-44.
    """

    v: Literal[1] = 1
    pack: PackId
    day: date = Field(description="the local calendar day these figures belong to")
    ts: AwareDatetime = Field(description="when the figures were last updated (UTC)")
    max_soc: float | None = Field(default=None, ge=0, le=100, description="highest SOC today [%]")
    max_soc_at: AwareDatetime | None = Field(default=None, description="when max_soc was reached")
    min_cell_voltage: float | None = Field(default=None, description="lowest cell today [V]")
    max_cell_voltage: float | None = Field(default=None, description="highest cell today [V]")
    remaining_capacity: float | None = Field(default=None, description="latest residual [Ah]")
    energy_in: float | None = Field(default=None, ge=0, description="charged today [kWh]")
    energy_out: float | None = Field(default=None, ge=0, description="discharged today [kWh]")


class ServiceStatus(_Message):
    """A service's liveness, retained on ``<base>/service/<name>/status``; also its last will."""

    v: Literal[1] = 1
    service: str = Field(description="service name, e.g. 'reader-0'")
    state: Literal["online", "offline"]
    ts: AwareDatetime | None = Field(default=None, description="absent in the last will")
    version: str | None = None
    started: AwareDatetime | None = Field(
        default=None, description="when the service started (its uptime); absent in the last will"
    )
    detail: dict[str, Extra] = Field(default_factory=dict, description="counters and health")

    @field_validator("service")
    @classmethod
    def _one_topic_level(cls, value: str) -> str:
        if not re.fullmatch(r"[a-z0-9][a-z0-9_-]{0,63}", value):
            raise ValueError("service name must be one lowercase topic level")
        return value


LOG_LINES_MAX: Final = 500  # log lines a service keeps and sends at most


class LogRequest(_Message):
    """Ask a service for its recent log lines, on ``<base>/service/<name>/logs``. Not retained."""

    v: Literal[1] = 1
    transaction: str = Field(pattern=_TRANSACTION, description="caller's id, echoed in the reply")
    lines: int = Field(default=200, ge=1, le=LOG_LINES_MAX, description="the newest this many")


class LogLines(_Message):
    """A service's recent log lines, on ``<base>/service/<name>/logs/reply``; secrets masked."""

    v: Literal[1] = 1
    transaction: str = Field(pattern=_TRANSACTION)
    service: str
    lines: list[str] = Field(max_length=LOG_LINES_MAX, description="oldest first")


class ServiceRestart(_Message):
    """Ask a service to exit and be started again, on ``<base>/service/<name>/restart``.

    The service stops cleanly with exit code 75; its supervisor or restart policy starts it
    again with the configuration file as it is now. ``all`` names every service. Not retained.
    """

    v: Literal[1] = 1
    ts: AwareDatetime
    reason: str = Field(default="", max_length=200, description="shown in the service's log")


HistoryResolution = Literal["raw", "1m", "15m", "1d"]
HistoryField = Literal[
    "cells",
    "soc",
    "pack_voltage",
    "current",
    "power",
    "temperatures",
    "mos_temperature",
    "remaining_capacity",
    "cell_min",
    "cell_max",
    "cell_delta",
    "cell_average",
    "charge_mos",
    "discharge_mos",
    "balancing",
    "energy_in",
    "energy_out",
]
MAX_HISTORY_SPAN_DAYS: Final = 400


class HistoryQuery(_Message):
    """A question to the archive, on ``<base>/history/<client>/request``; answered on ``.../reply``.

    ``<client>`` is the asking service (one topic level); the reply goes to that client's topic.
    """

    v: Literal[1] = 1
    transaction: str = Field(pattern=_TRANSACTION, description="caller's id, echoed in the reply")
    pack: PackId
    fields: list[HistoryField] = Field(min_length=1, description="series to return")
    start: AwareDatetime = Field(description="from (inclusive, UTC)")
    end: AwareDatetime = Field(description="to (exclusive, UTC)")
    resolution: HistoryResolution | Literal["auto"] = Field(
        default="auto", description="'auto' picks the finest that fits max_points"
    )
    max_points: int = Field(default=2000, ge=10, le=50_000, description="for 'auto'")

    @model_validator(mode="after")
    def _range_is_sane(self) -> HistoryQuery:
        if self.end <= self.start:
            raise ValueError("end must be after start")
        if (self.end - self.start).total_seconds() > MAX_HISTORY_SPAN_DAYS * 86400:
            raise ValueError(f"the range may span at most {MAX_HISTORY_SPAN_DAYS} days")
        return self


class HistorySeries(_Message):
    """One series of a reply: a value per entry of ``HistoryReply.times``; null = no data."""

    name: str = Field(description="a field, or 'cell_<n>' / 'temp_<n>' (1-based)")
    unit: str = Field(description="V, A, W, %, °C, Ah, kWh, or 1 for on/off shares")
    values: list[float | None] = Field(description="the sample, or the bucket's mean")
    min: list[float | None] | None = Field(default=None, description="bucket minimum")
    max: list[float | None] | None = Field(default=None, description="bucket maximum")


class HistoryGap(_Message):
    """A stretch of the range with no data (pack offline, service stopped, data deleted)."""

    start: AwareDatetime
    end: AwareDatetime


class HistoryReply(_Message):
    """The archive's answer to a HistoryQuery: the series, or why not."""

    v: Literal[1] = 1
    transaction: str | None = Field(description="the query's id; null if it could not be read")
    status: Literal["ok", "error"]
    error: str | None = None
    code: HistoryErrorCode | None = Field(default=None, description="what kind of error")
    pack: PackId | None = None
    resolution: HistoryResolution | None = None
    times: list[int] = Field(
        default_factory=list, description="sample or bucket start [ms since 1970-01-01 UTC]"
    )
    series: list[HistorySeries] = Field(default_factory=list)
    gaps: list[HistoryGap] = Field(default_factory=list)


HistoryErrorCode = Literal["invalid", "not_found", "disabled", "internal"]
HistoryFileAction = Literal["days", "csv", "zip", "delete", "energy"]
MONTH_PATTERN: Final = r"^[1-9]\d{3}-(0[1-9]|1[0-2])$"  # YYYY-MM


class HistoryFileRequest(_Message):
    """A file of the archive, on ``<base>/history/<client>/files``; answered on ``.../files/reply``.

    ``days``: the local days of ``month`` with data; ``csv``: one local ``day`` as CSV; ``zip``:
    ``month`` as a zip of its day files; ``delete``: remove one local ``day`` (the history
    service is the archive's only writer, so deleting goes through it too); ``energy``: the
    energy in and out of each local day of ``month`` or ``year`` that has data.
    """

    v: Literal[1] = 1
    transaction: str = Field(pattern=_TRANSACTION, description="caller's id, echoed in the reply")
    action: HistoryFileAction
    pack: PackId
    day: date | None = Field(default=None, description="csv, delete: the local day")
    month: str | None = Field(
        default=None, pattern=MONTH_PATTERN, description="days, zip, energy: YYYY-MM"
    )
    year: int | None = Field(default=None, ge=1000, le=9999, description="energy: a whole year")

    @model_validator(mode="after")
    def _has_its_date(self) -> HistoryFileRequest:
        if self.action == "energy":
            if self.day is not None or (self.month is None) == (self.year is None):
                raise ValueError("energy takes a month or a year")
            return self
        if self.year is not None:
            raise ValueError(f"{self.action} takes no year")
        needs_day = self.action in ("csv", "delete")
        if needs_day and (self.day is None or self.month is not None):
            raise ValueError(f"{self.action} takes a day, not a month")
        if not needs_day and (self.month is None or self.day is not None):
            raise ValueError(f"{self.action} takes a month, not a day")
        return self


class HistoryDay(_Message):
    """A local day with data in the archive."""

    day: date
    samples: int = Field(description="raw samples, or 1-minute buckets once raw data expired")
    file: str = Field(description="its CSV file name, <pack>_<YYYY-MM-DD>.csv")


class EnergyDay(_Message):
    """The energy a pack moved on one local day (the archive's 15-minute buckets of the day)."""

    day: date
    energy_in: float = Field(description="[kWh] charged")
    energy_out: float = Field(description="[kWh] discharged")


class HistoryFileReply(_Message):
    """The answer to a HistoryFileRequest; a file comes in ``parts`` messages of base64 ``data``."""

    v: Literal[1] = 1
    transaction: str | None = Field(description="the request's id; null if it could not be read")
    status: Literal["ok", "error"]
    error: str | None = None
    code: HistoryErrorCode | None = Field(default=None, description="what kind of error")
    days: list[HistoryDay] = Field(default_factory=list, description="days: the month's days")
    energy: list[EnergyDay] = Field(
        default_factory=list, description="energy: the days with data, oldest first"
    )
    file: str | None = Field(default=None, description="csv, zip: the file's name")
    samples: int | None = Field(default=None, description="delete: raw samples deleted")
    data: str = Field(default="", description="csv, zip: this part of the file, base64")
    part: int = Field(default=0, ge=0, description="0-based; the parts come in order")
    parts: int = Field(default=1, ge=1, le=100_000)


class NotifyTest(_Message):
    """A test message, on ``<base>/notifier/<client>/test``; answered on ``.../test/reply``.

    It goes to one configured notifier ``target`` (by name), or to the Apprise ``url`` a
    logged-in user is entering on the setup page; nowhere else.
    """

    v: Literal[1] = 1
    transaction: str = Field(pattern=_TRANSACTION, description="caller's id, echoed in the reply")
    target: str | None = Field(default=None, max_length=64, description="a notifier target")
    url: str | None = Field(
        default=None, min_length=3, max_length=2000, description="an Apprise URL being saved"
    )

    @model_validator(mode="after")
    def _one_destination(self) -> NotifyTest:
        if (self.target is None) == (self.url is None):
            raise ValueError("give a target or a url, one of them")
        return self


class NotifyTestResult(_Message):
    """The outcome of a NotifyTest: sent or failed, never why delivery failed (no probe)."""

    v: Literal[1] = 1
    transaction: str | None = Field(description="the test's id; null if it could not be read")
    result: Literal["sent", "failed", "refused"]
    error: str | None = Field(
        default=None, description="refused: an unknown target or a URL Apprise does not accept"
    )


HealthKind = Literal["weak_cell", "balancing_fault", "capacity_fade"]


class HealthFinding(_Message):
    """One thing the history says about a pack's health, with its evidence."""

    kind: HealthKind
    cell: int | None = Field(default=None, ge=1, description="the cell (1-based); none for fade")
    since: date = Field(description="the local day the evidence began")
    last_seen: date = Field(description="the latest local day with evidence")
    value: float | None = Field(
        default=None, description="the key figure: mV for cells, % of capacity lost for fade"
    )
    evidence: str = Field(description="readable: what was measured, how often, against what")


class HealthReport(_Message):
    """A pack's current health findings, retained on ``<base>/bms/<pack>/health``; [] = healthy."""

    v: Literal[1] = 1
    pack: PackId
    ts: AwareDatetime
    findings: list[HealthFinding] = Field(default_factory=list)


class TunnelCommand(_Message):
    """Open or close the TCP tunnel to a pack's bus, on ``<base>/bms/<pack>/tunnel/set``.

    Answered by a TunnelStatus carrying the same transaction. Needs ``control.enabled``.
    """

    v: Literal[1] = 1
    transaction: str = Field(pattern=_TRANSACTION, description="caller's id, echoed in the status")
    action: Literal["open", "close", "status"]
    minutes: float | None = Field(
        default=None, gt=0, le=1440, description="open: window [min]; the configured one if unset"
    )
    idle_timeout: float | None = Field(
        default=None, gt=0, le=86400, description="open: [s] without traffic; configured if unset"
    )
    no_timeout: bool = Field(
        default=False, description="open: never close for lack of traffic (only the window ends it)"
    )
    requested_by: str | None = Field(
        default=None,
        max_length=200,
        description="who asked, for the tunnel's log: the web API's session or token and "
        "client address, or "
        "`bmsgate tunnel` with the local user and host",
    )

    @model_validator(mode="after")
    def _open_terms(self) -> TunnelCommand:
        if self.action != "open" and (self.minutes or self.idle_timeout or self.no_timeout):
            raise ValueError(f"{self.action} takes no minutes, idle_timeout or no_timeout")
        if self.no_timeout and self.idle_timeout is not None:
            raise ValueError("give idle_timeout or no_timeout, not both")
        return self


class TunnelStatus(_Message):
    """The tunnel of a pack's bus, retained on ``<base>/bms/<pack>/tunnel/state``."""

    v: Literal[1] = 1
    pack: PackId
    transaction: str | None = Field(default=None, description="the command this answers")
    ok: bool = Field(default=True, description="whether that command was carried out")
    error: str | None = None
    open: bool = Field(description="connections are accepted")
    port: int = Field(ge=1, le=65535, description="the TCP port of this bus's tunnel")
    client: str | None = Field(default=None, description="'address:port' of the connected client")
    uptime: float | None = Field(default=None, ge=0, description="[s] the client has been on")
    rx_bytes: int = Field(default=0, ge=0, description="bytes from the BMS in this session")
    tx_bytes: int = Field(default=0, ge=0, description="bytes to the BMS in this session")
    time_left: float | None = Field(
        default=None, ge=0, description="[s] before it closes (window or idle); null = closed"
    )
    window_left: float | None = Field(default=None, ge=0, description="[s] left of the window")
    idle_timeout: float | None = Field(
        default=None, description="[s] without traffic that closes it; null = none (or closed)"
    )
    sessions: int = Field(default=0, ge=0, description="sessions since the service started")
    ts: AwareDatetime
