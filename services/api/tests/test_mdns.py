"""The web UI's mDNS announcement: the record set, and a zeroconf browser that finds it."""

from __future__ import annotations

import asyncio
import errno
import socket

import ifaddr
import pytest
from zeroconf import IPVersion, ServiceStateChange, Zeroconf
from zeroconf.asyncio import AsyncServiceBrowser, AsyncZeroconf

from bmsgate.broker import free_port
from bmsgate_api.mdns import SERVICE_TYPE, announced, local_addresses, service_info
from bmsgate_common.settings import ApiSettings
from tests.support.needs import missing


def test_record_set_names_the_host_and_port() -> None:
    info = service_info("garage-gw", 8123, ["192.0.2.2"], "Garage")
    assert info.name == "garage-gw._http._tcp.local."
    assert info.server == "garage-gw.local."
    assert info.port == 8123
    assert info.addresses == [socket.inet_aton("192.0.2.2")]
    assert info.properties[b"path"] == b"/" and info.properties[b"title"] == b"Garage"
    assert local_addresses("192.0.2.9") == ["192.0.2.9"]
    every = local_addresses("0.0.0.0")  # the non-loopback ones, else loopback alone
    assert "127.0.0.1" not in every or every == ["127.0.0.1"]


def test_name_must_be_one_dns_label() -> None:
    with pytest.raises(ValueError, match="mdns_name"):
        ApiSettings(mdns_name="Bms Gate")


async def test_off_switch_announces_nothing() -> None:
    async with announced(ApiSettings(mdns=False)) as info:
        assert info is None


async def test_without_netlink_the_ui_runs_unannounced(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def no_netlink() -> list[ifaddr.Adapter]:  # getifaddrs under RestrictAddressFamilies
        raise OSError(errno.EAFNOSUPPORT, "Address family not supported by protocol")

    monkeypatch.setattr(ifaddr, "get_adapters", no_netlink)
    async with announced(ApiSettings(host="0.0.0.0", port=free_port())) as info:
        assert info is None
    assert "mDNS announcement failed: [Errno 97]" in caplog.text


async def test_a_browser_finds_the_web_ui_and_its_port() -> None:
    port = free_port()
    name = f"bmsgate-test-{port}"
    cfg = ApiSettings(host="0.0.0.0", port=port, mdns_name=name)
    async with announced(cfg) as info:
        if info is None:
            missing("multicast is not possible here: the announcement could not be sent")
        seen: asyncio.Queue[str] = asyncio.Queue()
        browser_zc = AsyncZeroconf(ip_version=IPVersion.V4Only)

        def on_change(
            zeroconf: Zeroconf, service_type: str, name: str, state_change: ServiceStateChange
        ) -> None:
            if state_change is ServiceStateChange.Added:
                seen.put_nowait(name)

        browser = AsyncServiceBrowser(browser_zc.zeroconf, SERVICE_TYPE, handlers=[on_change])
        try:
            async with asyncio.timeout(10):
                while (found := await seen.get()) != f"{name}.{SERVICE_TYPE}":
                    pass
            got = await browser_zc.async_get_service_info(SERVICE_TYPE, found, timeout=3000)
        finally:
            await browser.async_cancel()
            await browser_zc.async_close()
    assert got is not None and got.port == port and got.server == f"{name}.local."
