"""An RFC 2217 (Telnet COM port control) server for a local serial port, as its own process.

It stands in for an RS485-to-Ethernet gateway in "virtual COM / RFC 2217" mode (EW11, USR,
Waveshare): the protocol state machine is pyserial's ``serial.rfc2217.PortManager``, so the
client under test (pyserial's ``rfc2217://`` handler) talks to a real server. One client at a
time; ``python -m tests.support.rfc2217_server DEVICE`` prints ``rfc2217://127.0.0.1:PORT``.
"""

from __future__ import annotations

import argparse
import socket
import sys
import threading

import serial
import serial.rfc2217


class _PtyPort(serial.Serial):
    """A pty (the simulator's) has no modem lines: their ioctls fail, so they read as low."""

    def _update_rts_state(self) -> None:
        pass

    def _update_dtr_state(self) -> None:
        pass

    @property
    def cts(self) -> bool:
        return False

    @property
    def dsr(self) -> bool:
        return False

    @property
    def ri(self) -> bool:
        return False

    @property
    def cd(self) -> bool:
        return False


class _Connection:
    """The ``write`` PortManager needs, on a socket."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock

    def write(self, data: bytes) -> None:
        self.sock.sendall(data)


def _to_network(
    port: serial.Serial,
    manager: serial.rfc2217.PortManager,
    conn: socket.socket,
    stop: threading.Event,
) -> None:
    while not stop.is_set():
        try:
            data = port.read(port.in_waiting or 1)
            if data:
                conn.sendall(b"".join(manager.escape(data)))
        except (OSError, serial.SerialException):
            break
    stop.set()


def serve_client(conn: socket.socket, device: str) -> None:
    """Bridge one client to ``device`` until either side goes away."""
    port = _PtyPort(device, timeout=0.05)
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    manager = serial.rfc2217.PortManager(port, _Connection(conn))
    stop = threading.Event()
    pump = threading.Thread(target=_to_network, args=(port, manager, conn, stop), daemon=True)
    pump.start()
    try:
        while not stop.is_set():
            data = conn.recv(1024)
            if not data:
                break
            port.write(b"".join(manager.filter(data)))  # Telnet commands are handled in there
    except OSError as err:
        print("rfc2217 server:", repr(err), file=sys.stderr)
    finally:
        stop.set()
        pump.join(1)
        port.close()
        conn.close()


def main(argv: list[str] | None = None) -> int:
    """Listen on loopback and serve one client after another."""
    parser = argparse.ArgumentParser()
    parser.add_argument("device")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)
    listener = socket.create_server(("127.0.0.1", args.port))
    print(f"rfc2217://127.0.0.1:{listener.getsockname()[1]}", flush=True)
    while True:
        conn, _ = listener.accept()
        serve_client(conn, args.device)


if __name__ == "__main__":
    sys.exit(main())
