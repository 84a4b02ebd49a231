"""The Modbus TCP server: pymodbus 3.16 ``SimDevice`` per unit, fed from the RegisterStore.

pymodbus keeps one register list per device. Every request passes through ``_access`` first,
which copies the unit's current block into that list (one synchronous slice assignment, so the
request sees one whole state) or answers with an exception.
"""

from __future__ import annotations

import errno
import logging
import re
import socket
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from functools import partial
from typing import Any

from pymodbus.constants import ExcCodes
from pymodbus.server import ModbusTcpServer
from pymodbus.server.requesthandler import ServerRequestHandler
from pymodbus.simulator import DataType, SimData, SimDevice

from .logic import BIT_FUNCTIONS, RegisterStore
from .registers import BASE, SIZE

log = logging.getLogger(__name__)

# (client address, unit, offset in the block, values) -> None when accepted, else the exception
WriteHandler = Callable[[str, int, int, list[int]], Awaitable[ExcCodes | None]]
CATCH_ALL = 0  # pymodbus's SimDevice id 0 answers every unit id no other device has
_EXCEPTION_LINE = re.compile(r"^[A-Za-z_][\w.]*(?:Error|Exception)\b.*$", re.MULTILINE)
READBACK_FUNCTIONS = frozenset({6, 22})  # read right after their own write: echo what was written


class RequestRefused(logging.Filter):
    """A request pymodbus's own code cannot serve: one warning line, not an ERROR with a traceback.

    pymodbus answers DEVICE_FAILURE and goes on (an unknown diagnostic sub-function raises a
    KeyError inside pymodbus 3.16), but logs the traceback at ERROR: any peer on the network could
    fill the log with them. A failure that passes through bmsgate's own code keeps its traceback.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        """Rewrite the record in place; never drops one."""
        text = record.getMessage()
        if text.startswith("Datastore unable to fulfill request") and __package__ not in text:
            found = _EXCEPTION_LINE.search(text)  # "KeyError: 3585", below the stack
            cause = found.group(0) if found else text.splitlines()[0]
            record.msg, record.args = "request refused (DEVICE_FAILURE): %s", (cause,)
            record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


# the address of the client whose request is being served: pymodbus runs each request in a task
# of its own, and its device callbacks do not say which connection asked
PEER: ContextVar[str] = ContextVar("modbus_peer", default="unknown")


class _PeerHandler(ServerRequestHandler):
    """One connection's request handler that tells the device callbacks who is asking."""

    async def handle_request(self) -> None:
        peer = self.transport.get_extra_info("peername") if self.transport else None
        token = PEER.set(str(peer[0]) if peer else "unknown")
        try:
            await super().handle_request()  # type: ignore[no-untyped-call]
        finally:
            PEER.reset(token)


class _TcpServer(ModbusTcpServer):
    def callback_new_connection(self) -> Any:
        return _PeerHandler(  # type: ignore[no-untyped-call]
            self, self.trace_packet, self.trace_pdu, self.trace_connect
        )


class ListenError(Exception):
    """The server cannot listen; the message is one line saying why and what to do."""

    def __init__(self, message: str, *, lasting: bool) -> None:
        """``lasting``: only the user can fix it (privilege, address), retrying is useless."""
        super().__init__(message)
        self.lasting = lasting


def listen_problem(host: str, port: int) -> ListenError | None:
    """Try the bind pymodbus will do: why it fails and how to fix it, or None.

    A port in use may come free (another instance stopping); every other problem is lasting.
    """
    try:
        infos = socket.getaddrinfo(
            host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
    except socket.gaierror as err:
        return ListenError(
            f"cannot listen on {host}:{port}: unknown address ({err.strerror}); fix modbus.host",
            lasting=True,
        )
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as asyncio's server does
        try:
            sock.bind(address)
        except PermissionError:
            return ListenError(
                f"cannot listen on {host}:{port}: permission denied; ports below 1024 need root or "
                "CAP_NET_BIND_SERVICE (systemd: AmbientCapabilities=CAP_NET_BIND_SERVICE; or "
                "setcap cap_net_bind_service=+ep on the python binary), or set modbus.port "
                "(bmsgate run --modbus-port 5020)",
                lasting=True,
            )
        except OSError as err:
            if err.errno == errno.EADDRINUSE:
                return ListenError(
                    f"cannot listen on {host}:{port}: the port is in use by another program "
                    f"(see: ss -ltnp 'sport = :{port}'); stop it or set modbus.port",
                    lasting=False,
                )
            if err.errno == errno.EADDRNOTAVAIL:
                return ListenError(
                    f"cannot listen on {host}:{port}: no such local address; fix modbus.host",
                    lasting=True,
                )
            return ListenError(f"cannot listen on {host}:{port}: {err.strerror}", lasting=False)
    return None


class RegisterServer:
    """Serves the store's blocks: one pymodbus device per unit plus a catch-all."""

    def __init__(self, store: RegisterStore, host: str, port: int, on_write: WriteHandler) -> None:
        """Serve ``store`` on ``host:port``; ``on_write`` decides about every write request."""
        self.store = store
        self.host = host
        self.port = port
        self.on_write = on_write
        self.requests = 0
        self.refused = 0
        self._server: ModbusTcpServer | None = None

    @property
    def clients(self) -> int:
        """Modbus TCP clients connected now."""
        return len(self._server.active_connections) if self._server is not None else 0

    def _devices(self) -> list[SimDevice]:
        devices = [
            SimDevice(
                id=unit,
                simdata=[SimData(BASE, count=SIZE, datatype=DataType.REGISTERS)],
                action=partial(self._access, unit),
            )
            for unit in self.store.units
        ]
        if CATCH_ALL not in self.store.units:
            devices.append(
                SimDevice(
                    id=CATCH_ALL,
                    simdata=[SimData(BASE, count=SIZE, datatype=DataType.REGISTERS)],
                    action=self._unknown_unit,
                )
            )
        return devices

    async def _unknown_unit(
        self,
        func_code: int,
        start: int,
        address: int,
        count: int,
        registers: list[int],
        values: list[int] | list[bool] | None,
    ) -> ExcCodes | None:
        self.requests += 1
        self.refused += 1
        return ExcCodes.GATEWAY_PATH_UNAVIABLE  # [sic] pymodbus's name for 0x0A

    async def _access(
        self,
        unit: int,
        func_code: int,
        start: int,
        address: int,
        count: int,
        registers: list[int],
        values: list[int] | list[bool] | None,
    ) -> ExcCodes | None:
        self.requests += 1
        if func_code in BIT_FUNCTIONS:
            self.refused += 1
            return ExcCodes.ILLEGAL_FUNCTION
        if values is not None:
            offset, written = address - start, [int(v) for v in values]
            answer = await self.on_write(PEER.get(), unit, offset, written)
            if answer is not None:
                self.refused += 1
            # an accepted write lands in pymodbus's copy only; the next request copies the
            # store's block over it, so the register shows the state the BMS confirms
            return answer
        if func_code in READBACK_FUNCTIONS:
            return None
        block = self.store.block(unit)
        if block is None:
            self.refused += 1
            return ExcCodes.GATEWAY_NO_RESPONSE  # configured, but no state was ever seen
        registers[:SIZE] = block
        return None

    async def start(self) -> None:
        """Listen; raises ListenError with a one-line reason when the port cannot be bound."""
        problem = listen_problem(self.host, self.port)
        if problem:
            raise problem
        pymodbus_log = logging.getLogger("pymodbus.logging")
        if not any(isinstance(f, RequestRefused) for f in pymodbus_log.filters):
            pymodbus_log.addFilter(RequestRefused())
        self._server = _TcpServer(self._devices(), address=(self.host, self.port))
        try:
            await self._server.serve_forever(background=True)
        except RuntimeError as err:  # pymodbus hides the errno; the check above usually has it
            where = f"{self.host}:{self.port}"
            raise ListenError(f"cannot listen on {where}: {err}", lasting=False) from None
        sockets = getattr(self._server.transport, "sockets", None)
        if self.port == 0 and sockets:  # port 0: the system chose one (tests)
            self.port = int(sockets[0].getsockname()[1])
        log.info(
            "modbus server on %s:%d, units %s",
            self.host,
            self.port,
            ", ".join(f"{u}={p}" for u, p in sorted(self.store.units.items())) or "none",
        )

    async def stop(self) -> None:
        """Close the listener and every connection."""
        if self._server is not None:
            await self._server.shutdown()  # type: ignore[no-untyped-call]
            self._server = None
