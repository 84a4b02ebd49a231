"""The web UI announced on the local network by mDNS: ``http://<api.mdns_name>.local/``.

A ``_http._tcp`` service (DNS-SD) plus the host name's address records, through python-zeroconf,
so a phone's browser or a service browser finds the gateway without knowing its IP address.
Off with ``api.mdns: false``. A name already taken on the network gets a number appended by
zeroconf (``bmsgate-2``).
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import socket
from collections.abc import AsyncIterator

import ifaddr
from zeroconf import IPVersion, ServiceInfo
from zeroconf.asyncio import AsyncZeroconf

from bmsgate_common.settings import ApiSettings

log = logging.getLogger(__name__)

SERVICE_TYPE = "_http._tcp.local."


def local_addresses(host: str) -> list[str]:
    """The IPv4 addresses to announce: ``host`` itself, or every non-loopback one for 0.0.0.0."""
    if host not in ("0.0.0.0", "::", ""):
        return [host]
    found = [
        ip.ip
        for adapter in ifaddr.get_adapters()
        for ip in adapter.ips
        if isinstance(ip.ip, str) and not ipaddress.ip_address(ip.ip).is_loopback
    ]
    return sorted(set(found)) or ["127.0.0.1"]


def service_info(name: str, port: int, addresses: list[str], title: str) -> ServiceInfo:
    """The DNS-SD record set: ``<name>._http._tcp.local.`` on ``<name>.local.``:port."""
    return ServiceInfo(
        SERVICE_TYPE,
        f"{name}.{SERVICE_TYPE}",
        port=port,
        addresses=[socket.inet_aton(a) for a in addresses],
        server=f"{name}.local.",
        properties={"path": "/", "title": title},
    )


@contextlib.asynccontextmanager
async def announced(cfg: ApiSettings) -> AsyncIterator[ServiceInfo | None]:
    """Announce the web UI while the block runs; nothing when api.mdns is off or impossible."""
    if not cfg.mdns:
        yield None
        return
    try:  # both list the interfaces through netlink, which a sandbox may forbid (deploy/systemd)
        info = service_info(cfg.mdns_name, cfg.port, local_addresses(cfg.host), cfg.title)
        zc = AsyncZeroconf(ip_version=IPVersion.V4Only)
    except OSError as err:  # no usable interface: the UI works, unannounced
        log.warning("mDNS announcement failed: %s", err)
        yield None
        return
    try:
        await zc.async_register_service(info, allow_name_change=True)
    except OSError as err:  # no multicast on this network
        log.warning("mDNS announcement failed: %s", err)
        await zc.async_close()
        yield None
        return
    except BaseException:  # stopped while announcing
        await zc.async_close()
        raise
    log.info("announced as http://%s.local:%d/ (mDNS)", cfg.mdns_name, cfg.port)
    try:
        yield info
    finally:
        with contextlib.suppress(OSError):
            await zc.async_unregister_service(info)
        await zc.async_close()
