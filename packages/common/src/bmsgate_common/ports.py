"""What may be given as a serial port: a device path, or a serial line over TCP.

pyserial opens any ``scheme://`` its URL handlers know, and some of them touch files:
``spy://PORT?file=/any/path`` truncates that file, ``loop://`` and ``alt://`` are no serial line
at all. So a port is an absolute path of a serial device (``/dev/ttyUSB0``,
``/dev/serial/by-id/...``, or a link to one) or ``socket://host:port`` / ``rfc2217://host:port``
(an RS485-to-Ethernet converter) without options; anything else is refused before pyserial sees it.
The settings' type of such a port is models.SerialPort.
"""

from __future__ import annotations

import os
import re
import stat
from typing import Final

NETWORK_SCHEMES: Final = ("socket", "rfc2217")
# host: a name, IPv4 address or [IPv6]; port: 1..65535 (checked below)
_NETWORK_PORT: Final = re.compile(
    r"^(?P<scheme>[a-z0-9]+)://(?P<host>[A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\]):(?P<port>[0-9]{1,5})$"
)
ALLOWED: Final = (
    "a device path (/dev/ttyUSB0, /dev/serial/by-id/...), socket://HOST:PORT or rfc2217://HOST:PORT"
)


def port_problem(port: str) -> str | None:
    """Why ``port`` is not an acceptable serial port, in a few words; None when it is."""
    if "://" in port:
        scheme = port.split("://", 1)[0].lower()
        if scheme not in NETWORK_SCHEMES:
            return f"{scheme}:// is not a serial port; use {ALLOWED}"
        found = _NETWORK_PORT.match(port)
        if found is None or found["scheme"] != scheme or not 0 < int(found["port"]) < 65536:
            return f"not {scheme}://HOST:PORT (no path, no options)"
        return None
    if not port.startswith("/") or "\0" in port:
        return f"not an absolute device path; use {ALLOWED}"
    if ".." in port.split("/"):
        return "a device path has no '..'"
    return None


def device_problem(port: str) -> str | None:
    """Like port_problem, and a path must lead to a character device now (a tty, a pty).

    The check at the moment of opening: a configured link may point elsewhere since.
    """
    problem = port_problem(port)
    if problem or "://" in port:
        return problem
    try:
        mode = os.stat(port).st_mode  # follows links: /dev/serial/by-id/... -> /dev/ttyUSB0
    except OSError:
        return None  # missing: the open says so in its own words
    if not stat.S_ISCHR(mode):
        return "not a serial device"
    return None
