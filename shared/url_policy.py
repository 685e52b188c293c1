"""Which URLs the service will contact on a caller's behalf (``image_url``, ``webhook_url``).

Only http and https, no credentials in the URL, and every address the host
resolves to must be public: loopback, private, link-local (home of cloud
metadata services such as 169.254.169.254), shared (100.64/10), multicast,
reserved and unspecified addresses are refused unless the allowlist names the
host or a network (CIDR) containing the address.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

from shared.errors import UrlFetchError, UrlRefusedError

Address = ipaddress.IPv4Address | ipaddress.IPv6Address

METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(a) for a in ("169.254.169.254", "fd00:ec2::254", "100.100.100.200", "169.254.170.2")
)
SHARED_NETWORK = ipaddress.ip_network("100.64.0.0/10")


@dataclass(frozen=True)
class Target:
    scheme: str
    host: str
    port: int


def is_public_address(address: Address) -> bool:
    if address in METADATA_ADDRESSES:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return is_public_address(address.ipv4_mapped)
    if isinstance(address, ipaddress.IPv4Address) and address in SHARED_NETWORK:
        return False
    return not (
        address.is_private
        or address.is_loopback
        or address.is_link_local
        or address.is_multicast
        or address.is_reserved
        or address.is_unspecified
    )


def is_allowlisted(host: str, address: Address, allow: list[str]) -> bool:
    for entry in allow:
        if entry.lower() == host.lower():
            return True
        try:
            if address in ipaddress.ip_network(entry, strict=False):
                return True
        except ValueError:
            continue
    return False


def parse_target(url: str) -> Target:
    """Scheme, host and port of ``url``; raises :class:`UrlRefusedError` for unusable URLs."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise UrlRefusedError("only http and https URLs are accepted")
    if not parts.hostname:
        raise UrlRefusedError("the URL has no host")
    if parts.username or parts.password:
        raise UrlRefusedError("URLs with credentials are not accepted")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as exc:
        raise UrlRefusedError("the URL has an invalid port") from exc
    return Target(parts.scheme, parts.hostname, port)


def check_addresses(target: Target, infos: list, allow: list[str]) -> Address:
    """The address to connect to (IPv4 first), if every resolved address may be contacted."""
    addresses = [ipaddress.ip_address(info[4][0].split("%")[0]) for info in infos]
    if not addresses:
        raise UrlFetchError(f"the host {target.host!r} cannot be resolved")
    for address in addresses:
        if not is_public_address(address) and not is_allowlisted(target.host, address, allow):
            raise UrlRefusedError(f"the URL's host resolves to a non-public address ({address}); refused")
    return next((a for a in addresses if a.version == 4), addresses[0])


def resolve_allowed(url: str, allow: list[str]) -> tuple[Target, Address]:
    """Blocking resolution (worker side); see ``api.url_fetch`` for the async one."""
    target = parse_target(url)
    try:
        infos = socket.getaddrinfo(target.host, target.port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise UrlFetchError(f"the host {target.host!r} cannot be resolved") from exc
    return target, check_addresses(target, infos, allow)
