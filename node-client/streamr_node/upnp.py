"""Optional UPnP port mapping (``streamr-node run --upnp``), for friends behind a home router.

It needs the ``upnp`` extra (``pip install 'streamr-node[upnp]'``, which brings
async-upnp-client); without it, or without a router that speaks UPnP IGD, the node says so in
one line and the friend forwards the port by hand (docs/friend.md).
"""

from __future__ import annotations

import ipaddress
import logging
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from .config import ConfigError

log = logging.getLogger("streamr_node.upnp")

LEASE = timedelta(hours=2)
ANY_HOST = ipaddress.IPv4Address("0.0.0.0")  # noqa: S104 - "any remote host" in IGD terms


@dataclass
class PortMapping:
    igd: Any
    port: int
    external_ip: str | None
    _request: dict[str, Any]

    @property
    def public_url(self) -> str | None:
        return f"http://{self.external_ip}:{self.port}" if self.external_ip else None

    async def keep(self) -> None:
        """Renew the lease well before it runs out, for as long as the node runs."""
        import asyncio

        while True:
            await asyncio.sleep(LEASE.total_seconds() / 2)
            try:
                await self.igd.async_add_port_mapping(**self._request)
            except Exception as exc:  # a router that restarted; the next renewal tries again
                log.warning("could not renew the UPnP port mapping", extra={"error": str(exc)})

    async def remove(self) -> None:
        try:
            await self.igd.async_delete_port_mapping(ANY_HOST, self.port, "TCP")
        except Exception as exc:  # the router may be gone at shutdown; the lease then expires
            log.warning("could not remove the UPnP port mapping", extra={"error": str(exc)})


async def map_port(port: int) -> PortMapping | None:
    """Forward TCP ``port`` on the router to this machine; None when no router answers."""
    try:
        from async_upnp_client.aiohttp import AiohttpRequester
        from async_upnp_client.client_factory import UpnpFactory
        from async_upnp_client.profiles.igd import IgdDevice
        from async_upnp_client.utils import get_local_ip
    except ImportError:
        raise ConfigError(
            "--upnp needs the UPnP extra: pip install 'streamr-node[upnp]' "
            "(or forward the port on your router by hand)"
        ) from None
    found = await IgdDevice.async_search(timeout=4)
    if not found:
        log.warning("no UPnP router answered; forward the port by hand", extra={"port": port})
        return None
    location = next(iter(found))["location"]
    device = await UpnpFactory(AiohttpRequester()).async_create_device(location)
    igd = IgdDevice(device, None)
    local_ip = ipaddress.IPv4Address(get_local_ip(location))
    request = {
        "remote_host": ANY_HOST,
        "external_port": port,
        "protocol": "TCP",
        "internal_port": port,
        "internal_client": local_ip,
        "enabled": True,
        "description": "streamr-node",
        "lease_duration": LEASE,
    }
    await igd.async_add_port_mapping(**request)
    external_ip = await igd.async_get_external_ip_address()
    log.info("router forwards the port (UPnP)", extra={"port": port, "external_ip": external_ip})
    return PortMapping(igd, port, external_ip, request)
