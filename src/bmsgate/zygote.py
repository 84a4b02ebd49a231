"""Service processes of ``bmsgate run`` forked from one pre-imported parent, the zygote.

By default (``share``) the zygote forks nothing: it runs every service in a thread of its own,
each with its own event loop, and is the one process they share (named ``bms-services``); the
rest of this text is about ``bmsgate run --isolate``, a process per service.

Each service is a Python process that imports pydantic, the models, the backbone and its own
libraries: as separate interpreters that is 35-50 MB of private memory each, most of it the
imports. The zygote imports the services' modules once, before the first fork, moves them out
of the garbage collector's reach (``gc.freeze``: a collection writes to every object it visits
and would unshare its page), and forks one child per service. The children share those pages
with the zygote copy-on-write, so the machine holds the imports once. Those of every service that
runs, up front (``preload``): importing a service's modules only when it is first needed measured
worse (232 against 215 MB for the whole pipeline), as every later import writes to pages the
earlier children share; a service the configuration starts later is imported then.

Isolation stays as it was: every service is its own process with its own event loop, stopped,
killed and restarted on its own; a child gets SIGTERM when the zygote dies, the zygote when the
supervisor dies (PR_SET_PDEATHSIG). The children run the code the zygote imported: an upgrade of
the installed package takes effect at the next ``bmsgate run``.

Protocol on a socket pair, one JSON object per line:

* supervisor -> zygote: ``{"argv": ["bmsgate_api", "--config", "F"]}`` (module, arguments);
* zygote -> supervisor: ``{"pid": 1234}`` or ``{"error": "..."}`` in answer, in order, and
  ``{"exit": 1234, "code": 0}`` whenever a child ends (code < 0: killed by that signal).

* supervisor -> zygote: ``{"preload": ["bmsgate_api", ...]}``, no answer: import those now.

* supervisor -> zygote: ``{"thread": [...]}`` as ``argv``, but run in a thread of the zygote; the
  answer's "pid" is then a negative number naming it, and ``{"stop": N}`` ends it as SIGTERM
  ends a process (``{"kill": N}``: ends the zygote too if it has not stopped).

``bmsgate run`` forks the zygote from the supervisor itself (``fork_zygote``), after the
configuration is validated and before any event loop or thread exists, having imported the
modules of the services that configuration runs: those and the supervisor's own imports
(pydantic, the settings and message models, YAML, the simulator) are shared copy-on-write by the
supervisor, the zygote and every service, instead of a second copy in a zygote interpreter.
The forked zygote is named ``bmsgate-zygote`` (ps, top). Where it cannot be forked, or once it
has ended, the supervisor starts one as ``python -m bmsgate.zygote FD CONFIG MODULE...``;
CONFIG (the children's ``--config``) is there for ``ps``: a forked child shows the zygote's
command line, and so still names the configuration it runs with.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import importlib
import importlib.util
import json
import logging
import os
import runpy
import selectors
import signal
import socket
import sys
import threading
import time
import traceback
from typing import Any, Protocol

from .proc import die_with_parent, set_name

log = logging.getLogger("bmsgate.run")

ANSWER_TIMEOUT = 120.0  # [s] the first answer waits for the zygote's imports on a slow machine
STOP_WAIT = 10.0  # [s] for a forked zygote to end once its socket is closed
ZYGOTE_NAME = b"bmsgate-zygote"  # the forked zygote's name in ps and top
SHARED_NAME = b"bms-services"  # the zygote's, once services run in its threads


class ChildProcess(Protocol):
    """What the supervisor uses of a child: asyncio's Process has it, and so has Forked."""

    @property
    def pid(self) -> int: ...

    @property
    def returncode(self) -> int | None: ...

    def terminate(self) -> None: ...

    def kill(self) -> None: ...

    async def wait(self) -> int: ...


class Forked:
    """A child of the zygote as the supervisor sees it."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.returncode: int | None = None
        self._done: asyncio.Future[int] = asyncio.get_running_loop().create_future()

    def exited(self, code: int) -> None:
        """The zygote reaped it."""
        if self.returncode is None:
            self.returncode = code
            self._done.set_result(code)

    def terminate(self) -> None:
        """SIGTERM; ProcessLookupError when it is gone (as asyncio's Process)."""
        self._signal(signal.SIGTERM)

    def kill(self) -> None:
        """SIGKILL."""
        self._signal(signal.SIGKILL)

    def _signal(self, sig: int) -> None:
        if self.returncode is not None:
            raise ProcessLookupError(self.pid)  # reaped: the pid may belong to another process
        os.kill(self.pid, sig)

    async def wait(self) -> int:
        """Its exit code, once it has ended."""
        return await asyncio.shield(self._done)


class Shared(Forked):
    """A service in a thread of the zygote, the process it shares with others (``share``)."""

    def __init__(self, ident: int, tell: Any) -> None:
        super().__init__(ident)
        self._tell = tell  # sends a request to the zygote

    def _signal(self, sig: int) -> None:
        if self.returncode is not None:
            raise ProcessLookupError(self.pid)
        self._tell({"stop" if sig == signal.SIGTERM else "kill": self.pid})


class Zygote:
    """The supervisor's end: starts the zygote, asks it for children, hears them end."""

    def __init__(self, config: str, modules: list[str]) -> None:
        self.config = config
        self.modules = modules
        self.process: asyncio.subprocess.Process | None = None  # a zygote interpreter
        self.pid = 0  # the zygote's, forked or not
        self._writer: asyncio.StreamWriter | None = None
        self._listener: asyncio.Task[None] | None = None
        self._answers: asyncio.Queue[Forked | str] = asyncio.Queue()
        self._children: dict[int, Forked] = {}
        self._lock = asyncio.Lock()
        self._closing = False

    async def _start(self) -> None:
        global _forked
        if _forked is not None:  # forked from the supervisor at start (fork_zygote)
            (ours, self.pid), _forked = _forked, None
            self.process = None
            reader, self._writer = await asyncio.open_unix_connection(sock=ours)
            self._writer.write(json.dumps({"preload": self.modules}).encode() + b"\n")
        else:
            ours, theirs = socket.socketpair()
            with theirs:
                self.process = await asyncio.create_subprocess_exec(
                    sys.executable,
                    "-m",
                    "bmsgate.zygote",
                    str(theirs.fileno()),
                    self.config,
                    *self.modules,
                    pass_fds=(theirs.fileno(),),
                    start_new_session=True,
                    preexec_fn=die_with_parent,
                )
            self.pid = self.process.pid
            reader, self._writer = await asyncio.open_unix_connection(sock=ours)
        self._answers = asyncio.Queue()
        self._listener = asyncio.create_task(self._listen(reader), name="zygote")

    async def _listen(self, reader: asyncio.StreamReader) -> None:
        while line := await reader.readline():
            message = json.loads(line)
            if "pid" in message:
                pid = message["pid"]
                child = self._children[pid] = Shared(pid, self._tell) if pid < 0 else Forked(pid)
                self._answers.put_nowait(child)
            elif "exit" in message:
                gone = self._children.pop(message["exit"], None)
                if gone is not None:
                    gone.exited(message["code"])
            else:
                self._answers.put_nowait(str(message.get("error")))
        # the zygote is gone, and with it (PR_SET_PDEATHSIG) its children: report them ended
        if not self._closing:
            log.warning("the service zygote ended; services are started anew")
        for child in self._children.values():
            child.exited(-signal.SIGTERM)
        self._children.clear()
        self._answers.put_nowait("the zygote ended")
        self._writer = None
        if self.process is None and self.pid:  # a forked zygote is ours to reap
            pid, self.pid = self.pid, 0
            with contextlib.suppress(ChildProcessError):
                await asyncio.to_thread(os.waitpid, pid, 0)

    def _tell(self, request: dict[str, Any]) -> None:
        if self._writer is not None and not self._writer.is_closing():
            self._writer.write(json.dumps(request).encode() + b"\n")

    async def spawn(self, module: str, args: list[str], *, shared: bool = False) -> Forked:
        """Fork ``python -m module *args`` from the zygote; OSError if it cannot.

        ``shared``: run it in a thread of the zygote instead (see ``share``).
        """
        async with self._lock:
            if self._writer is None:
                await self._start()
            assert self._writer is not None
            kind = "thread" if shared else "argv"
            self._writer.write(json.dumps({kind: [module, *args]}).encode() + b"\n")
            try:
                async with asyncio.timeout(ANSWER_TIMEOUT):
                    await self._writer.drain()
                    answer = await self._answers.get()
            except (TimeoutError, ConnectionError) as err:
                raise OSError(f"the service zygote did not answer ({err!r})") from err
        if isinstance(answer, str):
            raise OSError(f"the service zygote could not fork: {answer}")
        return answer

    async def close(self) -> None:
        """Stop the zygote (its children get SIGTERM); for a supervisor that goes on living."""
        self._closing = True
        if self._writer is not None:
            self._writer.close()
        if self.process is not None and self.process.returncode is None:
            await self.process.wait()
        if self._listener is not None:
            if self.process is None:  # forked: the listener reaps it once it has ended
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(self._listener), STOP_WAIT)
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._listener


_zygote: Zygote | None = None
_forked: tuple[socket.socket, int] | None = None  # fork_zygote's socket and pid, until used
_modules: list[str] | None = None  # what a zygote started from now imports; None: every service
_shared = False  # services run as threads of the zygote rather than forked from it


def share(shared: bool = True) -> None:
    """Run the services ``start_child`` starts from now on in one process, a thread each.

    One interpreter holds the imports and the objects every service uses once: a forked child
    copies the pages it writes (reference counts, warm-up counters), 14-15 MB a service
    (docs/performance.md). Each service keeps its own thread and event loop and is stopped and
    restarted on its own; an exception that ends one ends only its thread. The process itself
    ending (a crash of the interpreter) ends them all, and the supervisor starts each again.
    """
    global _shared
    _shared = shared


def preload(modules: list[str]) -> None:
    """The service modules the next zygote imports before its first fork (those that run).

    A service started later that is not among them is imported by the zygote when first asked
    for: the services ``bmsgate run`` leaves out do not cost their imports (docs/performance.md).
    """
    global _modules
    _modules = sorted(set(modules))


def fork_zygote(modules: list[str] | tuple[str, ...] = ()) -> bool:
    """Fork the zygote from this process, the supervisor, before it runs an event loop (Linux).

    ``modules`` (the services that will run) are imported here first: the supervisor's imports
    and theirs are then shared copy-on-write by the zygote and every service, and the zygote
    keeps no copy of its own. Frozen first, so no collection in either process writes to those
    pages. False (the zygote is then started as an interpreter of its own when first needed)
    where a fork is not possible or safe: not Linux, a thread running, fork failing.
    """
    global _forked
    if sys.platform != "linux" or threading.active_count() > 1 or _forked is not None:
        return False
    gc.collect()
    gc.disable()  # while importing, as in the zygote (see _preload)
    for module in modules:
        _preload(module)
    gc.enable()
    if threading.active_count() > 1:  # an import started one: a fork would copy only this one
        return False
    gc.freeze()
    ours, theirs = socket.socketpair()
    supervisor = os.getpid()
    try:
        pid = os.fork()
    except OSError as err:
        ours.close()
        theirs.close()
        log.warning("could not fork the service zygote (%s); starting it when needed", err)
        return False
    if pid == 0:  # pragma: no cover - the zygote; it ends with os._exit
        ours.close()
        _forked_zygote(theirs, supervisor, set(modules))
    theirs.close()
    _forked = (ours, pid)
    return True


def zygote_modules(cfg: Any, only: list[str] | None = None) -> list[str]:
    """The service modules ``bmsgate run`` will start for ``cfg`` (Settings), for fork_zygote.

    A guess made before the private broker and the simulated buses are filled in: a service it
    misses is imported by the zygote when first asked for.
    """
    from bmsgate_common.config_file import revealed

    from .services import SERVICES, left_out

    idle = left_out(revealed(cfg), only)
    return sorted(
        {s.module for n, s in SERVICES.items() if n not in idle and (only is None or n in only)}
    )


def _forked_zygote(control: socket.socket, supervisor: int, loaded: set[str]) -> None:
    """The zygote forked from the supervisor: serve, then exit without returning to its stack."""
    code = 1
    try:
        os.setsid()  # own session: Ctrl-C reaches only the supervisor, as for an exec'd zygote
        die_with_parent()
        if os.getppid() != supervisor:  # the supervisor died before the line above took effect
            os._exit(1)
        for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT):
            signal.signal(sig, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        set_name(ZYGOTE_NAME)
        gc.disable()  # as in main(): the zygote only imports and forks
        zygote = os.getpid()
        argv = _serve(control, loaded)
        code = 0 if argv is None else _run_forked(argv, zygote)
    except BaseException:  # nothing may return into the supervisor's code
        traceback.print_exc()
    finally:
        try:
            with contextlib.suppress(OSError, ValueError):  # a broken pipe or a closed stream
                sys.stdout.flush()
                sys.stderr.flush()
        finally:
            os._exit(code)


def _run_forked(argv: list[str], zygote: int) -> int:
    """Run a service in a child of the forked zygote; its exit code (as the interpreter's)."""
    import atexit

    try:
        _become(argv, zygote)
        code = 0
    except SystemExit as done:
        if done.code is None or isinstance(done.code, int):
            code = done.code or 0
        else:
            print(done.code, file=sys.stderr)  # noqa: T201
            code = 1
    except BaseException:  # reported as the interpreter would
        traceback.print_exc()
        code = 1
    atexit._run_exitfuncs()  # the service's own, as at an interpreter's exit
    return code


def forkable(argv: list[str]) -> str | None:
    """The service module of ``argv`` when it is ``[python, -m, <a service module>, ...]``."""
    from .services import SERVICES

    modules = {s.module for s in SERVICES.values()}
    if len(argv) >= 3 and argv[0] == sys.executable and argv[1] == "-m" and argv[2] in modules:
        return argv[2]
    return None


async def start_child(argv: list[str]) -> ChildProcess:
    """Start a service: forked from the zygote where it can be, else as a process of its own."""
    global _zygote
    module = forkable(argv) if sys.platform == "linux" else None
    if module is not None:
        if _zygote is None:
            from .services import SERVICES

            config = argv[argv.index("--config") + 1] if "--config" in argv[:-1] else "-"
            modules = _modules if _modules else sorted({s.module for s in SERVICES.values()})
            _zygote = Zygote(config, modules)
        try:
            return await _zygote.spawn(module, argv[3:], shared=_shared)
        except OSError as err:
            log.warning("%s; starting %s as a process of its own", err, module)
    # own session: Ctrl-C reaches only the supervisor, which stops the children in order
    return await asyncio.create_subprocess_exec(
        *argv, start_new_session=True, preexec_fn=die_with_parent
    )


async def stop_zygote() -> None:
    """Stop the zygote if one runs (tests; a supervisor that exits takes it along anyway)."""
    global _zygote
    if _zygote is not None:
        await _zygote.close()
        _zygote = None


# --- the zygote process ---------------------------------------------------------------------


def _preload(module: str) -> None:
    """Import a service's package and its ``service`` module (what its entry point runs).

    With the garbage collector off (a collection would free objects and leave holes in pages a
    child then fills, copying them); then frozen, so the children's collections pass them by.
    """
    for name in (module, f"{module}.service"):
        try:
            if importlib.util.find_spec(name) is not None:
                importlib.import_module(name)
        except Exception as err:  # the child imports it again and reports it as it would alone
            print(f"bmsgate zygote: importing {name} failed: {err!r}", file=sys.stderr)  # noqa: T201
    if threading.active_count() > 1:  # a fork copies only the forking thread
        print(f"bmsgate zygote: {module} started a thread; forking anyway", file=sys.stderr)  # noqa: T201
    gc.freeze()


def _name_process(module: str) -> None:
    """Let ps and top show the service (``bms-api``) rather than the zygote's command."""
    set_name(module.replace("bmsgate_", "bms-").encode())


def _serve(control: socket.socket, loaded: set[str]) -> list[str] | None:
    """Answer requests until the supervisor closes the socket (None); in a child, its argv."""
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)  # a handler, so the wake-up fd is written
    selector = selectors.DefaultSelector()
    selector.register(control, selectors.EVENT_READ)
    selector.register(wake_r, selectors.EVENT_READ)
    signal.signal(signal.SIGTERM, lambda *_: None)  # hosted services stop cleanly first
    out = control.makefile("wb", buffering=0)
    pending = b""
    sending = threading.Lock()  # hosted services report their end from their own threads
    host = _Host()

    def send(message: dict[str, Any]) -> None:
        with sending, contextlib.suppress(OSError, ValueError):
            out.write(json.dumps(message).encode() + b"\n")

    while True:
        for key, _ in selector.select():
            if key.fileobj == wake_r:
                if signal.SIGTERM in os.read(wake_r, 4096):  # the supervisor is gone
                    host.end()
                    return None
                while True:
                    try:
                        pid, status = os.waitpid(-1, os.WNOHANG)
                    except ChildProcessError:
                        break
                    if pid == 0:
                        break
                    send({"exit": pid, "code": os.waitstatus_to_exitcode(status)})
                continue
            data = control.recv(65536)
            if not data:
                host.end()
                return None
            pending += data
            while b"\n" in pending:
                line, pending = pending.split(b"\n", 1)
                request = json.loads(line)
                if "preload" in request:  # a forked zygote learns what runs with the first start
                    for module in request["preload"]:
                        if module not in loaded:
                            _preload(str(module))
                            loaded.add(str(module))
                    continue
                if "thread" in request or "stop" in request or "kill" in request:
                    host.serve(request, loaded, send)
                    continue
                if host.threads:  # a fork would copy only the forking thread
                    send({"error": "services run in this process's threads; not forking"})
                    continue
                argv = [str(a) for a in request["argv"]]
                if argv[0] not in loaded:  # not named at start: import it now
                    _preload(argv[0])
                    loaded.add(argv[0])
                try:
                    pid = os.fork()
                except OSError as err:
                    send({"error": str(err)})
                    continue
                if pid == 0:  # the child: leave the zygote's loop behind
                    signal.set_wakeup_fd(-1)
                    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
                    signal.signal(signal.SIGTERM, signal.SIG_DFL)
                    selector.close()
                    out.close()
                    control.close()
                    os.close(wake_r)
                    os.close(wake_w)
                    return argv
                send({"pid": pid})


class _Host:
    """The zygote's services that run in its own threads (``share``)."""

    def __init__(self) -> None:
        self.threads: dict[int, tuple[threading.Thread, Any]] = {}  # by id (< 0), with Hosted
        self._next = 0

    def serve(self, request: dict[str, Any], loaded: set[str], send: Any) -> None:
        """Start a service (``thread``), stop one (``stop``), or end one that will not stop."""
        if "thread" in request:
            argv = [str(a) for a in request["thread"]]
            if argv[0] not in loaded:
                _preload(argv[0])
                loaded.add(argv[0])
            self._next -= 1
            send({"pid": self._start(self._next, argv, send)})
            return
        entry = self.threads.get(int(request.get("stop", request.get("kill", 0))))
        if entry is None:
            return
        thread, hosted = entry
        hosted.stop()
        if "kill" in request and thread.is_alive():
            # a thread cannot be killed: the process goes, and the supervisor starts each again
            print(  # noqa: T201
                f"bmsgate: {hosted.name} did not stop; ending its process, all of whose "
                "services start again",
                file=sys.stderr,
                flush=True,
            )
            os._exit(1)

    def _start(self, ident: int, argv: list[str], send: Any) -> int:
        from bmsgate_common.logs import setup_logging
        from bmsgate_common.service import Hosted, run_hosted

        if not self.threads:  # the first: the process now runs services, not only forks
            gc.enable()
            setup_logging(logging.getLevelName(logging.getLogger().level), shared=True)
        module, *args = argv
        name = module.removeprefix("bmsgate_")
        hosted = Hosted(name)

        def run() -> None:
            set_name(f"bms-{name}".encode())  # this thread's, as ps -L and top -H show
            code = 1
            try:
                main = importlib.import_module(f"{module}.__main__").main
                code = run_hosted(hosted, main, args)
            except BaseException:  # reported as the interpreter would, the others go on
                traceback.print_exc()
            finally:
                self.threads.pop(ident, None)
                send({"exit": ident, "code": code})

        thread = threading.Thread(target=run, name=f"bms-{name}", daemon=True)
        self.threads[ident] = (thread, hosted)
        thread.start()
        set_name(SHARED_NAME)
        return ident

    def end(self, wait: float = STOP_WAIT) -> None:
        """Stop every service in this process and wait for them (``wait`` s at most)."""
        entries = list(self.threads.values())
        for _, hosted in entries:
            hosted.stop()
        deadline = time.monotonic() + wait
        for thread, _ in entries:
            thread.join(max(0.0, deadline - time.monotonic()))


def main() -> None:
    """``python -m bmsgate.zygote FD CONFIG MODULE...``."""
    fd, _, *modules = sys.argv[1:]
    control = socket.socket(fileno=int(fd))
    gc.disable()  # for good in the zygote: it only imports and forks; the children collect
    for module in modules:
        _preload(module)
    zygote = os.getpid()
    argv = _serve(control, set(modules))
    if argv is None:
        return  # the supervisor closed the socket; the children get SIGTERM as we exit
    _become(argv, zygote)


def _become(argv: list[str], zygote: int) -> None:
    """In a child of the zygote: become the service ``argv`` names, and run it."""
    gc.enable()
    os.setsid()  # own session, as a service started on its own
    die_with_parent()
    if os.getppid() != zygote:  # the zygote died before the line above took effect
        sys.exit(1)
    module, *args = argv
    _name_process(module)
    sys.argv = [module, *args]
    runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
