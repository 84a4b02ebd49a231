"""``bmsgate run --only reader``: an edge machine's readers under a small supervisor.

An edge machine runs only its readers against a central broker. Their supervisor imports neither
asyncio nor pydantic (docs/performance.md): the configuration file is checked by a short-lived
child (run_check.py, the Settings model), which writes the validated settings for the readers;
each reader is a process forked from this one, the lean reader (bmsgate_reader.lean). The rules
are run.py's, from restarts.py: a reader that ends starts again after restart_delay, one that
exits with USER_ERROR stays stopped until its configuration changes, RESTART_EXIT starts it
again at once; a stop is SIGTERM, then SIGKILL after STOP_TIMEOUT. A changed file that validates
restarts the readers whose bus or common settings changed; an invalid one is one line in the
log, and the readers keep running.

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
from typing import Any

from bmsgate_common.exits import USER_ERROR
from bmsgate_common.logs import setup_logging
from bmsgate_common.service_table import SERVICES, fingerprint

from .proc import die_with_parent, set_name
from .restarts import STOP_TIMEOUT, TICK, ended, file_signature

log = logging.getLogger("bmsgate.run")

SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGCHLD)


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
    """One reader process under supervision."""

    name: str
    index: int  # its bus
    fingerprint: str
    pid: int = 0  # 0: not running
    started: float = 0.0  # [s] monotonic
    backoff: float = 1.0  # [s] its last wait before a restart
    restart_at: float = 0.0  # [s] monotonic
    given_up: bool = False


class Edge:
    """The readers of one configuration, started, restarted and stopped."""

    def __init__(self, runtime: Path) -> None:
        self.runtime = runtime
        self.readers: dict[str, ReaderProcess] = {}
        self.packs: set[str] = set()  # of the buses whose readers run

    def plan(self) -> tuple[dict[str, tuple[int, str]], set[str]]:
        """The readers the written settings ask for (name -> (bus, fingerprint)); their packs."""
        settings = json.loads(self.runtime.read_text())["settings"]
        reads = SERVICES["reader"].reads
        buses = settings.get("buses") or []
        plan = {
            f"reader-{i}": (i, fingerprint(settings, reads, bus)) for i, bus in enumerate(buses)
        }
        return plan, {pack["id"] for bus in buses for pack in bus["packs"]}

    def apply(self) -> None:
        """Stop the readers no longer wanted or whose settings changed, start the missing.

        The broker forgets the packs no bus has any more, after their readers said ``offline``.
        """
        plan, packs = self.plan()
        stale = [n for n, r in self.readers.items() if plan.get(n, (0, ""))[1] != r.fingerprint]
        self.stop(stale)
        gone, self.packs = sorted(self.packs - packs), packs
        retired = {n: "its bus is no longer configured" for n in stale if n not in plan}
        for name in stale:
            del self.readers[name]
        if gone or retired:
            what = json.dumps({"packs": gone, "retired": retired})
            argv = [sys.executable, "-m", "bmsgate.run_check", "--forget", str(self.runtime), what]
            subprocess.run(argv, check=False)  # its one line says what it could not
        for name, (index, print_) in plan.items():
            if name not in self.readers:
                self.readers[name] = reader = ReaderProcess(name, index, print_)
                self.start(reader)

    def start(self, reader: ReaderProcess) -> None:
        """Fork the reader: a process of its own that imports what it runs."""
        reader.started = time.monotonic()
        # the reader's collections pass our objects by: a collection writes to every object it
        # visits, which would copy each page both processes share (zygote.py)
        gc.freeze()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the reader; it ends with os._exit
            code = 1
            try:
                signal.pthread_sigmask(signal.SIG_UNBLOCK, SIGNALS)
                for sig in SIGNALS:
                    signal.signal(sig, signal.SIG_DFL)
                os.setsid()  # own session: Ctrl-C reaches only the supervisor
                die_with_parent()
                set_name(b"bms-reader")
                # the backbone is plain TCP (its settings have no TLS): asyncio imports ssl only
                # to offer TLS, 4.5 MB resident with OpenSSL's libcrypto. asyncio guards that
                # import, so the reader (and the full reader it may become) runs without it; a
                # None in sys.modules makes ``import ssl`` fail (docs/performance.md)
                sys.modules.setdefault("ssl", None)  # type: ignore[arg-type]
                from bmsgate_reader.lean import main

                code = main(self.runtime, reader.index)
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

    def stop(self, names: list[str]) -> None:
        """SIGTERM to each, SIGKILL to those still running after STOP_TIMEOUT; reaped."""
        running = {self.readers[n].pid: n for n in names if self.readers[n].pid}
        for pid in running:
            _signal(pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT
        while running and time.monotonic() < deadline:
            for pid in list(running):
                if _reaped(pid) is not None:
                    self.readers[running.pop(pid)].pid = 0
            time.sleep(0.05)
        for pid, name in running.items():
            log.warning("%s did not stop in %.0f s; killing it", name, STOP_TIMEOUT)
            _signal(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            self.readers[name].pid = 0

    def reap(self) -> None:
        """Look at the readers that ended; start again those whose time has come."""
        now = time.monotonic()
        for reader in self.readers.values():
            if reader.pid:
                code = _reaped(reader.pid)
                if code is None:
                    continue
                reader.pid = 0
                wait = ended(reader.name, code, now - reader.started, reader.backoff)
                if wait is None:
                    reader.given_up = True
                    continue
                reader.backoff = wait
                reader.restart_at = now + wait
            elif not reader.given_up and now >= reader.restart_at:
                self.start(reader)


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
        log.info("services: %s (lean supervisor)", ", ".join(edge.readers) or "none")
        seen = file_signature(path)
        while True:
            got = signal.sigtimedwait(SIGNALS, TICK)
            if got is not None and got.si_signo != signal.SIGCHLD:
                break
            now_seen = file_signature(path)
            if now_seen is not None and now_seen != seen:
                seen = now_seen
                _changed(edge, config, overrides, path)
            edge.reap()
    finally:
        edge.stop(list(edge.readers))
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
    else:  # a reader stopped for good starts again if its settings changed (a new ReaderProcess)
        edge.apply()
        log.info("configuration %s applied", path)
