"""What every service's entry point does: parse, validate the configuration, run until a signal."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import os
import signal
import sys
from collections.abc import Awaitable, Callable, Sequence
from typing import Final

from .logs import setup_logging
from .settings import ConfigError, Settings, load_settings

# exit code of every bmsgate command and service that stopped on a problem only the user can fix
# (configuration, input, a port it may not bind): a supervisor does not restart it in a loop
USER_ERROR: Final = 2  # as argparse's usage errors
# exit code of a service that stopped because a restart was asked for over the backbone:
# not 0, so a restart policy "on-failure" (systemd) starts it again like "unless-stopped" does
RESTART_EXIT = 75  # EX_TEMPFAIL, sysexits.h
# the reason of a pack's ``offline`` availability when its reader stopped cleanly: consumers
# show the pack offline at once, and the notifier does not report a BMS that went silent
READER_STOPPED: Final = "reader stopped"
_restart_requested: list[bool] = [False]
# glibc keeps memory freed inside its heap for reuse; a service running for months hands it back
# to the system now and then, so its RSS shows what it uses (the soak's notifier grew 0.05-0.1
# MB a minute in free heap space while the memory in use stayed flat; see docs/reliability.md)
TRIM_EVERY = 300.0  # [s]; a memory test sets it shorter before the service starts

Runner = Callable[[Settings, argparse.Namespace], Awaitable[None]]
Check = Callable[[Settings, argparse.Namespace], str | None]


def service_main(
    name: str,
    run: Runner,
    argv: Sequence[str] | None = None,
    *,
    add_arguments: Callable[[argparse.ArgumentParser], None] | None = None,
    check: Check | None = None,
) -> int:
    """Run service ``name``; a bad configuration is one line on stderr and exit code 2.

    Nothing connects before the configuration has been validated (and ``check`` passed).
    """
    parser = argparse.ArgumentParser(prog=f"bmsgate {name}")
    parser.add_argument("--config", help="YAML configuration file (default: $BMSGATE_CONFIG)")
    if add_arguments:
        add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        cfg = load_settings(args.config)
    except ConfigError as err:
        print(f"bmsgate {name}: {err}", file=sys.stderr)  # noqa: T201
        return USER_ERROR
    problem = check(cfg, args) if check else None
    if problem:
        print(f"bmsgate {name}: {problem}", file=sys.stderr)  # noqa: T201
        return USER_ERROR
    setup_logging(cfg.log_level, name)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(until_signal(_with_trimming(run(cfg, args))))
    return RESTART_EXIT if _restart_requested[0] else 0


def heap_trimmer() -> Callable[[], int] | None:
    """The C library's ``malloc_trim(0)`` (gives free heap pages back); None without glibc."""
    try:
        trim = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return lambda: int(trim(0))


async def trim_heap(every: float | None = None) -> None:
    """Give free heap memory back to the system every ``every`` (TRIM_EVERY) s, until cancelled."""
    trim = heap_trimmer()
    while trim is not None:
        await asyncio.sleep(TRIM_EVERY if every is None else every)
        trim()


async def _with_trimming(work: Awaitable[None]) -> None:
    trimmer = asyncio.create_task(trim_heap())
    try:
        await work
    finally:
        trimmer.cancel()


def request_restart() -> None:
    """Stop this service as SIGTERM would, and exit with RESTART_EXIT."""
    _restart_requested[0] = True
    os.kill(os.getpid(), signal.SIGTERM)


async def until_signal(work: Awaitable[None]) -> None:
    """Await ``work``; SIGTERM or SIGINT cancel it, so its cleanup runs and the exit code is 0."""
    task = asyncio.ensure_future(work)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, task.cancel)
    with contextlib.suppress(asyncio.CancelledError):
        await task
