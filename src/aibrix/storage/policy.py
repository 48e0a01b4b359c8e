"""The one outbound policy every fetch, listing and redirect passes, whoever asked for it.

Names are resolved once per connection, every address is judged, and the socket is opened to an address that was
judged: a name that resolves to something harmless for the check and to a metadata address for the fetch (DNS
rebinding) cannot slip through, because there is no second look-up.
"""

from __future__ import annotations

import ipaddress
import os
import socket
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from aibrix.storage.base import AccessDenied, BadURI, TransientError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# Each range with where it comes from. Link-local covers the usual metadata address 169.254.169.254 (AWS, GCP,
# Azure, OCI, DigitalOcean, OpenStack) and AWS's ECS/EKS credential endpoints 169.254.170.2 and 169.254.170.23.
_BLOCKED_NETWORKS = [
    ipaddress.ip_network(net)
    for net in (
        "169.254.0.0/16",  # IPv4 link-local, RFC 3927
        "fe80::/10",  # IPv6 link-local, RFC 4291 section 2.5.6
        "fd00:ec2::254/128",  # AWS EC2 instance metadata over IPv6 (EC2 docs, "Instance metadata service")
        "fd00:ec2::23/128",  # AWS EKS Pod Identity agent over IPv6 (EKS docs, "EKS Pod Identity")
        "fd20:ce::254/128",  # Google Compute Engine metadata server over IPv6 (GCE docs, "About VM metadata")
        "100.100.100.200/32",  # Alibaba Cloud ECS metadata (Alibaba docs, "Instance metadata")
        "192.0.0.192/32",  # Oracle Cloud Infrastructure Classic metadata (Oracle docs, "Instance metadata")
        "0.0.0.0/8",  # "this network", RFC 1122 section 3.2.1.3: 0.0.0.0 reaches the local host on Linux
    )
]
# IPv4-embedded IPv6 prefixes, RFC 6052: the well-known 64:ff9b::/96 and the local-use 64:ff9b:1::/48 (RFC 8215),
# which an operator may use with any of RFC 6052's prefix lengths inside it.
_NAT64 = ((ipaddress.ip_network("64:ff9b::/96"), (96,)), (ipaddress.ip_network("64:ff9b:1::/48"), (48, 56, 64, 96)))


def _rfc6052_ipv4(address: ipaddress.IPv6Address, prefix_length: int) -> ipaddress.IPv4Address:
    """The IPv4 address RFC 6052 section 2.2 puts after a prefix of ``prefix_length`` bits (bits 64-71, the
    "u" octet, are skipped)."""
    bits = format(int(address), "0128b")
    if prefix_length < 96:
        bits = bits[:64] + bits[72:]
    return ipaddress.IPv4Address(int(bits[prefix_length : prefix_length + 32], 2))


def embedded_ipv4(address: IPAddress) -> list[ipaddress.IPv4Address]:
    """The IPv4 addresses an IPv6 address carries and reaches: mapped (::ffff:a.b.c.d), compatible (::a.b.c.d),
    NAT64 (64:ff9b::a.b.c.d and the local-use 64:ff9b:1::/48), 6to4 (2002:AABB:CCDD::) and Teredo; so no spelling
    hides a blocked address."""
    if isinstance(address, ipaddress.IPv4Address):
        return []
    found = []
    if address.ipv4_mapped is not None:
        found.append(address.ipv4_mapped)
    packed = int(address)
    if packed >> 32 == 0 and packed > 1:  # IPv4-compatible (deprecated, still routed by some stacks)
        found.append(ipaddress.IPv4Address(packed & 0xFFFFFFFF))
    for prefix, lengths in _NAT64:
        if address in prefix:
            # Every length is read: a blocked address is found however it was embedded. A reading in 0.0.0.0/8 is
            # dropped: a translator never forwards to "this network", and a wrong-length reading often gives one.
            decoded = (_rfc6052_ipv4(address, length) for length in lengths)
            found.extend(v4 for v4 in decoded if v4.packed[0])
    if address.sixtofour is not None:
        found.append(address.sixtofour)
    if address.teredo is not None:
        found.extend(address.teredo)
    return found


def is_blocked(address: IPAddress) -> bool:
    """Link-local and cloud metadata addresses, however they are spelled."""
    return any(
        candidate in network
        for candidate in (address, *embedded_ipv4(address))
        for network in _BLOCKED_NETWORKS
        if candidate.version == network.version
    )


def is_local_uri(uri: str) -> bool:
    """file:// URIs and paths (absolute, relative or ~): they read this machine's disk, not the network."""
    scheme = uri.partition("://")[0].lower() if "://" in uri else ""
    return scheme == "file" or (not scheme and (uri.startswith(("/", ".", "~")) or os.path.exists(uri)))


@dataclass(frozen=True)
class OutboundPolicy:
    """What a download may reach. The CLI's default trusts its user with local paths; the runtime serves remote
    callers, so its policy refuses local files and caps the size. Metadata addresses are refused by default for
    both: a redirect from a mirror must not turn a model download into a credential read."""

    allow_metadata: bool = False
    allow_local_files: bool = True
    max_bytes: int | None = None

    def check_uri(self, uri: str) -> None:
        """Refuse a URI this policy never fetches, before anything is listed."""
        if not self.allow_local_files and is_local_uri(uri):
            raise BadURI("local paths and file:// URIs are not accepted here; give a remote URI")

    def check_url(self, url: str) -> None:
        """Resolve and judge an http(s) URL's host now (endpoints handed to SDKs that connect on their own)."""
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https"):
            raise BadURI(f"expected an http(s) endpoint, not {parts.scheme or 'no scheme'!r}")
        self.addresses(parts.hostname or "", parts.port or (443 if parts.scheme == "https" else 80))

    def addresses(self, host: str, port: int) -> list[tuple[int, tuple[Any, ...]]]:
        """Every (family, socket address) ``host`` resolves to, after judging each of them."""
        host = host.rstrip(".").strip("[]")  # "169.254.169.254." is the same address to most clients
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except OSError as exc:
            error = TransientError if exc.errno == socket.EAI_AGAIN else BadURI
            raise error(f"cannot resolve {host!r}: {exc.strerror or exc}") from None
        if not self.allow_metadata:
            for info in infos:
                address = ipaddress.ip_address(str(info[4][0]).split("%")[0])
                if is_blocked(address):
                    raise AccessDenied(
                        f"refusing to fetch from {host} ({address}): link-local or cloud metadata address"
                    )
        return [(info[0], info[4]) for info in infos]

    def connect(
        self, address: tuple[str, int], timeout: float | None = None, source_address: object = None
    ) -> socket.socket:
        """A connected socket to one of the judged addresses of ``address`` (the signature of
        ``socket.create_connection``, which http.client calls)."""
        host, port = address
        last: OSError | None = None
        for family, sockaddr in self.addresses(host, port):
            sock = socket.socket(family, socket.SOCK_STREAM)
            try:
                if timeout is not None:
                    sock.settimeout(timeout)
                sock.connect(sockaddr)
                return sock
            except OSError as exc:
                sock.close()
                last = exc
        raise last or OSError(f"no address for {host!r}")


DEFAULT_POLICY = OutboundPolicy()
