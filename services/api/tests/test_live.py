"""The status fan-out: a browser that falls behind gets each pack's newest view."""

from __future__ import annotations

from typing import NamedTuple

from bmsgate_api.live import LatestFanout


class View(NamedTuple):
    pack: str
    soc: int


async def test_a_slow_listener_gets_the_newest_view_of_every_pack_none_lost() -> None:
    hub = LatestFanout()
    slow = hub.listen()
    for soc in range(3):
        for pack in ("garage", "shed"):
            hub.publish("pack", View(pack, soc))
    hub.publish("bank", View("house", 1))
    hub.publish("pack", View("garage", 9))  # newest last: garage now waits behind shed
    assert await slow.wait(1.0)
    assert slow.take() == [
        ("pack", View("shed", 2)),
        ("bank", View("house", 1)),
        ("pack", View("garage", 9)),
    ]
    assert slow.replaced == 5  # garage 0, 1, 2 and shed 0, 1
    assert not await slow.wait(0.01)  # nothing again until the next change
    hub.leave(slow)
    hub.publish("pack", View("garage", 10))
    assert slow.take() == []
