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

from pydantic import BaseModel, SecretStr

from .exits import READER_STOPPED as READER_STOPPED
from .exits import RESTART_EXIT as RESTART_EXIT
from .exits import USER_ERROR as USER_ERROR
from .hosted import HOSTED as HOSTED
from .hosted import Hosted as Hosted
from .logs import SERVICE, hold_secrets, secret_parts, setup_logging, url_credentials
from .service_table import COMMON_SECTIONS, SERVICES
from .settings import ConfigError, Settings, load_settings

_restart_requested: list[bool] = [False]
# glibc keeps memory freed inside its heap for reuse; a service running for months hands it back
# to the system now and then, so its RSS shows what it uses (the soak's notifier grew 0.05-0.1
# MB a minute in free heap space while the memory in use stayed flat; see docs/reliability.md)
TRIM_EVERY = 300.0  # [s]; a memory test sets it shorter before the service starts


def run_hosted(hosted: Hosted, main: Callable[[list[str]], int], argv: list[str]) -> int:
    """Run a service's ``main(argv)`` as ``hosted`` in this thread; its exit code."""
    HOSTED.set(hosted)
    SERVICE.set(hosted.name)
    try:
        return main(argv)
    except SystemExit as done:  # argparse's usage errors
        return done.code if isinstance(done.code, int) else (0 if done.code is None else 1)


def held_secrets(cfg: Settings, service: str) -> set[str]:
    """The secrets in the configuration sections ``service`` reads (service_table).

    Each SecretStr's secret parts (the backbone password, a target's password, the InfluxDB
    token, the notifier's URLs, the web password's hash) and the password of any URL
    (``http://user:password@host``). An unknown service: every section's.
    """
    reads = SERVICES[service].reads if service in SERVICES else ("*",)
    names = Settings.model_fields if "*" in reads else (*COMMON_SECTIONS, *reads)
    found: set[str] = set()

    def walk(value: object) -> None:
        if isinstance(value, SecretStr):
            found.update(secret_parts(value.get_secret_value()))
        elif isinstance(value, BaseModel):
            for field in type(value).model_fields:
                walk(getattr(value, field))
        elif isinstance(value, list | tuple):
            for item in value:
                walk(item)
        elif isinstance(value, str) and "://" in value:
            found.update(url_credentials(value))

    for name in names:
        walk(getattr(cfg, name, None))
    return found


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
    # before anything reads them: a check may log them (Apprise, reading a URL, at DEBUG), and
    # where services share a process its logging is on already
    hold_secrets(held_secrets(cfg, name))
    problem = check(cfg, args) if check else None
    if problem:
        print(f"bmsgate {name}: {problem}", file=sys.stderr)  # noqa: T201
        return USER_ERROR
    setup_logging(cfg.log_level, name)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(until_signal(_with_trimming(run(cfg, args))))
    hosted = HOSTED.get()
    restart = hosted.restart if hosted is not None else restart_asked()
    return RESTART_EXIT if restart else 0


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


def restart_asked() -> bool:
    """Whether this process's service asked for a restart (request_restart)."""
    return _restart_requested[0]


def request_restart() -> None:
    """Stop this service as SIGTERM would, and exit with RESTART_EXIT."""
    hosted = HOSTED.get()
    if hosted is not None:  # only this service, not the process it shares
        hosted.restart = True
        hosted.stop()
        return
    _restart_requested[0] = True
    os.kill(os.getpid(), signal.SIGTERM)


async def until_signal(work: Awaitable[None]) -> None:
    """Await ``work``; SIGTERM or SIGINT cancel it, so its cleanup runs and the exit code is 0."""
    task = asyncio.ensure_future(work)
    hosted = HOSTED.get()
    if hosted is not None:  # its process's signals are not its own: stop() cancels it
        hosted.attach(task)
    else:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, task.cancel)
    with contextlib.suppress(asyncio.CancelledError):
        await task
