"""``bmsgate run --only reader``: an edge machine's readers under a small supervisor.

An edge machine runs only its readers against a central broker. Their supervisor imports neither
asyncio nor pydantic (docs/performance.md): the configuration file is checked by a short-lived
child (run_check.py, the Settings model), which writes the validated settings for the readers;
one process forked from this one serves every bus, each bus a task and a reader ``reader-N`` of
its own (edge_buses.py: the lean reader, bmsgate_reader.lean, or the full one after a handover).
The rules are run.py's, from restarts.py: the process starts again after restart_delay when it
ends (every bus comes back; a bus's task alone is restarted inside it by the same rules); a stop
is SIGTERM, then SIGKILL after STOP_TIMEOUT. A changed file that validates is written and the
process told (SIGHUP): it restarts the buses whose bus or common settings changed, stops the
removed and starts the added ones, and answers SIGUSR1; then the broker forgets the removed
packs. An invalid file is one line in the log, and the readers keep running.

A configuration without a broker (the private one) or without a bus (a simulated pack) is run
by run.py's supervisor, which starts those.
"""

from __future__ import annotations

import contextlib
import gc
import json
import logging
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from bmsgate_common.exits import USER_ERROR
from bmsgate_common.logs import setup_logging
from bmsgate_common.service_table import SERVICES, fingerprint

from .proc import die_with_parent, set_name
from .restarts import STOP_TIMEOUT, TICK, ended, file_signature

log = logging.getLogger("bmsgate.run")

SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGCHLD, signal.SIGUSR1)
READERS: Final = "readers"  # the reader process, in the log


def check(config: str | None, overrides: dict[str, Any]) -> dict[str, Any]:
    """Validate the configuration in a child (run_check.py); its answer as data."""
    argv = [sys.executable, "-m", "bmsgate.run_check", config or "", json.dumps(overrides)]
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    lines = done.stdout.strip().splitlines()
    try:
        answer: dict[str, Any] = json.loads(lines[-1])
    except (IndexError, ValueError):
        why = done.stderr.strip().splitlines()[-1:] or [f"exit code {done.returncode}"]
        return {"error": f"the configuration could not be checked: {why[0]}"}
    return answer


@dataclass
class ReaderProcess:
    """The reader process under supervision."""

    name: str
    pid: int = 0  # 0: not running
    started: float = 0.0  # [s] monotonic
    backoff: float = 1.0  # [s] its last wait before a restart
    restart_at: float = 0.0  # [s] monotonic
    given_up: bool = False


class Edge:
    """The reader process of one configuration, started, restarted, told and stopped."""

    def __init__(self, runtime: Path) -> None:
        self.runtime = runtime
        self.reader = ReaderProcess(READERS)
        self.prints: dict[str, str] = {}  # the readers the process serves: name -> fingerprint
        self.packs: set[str] = set()  # of its buses

    def plan(self) -> tuple[dict[str, str], set[str]]:
        """The readers the written settings ask for (name -> fingerprint); their packs."""
        settings = json.loads(self.runtime.read_text())["settings"]
        reads = SERVICES["reader"].reads
        buses = settings.get("buses") or []
        plan = {f"reader-{i}": fingerprint(settings, reads, bus) for i, bus in enumerate(buses)}
        return plan, {pack["id"] for bus in buses for pack in bus["packs"]}

    def apply(self) -> None:
        """Have the process serve the written settings: started, or told (SIGHUP).

        The process restarts the buses whose settings changed, stops the removed ones, starts
        the added ones, and answers SIGUSR1; then the broker forgets the packs no bus has any
        more, after their readers said ``offline``.
        """
        plan, packs = self.plan()
        retired = {n: "its bus is no longer configured" for n in self.prints if n not in plan}
        changed = plan != self.prints
        self.prints = plan
        gone, self.packs = sorted(self.packs - packs), packs
        if self.reader.pid and changed:
            _signal(self.reader.pid, signal.SIGHUP)
            if signal.sigtimedwait({signal.SIGUSR1}, STOP_TIMEOUT + 2 * TICK) is None:
                log.warning("%s did not confirm the new settings", READERS)
        elif not self.reader.pid and (changed or not self.reader.given_up):
            self.reader.given_up = False  # stopped for good: new settings start it again
            self.start()
        if gone or retired:
            what = json.dumps({"packs": gone, "retired": retired})
            argv = [sys.executable, "-m", "bmsgate.run_check", "--forget", str(self.runtime), what]
            subprocess.run(argv, check=False)  # its one line says what it could not

    def start(self) -> None:
        """Fork the reader process: every bus a task of its event loop (edge_buses.py)."""
        reader = self.reader
        reader.started = time.monotonic()
        # the reader's collections pass our objects by: a collection writes to every object it
        # visits, which would copy each page both processes share (zygote.py)
        gc.freeze()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the reader; it ends with os._exit
            code = 1
            try:
                for sig in SIGNALS:
                    signal.signal(sig, signal.SIG_DFL)
                # SIGHUP stays blocked until the process handles it (edge_buses.serve): one
                # sent before waits for it rather than ending it
                signal.pthread_sigmask(signal.SIG_UNBLOCK, set(SIGNALS) - {signal.SIGHUP})
                os.setsid()  # own session: Ctrl-C reaches only the supervisor
                die_with_parent()
                set_name(b"bms-reader")
                # the backbone is plain TCP (its settings have no TLS): asyncio imports ssl only
                # to offer TLS, 4.5 MB resident with OpenSSL's libcrypto. asyncio guards that
                # import, so the reader (and the full reader it may become) runs without it; a
                # None in sys.modules makes ``import ssl`` fail (docs/performance.md)
                sys.modules.setdefault("ssl", None)  # type: ignore[arg-type]
                from .edge_buses import main

                code = main(self.runtime)
            except BaseException:  # reported as the interpreter would; never back to our loop
                import traceback

                traceback.print_exc()
            finally:
                try:
                    sys.stdout.flush()
                    sys.stderr.flush()
                finally:
                    os._exit(code)
        reader.pid = pid
        log.debug("started %s (pid %d)", reader.name, pid)

    def stop(self) -> None:
        """SIGTERM, SIGKILL if it still runs after STOP_TIMEOUT; reaped."""
        pid = self.reader.pid
        if not pid:
            return
        _signal(pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT
        while time.monotonic() < deadline:
            if _reaped(pid) is not None:
                self.reader.pid = 0
                return
            time.sleep(0.05)
        log.warning("%s did not stop in %.0f s; killing it", READERS, STOP_TIMEOUT)
        _signal(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        self.reader.pid = 0

    def reap(self) -> None:
        """Look at the process if it ended; start it again when its time has come."""
        reader = self.reader
        now = time.monotonic()
        if reader.pid:
            code = _reaped(reader.pid)
            if code is None:
                return
            reader.pid = 0
            wait = ended(reader.name, code, now - reader.started, reader.backoff)
            if wait is None:
                reader.given_up = True
                return
            reader.backoff = wait
            reader.restart_at = now + wait
        elif not reader.given_up and now >= reader.restart_at:
            self.start()


def _signal(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):  # it ended: reaped by the next look
        os.kill(pid, sig)


def _reaped(pid: int) -> int | None:
    """The exit code of ``pid`` if it has ended (reaped now); None while it runs."""
    try:
        done, status = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return -int(signal.SIGKILL)
    return os.waitstatus_to_exitcode(status) if done else None


def edge_run(config: str | None, overrides: dict[str, Any]) -> int | None:
    """Run the readers until SIGTERM or SIGINT; the exit code, or None when run.py must."""
    answer = check(config, overrides)
    if "error" in answer:
        print(f"bmsgate run: {answer['error']}", file=sys.stderr)  # noqa: T201
        return USER_ERROR
    if answer["edge"] is not None:
        return None
    setup_logging(answer["log_level"], "run")
    path = Path(answer["config_file"])
    edge = Edge(Path(answer["runtime"]))
    # the signals wait for us (sigtimedwait) rather than interrupting: no handler, no race
    signal.pthread_sigmask(signal.SIG_BLOCK, SIGNALS)
    try:
        edge.apply()
        log.info("services: %s (lean supervisor)", ", ".join(edge.prints) or "none")
        seen = file_signature(path)
        while True:
            got = signal.sigtimedwait(SIGNALS, TICK)
            if got is not None and got.si_signo not in (signal.SIGCHLD, signal.SIGUSR1):
                break
            now_seen = file_signature(path)
            if now_seen is not None and now_seen != seen:
                seen = now_seen
                _changed(edge, config, overrides, path)
            edge.reap()
    finally:
        edge.stop()
    return 0


def _changed(edge: Edge, config: str | None, overrides: dict[str, Any], path: Path) -> None:
    """Apply the changed configuration file, or say in one line why not."""
    answer = check(config, overrides)
    if "error" in answer:
        log.error("configuration not applied, services keep running: %s", answer["error"])
    elif answer["edge"] is not None:
        log.error(
            "configuration %s not applied: %s; restart bmsgate run to use it", path, answer["edge"]
        )
    else:  # a process stopped for good starts again if its settings changed
        edge.apply()
        log.info("configuration %s applied", path)
