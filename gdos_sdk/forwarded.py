"""Which address a request comes from, when reverse proxies stand in front of the master.

The master sees the TCP peer. Behind a load balancer or a TLS proxy that peer is the proxy,
so every client would share one address in the login limits and the audit trail. A proxy
appends the address it saw to ``X-Forwarded-For``; anybody can send that header too, so it
is believed only from peers the operator lists (``server.trusted_proxies``), and only as far
as the chain is made of such peers:

    client, spoofed, ..., seen-by-proxy-1, seen-by-proxy-2     (TCP peer: proxy 3)

Read from the right, each address was added by the hop after it; the first address that is
not itself a trusted proxy is the client. Whatever lies left of it was sent by the client
and is not believed.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

__all__ = ["TrustedProxies", "parse_networks"]

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(text: str, *, where: str = "server.trusted_proxies") -> tuple[Network, ...]:
    """``"10.0.0.0/8, 127.0.0.1"`` -> networks; ``ValueError`` naming the bad entry."""
    networks: list[Network] = []
    for entry in (part.strip() for part in text.split(",")):
        if not entry:
            continue
        try:
            networks.append(ipaddress.ip_network(entry, strict=False))
        except ValueError:
            raise ValueError(
                f"{where}: {entry!r} is not an IP address or network (e.g. 10.0.0.5, 10.0.0.0/8)"
            ) from None
    return tuple(networks)


def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    text = text.strip()
    if text.startswith("[") and "]" in text:  # [::1]:port
        text = text[1 : text.index("]")]
    elif text.count(":") == 1:  # 1.2.3.4:port
        text = text.partition(":")[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


class TrustedProxies:
    """Finds the client's address from the TCP peer and ``X-Forwarded-For``."""

    def __init__(self, networks: Iterable[Network] = ()) -> None:
        self.networks = tuple(networks)

    def __bool__(self) -> bool:
        return bool(self.networks)

    def trusts(self, address: str) -> bool:
        parsed = _address(address)
        return parsed is not None and any(parsed in net for net in self.networks)

    def client(self, peer: str, forwarded_for: Iterable[str] = ()) -> str:
        """The client's address: ``peer``, unless ``peer`` is a trusted proxy.

        ``forwarded_for`` holds the values of every ``X-Forwarded-For`` header, in order.
        An entry that is not an address ends the walk: the last trusted hop's view is kept.
        """
        if not self.networks or not self.trusts(peer):
            return peer
        chain = [part for value in forwarded_for for part in value.split(",") if part.strip()]
        client = peer
        for entry in reversed(chain):
            address = _address(entry)
            if address is None:
                return client
            client = str(address)
            if not any(address in net for net in self.networks):
                return client
        return client
