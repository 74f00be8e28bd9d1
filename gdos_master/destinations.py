"""Where webhooks may go: a destination policy for alert receivers (docs/security.md).

A receiver's URL is checked when it is saved (a 422 naming ``$.url``) and again
before every delivery, after the host name is resolved, and the request then goes
to the very address that was checked: a name that resolved to a public address
when the receiver was saved and to 127.0.0.1 later (DNS rebinding) is refused
at send time, and nothing re-resolves it in between.

Denied unless ``alerts.webhook_allow`` names the host or a network holding the
address:

* loopback (``127.0.0.0/8``, ``::1``) and the names ``localhost``, ``*.localhost``;
* link-local (``169.254.0.0/16``, which holds the cloud metadata address
  ``169.254.169.254``, and ``fe80::/10``);
* the other metadata addresses (``fd00:ec2::254`` AWS over IPv6,
  ``100.100.100.200`` Alibaba) and names (``metadata.google.internal``);
* unspecified, multicast and reserved addresses (``0.0.0.0``, ``::``, ``224.0.0.0/4`` ...).

Private networks (10/8, 172.16/12, 192.168/16, fc00::/7 but the metadata
address) are allowed: on-premises chat and paging servers live there.

Example::

    policy = DestinationPolicy.parse("127.0.0.1/32, hooks.internal")
    target = await policy.resolve("http://hooks.internal:9000/alert")
    target.url  # "http://10.1.2.3:9000/alert" (the checked address), target.host the name
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable, Iterable

import attrs
import httpx

from gdos_sdk.errors import ConfigError, ValidationError

__all__ = ["DestinationDenied", "DestinationPolicy", "Target"]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolver = Callable[[str, int], Awaitable[list[str]]]

_METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(a) for a in ("169.254.169.254", "fd00:ec2::254", "100.100.100.200")
)
_METADATA_NAMES = frozenset({"metadata.google.internal", "metadata", "instance-data"})


class DestinationDenied(ValidationError):
    """A webhook destination the policy refuses."""


def _why(address: IPAddress) -> str | None:
    """Why ``address`` is denied by default, or None."""
    if address in _METADATA_ADDRESSES:
        return "a cloud metadata address"
    if address.is_loopback:
        return "a loopback address"
    if address.is_link_local:
        return "a link-local address"
    if address.is_unspecified:
        return "the unspecified address"
    if address.is_multicast:
        return "a multicast address"
    if address.is_reserved:
        return "a reserved address"
    return None


def _unmapped(address: IPAddress) -> IPAddress:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _literal(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


@attrs.frozen
class Target:
    """A checked destination: the request URL with the checked address, and the name."""

    url: str  # the receiver URL with its host replaced by the checked address
    host: str  # the name of the URL, for the Host header and TLS (SNI, certificate)
    address: str


@attrs.frozen
class DestinationPolicy:
    """The networks and host names webhooks may reach although they are denied by default.

    Parameters:
        networks: allowed networks (a single address is a /32 or /128).
        hosts: allowed host names (lower case), whatever they resolve to.
    """

    networks: tuple[IPNetwork, ...] = ()
    hosts: frozenset[str] = frozenset()
    # (host, port) -> addresses; None: the system resolver. A seam for tests of rebinding.
    resolver: Resolver | None = attrs.field(default=None, eq=False, repr=False)

    @classmethod
    def parse(cls, text: str | Iterable[str]) -> DestinationPolicy:
        """From ``alerts.webhook_allow``: networks, addresses and names, comma-separated.

        Raises:
            ConfigError: an entry that is neither a network nor a host name.

        Example::

            DestinationPolicy.parse("127.0.0.0/8, ::1, alerts.internal")
        """
        entries = text.split(",") if isinstance(text, str) else list(text)
        networks: list[IPNetwork] = []
        hosts: set[str] = set()
        for raw in entries:
            entry = raw.strip()
            if not entry:
                continue
            try:
                networks.append(ipaddress.ip_network(entry.strip("[]"), strict=False))
                continue
            except ValueError:
                pass
            name = entry.lower().rstrip(".")
            if not name or any(c in name for c in "/:@ "):
                raise ConfigError(
                    f"alerts.webhook_allow: {entry!r} is neither a network nor a host name"
                )
            hosts.add(name)
        return cls(networks=tuple(networks), hosts=frozenset(hosts))

    def denial(self, host: str, address: IPAddress | None = None) -> str | None:
        """Why a connection to ``host`` (at ``address``) is refused; None when allowed."""
        name = host.lower().rstrip(".").strip("[]")
        if name in self.hosts:
            return None
        if address is None:
            address = _literal(name)
        if address is None:
            if name == "localhost" or name.endswith(".localhost"):
                return f"{host} is a loopback name"
            if name in _METADATA_NAMES:
                return f"{host} is a cloud metadata name"
            return None  # a name: judged by what it resolves to
        address = _unmapped(address)
        if any(address in network for network in self.networks):
            return None
        why = _why(address)
        return None if why is None else f"{address} is {why}"

    def check_url(self, url: str, *, path: str = "$.url") -> None:
        """Refuse a URL whose host is denied as written (no DNS): 422 naming ``path``."""
        host = _host(url, path)
        why = self.denial(host)
        if why is not None:
            raise DestinationDenied(
                f"webhook destination not allowed: {why}; an admin may allow it with the"
                " master setting alerts.webhook_allow",
                details=[{"path": path, "message": f"destination not allowed: {why}"}],
            )

    async def resolve(self, url: str, *, path: str = "$.url") -> Target:
        """Resolve ``url``'s host and check every address; the first one is the target.

        Raises:
            DestinationDenied: the name or any address it resolves to is denied.
            OSError: the name does not resolve (a delivery failure like any other).
        """
        self.check_url(url, path=path)
        parsed = httpx.URL(url)
        host = parsed.host
        literal = _literal(host)
        if literal is not None:
            addresses = [literal]
        else:
            port = parsed.port or (443 if parsed.scheme == "https" else 80)
            resolve = self.resolver or _system_resolver
            addresses = [ipaddress.ip_address(a) for a in await resolve(host, port)]
            if not addresses:
                raise OSError(f"{host} has no address")
        if host.lower().rstrip(".") not in self.hosts:
            for address in addresses:
                why = self.denial(host, address)
                if why is not None:
                    raise DestinationDenied(
                        f"webhook destination not allowed: {host} resolves to {why}",
                        details=[{"path": path, "message": f"destination not allowed: {why}"}],
                    )
        chosen = str(addresses[0])
        return Target(url=str(parsed.copy_with(host=chosen)), host=host, address=chosen)


async def _system_resolver(host: str, port: int) -> list[str]:
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


def _host(url: str, path: str) -> str:
    try:
        host = httpx.URL(url).host
    except (httpx.InvalidURL, ValueError):
        host = ""
    if not host:
        raise ValidationError(
            "url must be an http:// or https:// URL with a host",
            details=[{"path": path, "message": "no host"}],
        )
    return host
