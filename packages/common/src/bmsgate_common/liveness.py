"""Whether a pack is live: the one rule behind the web UI, Modbus, MQTT, Home Assistant and banks.

A pack is live when it has a state, the reader has not said "offline" since that state was read,
and that state is not older than the top-level ``stale_after``. A state read after an offline
message counts (the pack answers again before its "online" arrives); an availability that never
came does not make a fresh state stale.

A state's age is its age when it arrived in this process (its wall-clock stamp against this
process's wall clock: a retained state from before a restart is as old as it says) plus the time
since on the monotonic clock (:class:`Arrivals`). So a wall-clock step after it arrived (NTP
setting a Pi's clock at boot, a user setting it back) neither makes a live pack look stale nor a
silent one look fresh. It is computed as ``now`` minus the stamp, less every step of the wall
clock against the monotonic one since the arrival; without arrivals (a state made here, a pure
test) the age is ``now`` minus its stamp.

A bank must not be combined from the members heard so far while another is still unknown:
:meth:`Arrivals.undecided` says which packs this process cannot judge yet.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from .models import Availability, PackState

Clock = Callable[[], float]


ORDER_BY_ARRIVAL = 1.0  # [s] messages that came this far apart are ordered by their arrival


@dataclass(frozen=True)
class _Heard:
    at: float  # [s] monotonic moment of the arrival
    offset: float  # [s] wall clock minus monotonic clock at the arrival
    born: float  # [s] monotonic moment the message was stamped: the arrival less its age then


class Arrivals:
    """When this process heard each pack's latest state and availability.

    Consumers call :meth:`heard` for every state and availability they keep and pass the
    arrivals to :func:`liveness`.
    """

    def __init__(self, mono: Clock = time.monotonic, wall: Clock = time.time) -> None:
        self.mono = mono
        self.wall = wall
        self.since = mono()  # began listening: retained messages from before come in after
        self.states: dict[str, _Heard] = {}
        self.availability: dict[str, _Heard] = {}

    def deaf(self) -> None:
        """The connection is lost: until it is renewed, no pack out of sight is judged out."""
        self.since = math.inf

    def listen_again(self) -> None:
        """The connection was renewed: what was judged before the outage is judged afresh."""
        self.since = self.mono()

    def _offset(self) -> float:
        return self.wall() - self.mono()

    def heard(self, pack: str, message: PackState | Availability) -> None:
        """Note that ``message`` about ``pack`` has just arrived."""
        wall, mono = self.wall(), self.mono()
        age = max(0.0, wall - message.ts.timestamp())
        book = self.states if isinstance(message, PackState) else self.availability
        book[pack] = _Heard(at=mono, offset=wall - mono, born=mono - age)

    def stepped(self, pack: str) -> float:
        """[s] the wall clock was set forward (negative: back) since the state of ``pack`` came.

        Rounded to the millisecond: reading two clocks jitters by microseconds.
        """
        heard = self.states.get(pack)
        return 0.0 if heard is None else round(self._offset() - heard.offset, 3)

    def age(self, pack: str, state: PackState, now: datetime) -> float:
        """[s] ``state``, the latest of ``pack``, is old: ``now`` less its stamp and the steps."""
        return (now - state.ts).total_seconds() - self.stepped(pack)

    def undecided(
        self,
        pack: str,
        state: PackState | None,
        availability: Availability | None,
        now: datetime,
        stale_after: float,
    ) -> bool:
        """Too early to count ``pack`` out of a bank.

        It is not live, and since this process began listening it has neither been said offline
        nor has ``stale_after`` passed (the bound after which a pack that says nothing is not
        live anyway). A stale state or an offline message retained from before the start does
        not decide: a member whose reader is starting would be left out for its first poll. An
        offline stamped since, or repeated by its reader later than the retained messages come
        (a reader says its packs' availability again every heartbeat), does.
        """
        if self.mono() - self.since >= stale_after:
            return False
        if liveness(state, availability, now, stale_after, self)[0]:
            return False
        said = self.availability.get(pack)
        said_offline = availability is not None and availability.state == "offline"
        if not said_offline or said is None:
            return True
        return not (said.born >= self.since or said.at >= self.since + ORDER_BY_ARRIVAL)

    def availability_after_state(self, pack: str) -> bool | None:
        """Whether the latest availability came after the latest state, by their arrival.

        None when they came within ORDER_BY_ARRIVAL of each other (retained messages at a
        start come together in any order): their stamps, from one reader's clock, decide.
        """
        state, said = self.states.get(pack), self.availability.get(pack)
        if state is None or said is None or abs(said.at - state.at) < ORDER_BY_ARRIVAL:
            return None
        return said.at > state.at


def liveness(
    state: PackState | None,
    availability: Availability | None,
    now: datetime,
    stale_after: float,
    arrivals: Arrivals | None = None,
) -> tuple[bool, str]:
    """``(live, reason)``: the reason is why the pack is not live, in words; empty when live."""
    if state is None:
        return False, "no state received yet"
    if availability is not None and availability.state == "offline":
        after = arrivals.availability_after_state(state.pack) if arrivals is not None else None
        if after if after is not None else availability.ts >= state.ts:
            return False, availability.reason or "the reader reports it offline"
    age = arrivals.age(state.pack, state, now) if arrivals else (now - state.ts).total_seconds()
    if age > stale_after:
        return False, f"no new state since {state.ts.isoformat(timespec='seconds')}"
    return True, ""
