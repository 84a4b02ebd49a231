"""``python -m bmsgate_publisher [--config FILE]``: the publisher container's entry point."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from bmsgate_common.service import service_main
from bmsgate_common.settings import Settings
from bmsgate_outputs.plan import hasp_problem
from bmsgate_outputs.topics import template_problem


def _check(cfg: Settings, args: argparse.Namespace) -> str | None:
    """Topic and openHASP templates are checked before anything connects."""
    for i, target in enumerate(cfg.publisher.targets):
        d = target.dongle
        for key, template in (
            ("main_topic", d.main_topic),
            ("status_topic", d.status_topic),
            ("daily_topic", d.daily_topic),
            ("mos_topic", d.mos_topic),
        ):
            problem = template_problem(template)
            if problem:
                return f"bad value for 'publisher.targets.{i}.dongle.{key}': {problem}"
        for j, plate in enumerate(target.openhasp):
            for obj, template in plate.objects.items():
                problem = hasp_problem(template)
                if problem:
                    where = f"publisher.targets.{i}.openhasp.{j}.objects.{obj}"
                    return f"bad value for '{where}': {problem}"
    return None


async def _run(cfg: Settings, args: argparse.Namespace) -> None:
    from .service import run_publisher

    await run_publisher(cfg)


def main(argv: Sequence[str] | None = None) -> int:
    """Publish until stopped."""
    return service_main("publisher", _run, argv, check=_check)


if __name__ == "__main__":
    sys.exit(main())
