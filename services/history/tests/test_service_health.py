"""Health reports go out while states keep arriving (the service's handlers run meanwhile)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bmsgate_common.settings import Settings
from bmsgate_history.service import History


class Backbone:
    """Stands in for the backbone: each publish lets a state of a new pack arrive meanwhile."""

    def __init__(self) -> None:
        self.history: History | None = None
        self.published: list[str] = []

    async def publish(self, kind: str, name: str, model: Any) -> bool:
        self.published.append(name)
        if self.history is not None and len(self.published) < 5:
            self.history._tracker(f"new-{len(self.published)}")  # what on_state does
        return True


async def test_packs_seen_during_the_health_round_do_not_stop_it(tmp_path: Path) -> None:
    cfg = Settings.model_validate({"data_dir": str(tmp_path), "timezone": "UTC"})
    backbone = Backbone()
    history = History(cfg, backbone)  # type: ignore[arg-type]
    backbone.history = history
    for pack in ("a", "b"):
        history._tracker(pack)
    await history.evaluate_health()  # raised "dictionary changed size during iteration"
    assert backbone.published[:2] == ["a", "b"]
    await history.evaluate_health()  # the packs that came meanwhile are in the next round
    assert {"new-1", "new-2"} <= set(backbone.published)
    history.close()
