"""Decide whether a web destination may be fetched, and connect only to what was checked.

A capture service run by an agency sits inside the agency's network; a URL typed by an officer (or
a redirect, a sub-resource, or a DNS answer chosen by the site's owner) must not make it talk to
internal hosts (SSRF). The rules:

* only ``http`` and ``https`` URLs, with a host and without user credentials;
* the host is resolved once (``socket.getaddrinfo`` by default; a resolver can be injected) and
  the destination is refused if ANY resolved address is not a public unicast address — private,
  loopback, link-local, multicast, reserved, unspecified, shared (CGNAT), documentation, or an
  IPv6 address embedding such an IPv4 address (IPv4-mapped, 6to4, Teredo, NAT64) — unless that
  address lies inside one of the caller's ``allow_networks``;
* the caller connects to the checked address only (:func:`Destination.pinned`, :func:`connect_pinned`)
  so a second DNS answer (DNS rebinding) can never redirect the connection; TLS SNI and the
  ``Host`` header still carry the original name;
* every redirect hop is checked the same way (:func:`check_redirect`).

The resolved addresses are returned: they belong in the evidence (which server answered).
"""

from __future__ import annotations

import ipaddress
import socket
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network
from urllib.parse import urljoin, urlsplit

from .errors import CaptureTimeoutError, FetchError, UnsafeDestinationError, UnsupportedContentError

IPAddress = IPv4Address | IPv6Address
IPNetwork = IPv4Network | IPv6Network
#: ``resolver(host, port) -> addresses`` (strings or ip_address objects), e.g. for tests.
Resolver = Callable[[str, int], Iterable[str | IPAddress]]

ALLOWED_SCHEMES = ("http", "https")
DEFAULT_PORTS = {"http": 80, "https": 443}

_NAT64 = IPv6Network("64:ff9b::/96")
_NAT64_LOCAL = IPv6Network("64:ff9b:1::/48")
_SHARED = IPv4Network("100.64.0.0/10")  # RFC 6598 carrier-grade NAT


@dataclass(frozen=True)
class Destination:
    """A checked destination: the URL's parts and every address its host resolved to."""

    url: str
    scheme: str
    host: str  # ASCII (IDNA) host name or IP literal, lower case, without brackets
    port: int
    addresses: tuple[str, ...]  # every resolved address, all of them checked, in resolver order
    resolved_at: datetime

    @property
    def pinned(self) -> str:
        """The address to connect to (the first checked one)."""
        return self.addresses[0]

    @property
    def host_is_ip(self) -> bool:
        return _parse_ip(self.host) is not None

    @property
    def host_header(self) -> str:
        """``Host`` header value for this destination (port only when not the default)."""
        h = f"[{self.host}]" if ":" in self.host else self.host
        return h if self.port == DEFAULT_PORTS[self.scheme] else f"{h}:{self.port}"

    def as_evidence(self) -> dict:
        return {"host": self.host, "port": self.port, "addresses": list(self.addresses),
                "resolved_at": self.resolved_at.isoformat()}


def _parse_ip(text: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return None


def _embedded_ipv4(ip: IPv6Address) -> list[IPv4Address]:
    """IPv4 addresses an IPv6 address carries (and would reach through a translator)."""
    out: list[IPv4Address] = []
    if ip.ipv4_mapped is not None:
        out.append(ip.ipv4_mapped)
    if ip.sixtofour is not None:
        out.append(ip.sixtofour)
    if ip.teredo is not None:
        out.extend(ip.teredo)  # (server, client)
    if ip in _NAT64 or ip in _NAT64_LOCAL:
        out.append(IPv4Address(int(ip) & 0xFFFFFFFF))
    # IPv4-compatible (deprecated ::a.b.c.d)
    if int(ip) >> 32 == 0 and int(ip) > 1:
        out.append(IPv4Address(int(ip) & 0xFFFFFFFF))
    return out


def forbidden_reason(address: str | IPAddress) -> str | None:
    """Why ``address`` is not a public unicast address, or None when it is (ignores allowlists)."""
    ip = address if isinstance(address, IPv4Address | IPv6Address) else _parse_ip(str(address))
    if ip is None:
        return f"{address!r} is not an IP address"
    if isinstance(ip, IPv6Address):
        for v4 in _embedded_ipv4(ip):
            inner = forbidden_reason(v4)
            if inner is not None:
                return f"embeds IPv4 {v4} ({inner})"
    for flag in ("is_unspecified", "is_loopback", "is_link_local", "is_multicast", "is_reserved",
                 "is_private"):
        if getattr(ip, flag):
            return flag[3:].replace("_", "-")
    if isinstance(ip, IPv4Address) and ip in _SHARED:
        return "shared address space (RFC 6598)"
    if isinstance(ip, IPv6Address) and ip.is_site_local:
        return "site-local"
    if not ip.is_global:
        return "not globally routable"
    return None


def _allowed_by(ip: IPAddress, allow_networks: Iterable[IPNetwork]) -> bool:
    candidates: list[IPAddress] = [ip]
    if isinstance(ip, IPv6Address) and ip.ipv4_mapped is not None:
        candidates.append(ip.ipv4_mapped)
    return any(c.version == n.version and c in n for c in candidates for n in allow_networks)


def check_address(address: str | IPAddress, allow_networks: Iterable[IPNetwork] = frozenset(),
                  host: str | None = None) -> str:
    """Return the address (normalised) if it may be contacted; raise UnsafeDestinationError if not."""
    ip = address if isinstance(address, IPv4Address | IPv6Address) else _parse_ip(str(address))
    if ip is None:
        raise UnsafeDestinationError(f"host {host or address!r}: resolver returned {address!r}, "
                                     "which is not an IP address")
    reason = forbidden_reason(ip)
    if reason is not None and not _allowed_by(ip, allow_networks):
        raise UnsafeDestinationError(
            f"host {host or str(ip)!r} resolves to {ip}, a {reason} address; only public addresses "
            f"(or addresses in the allowlist {sorted(str(n) for n in allow_networks) or '[]'}) "
            "may be captured")
    return str(ip)


def system_resolver(host: str, port: int, timeout_s: float = 10.0) -> list[str]:
    """Resolve with ``socket.getaddrinfo`` (TCP), bounded by ``timeout_s``; addresses in order."""
    box: dict = {}

    def run() -> None:
        try:
            box["infos"] = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except BaseException as e:  # noqa: BLE001 - handed to the caller's thread
            box["error"] = e

    t = threading.Thread(target=run, name=f"resolve-{host}", daemon=True)
    t.start()
    t.join(timeout_s)
    if t.is_alive():
        raise CaptureTimeoutError(f"resolving {host!r} took longer than {timeout_s:g} s")
    if "error" in box:
        e = box["error"]
        raise FetchError(f"cannot resolve host {host!r}: {e}") from e
    seen: list[str] = []
    for _family, _type, _proto, _canon, sockaddr in box["infos"]:
        addr = str(sockaddr[0]).split("%", 1)[0]
        if addr not in seen:
            seen.append(addr)
    return seen


def parse_url(url: str) -> tuple[str, str, int]:
    """(scheme, ascii host, port) of an http(s) URL; UnsupportedContentError for anything else."""
    if not isinstance(url, str) or not url:
        raise UnsupportedContentError(f"expected an http(s) URL, got {url!r}")
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError as e:
        raise UnsupportedContentError(f"malformed URL {url!r}: {e}") from e
    scheme = parts.scheme.lower()
    if scheme not in ALLOWED_SCHEMES:
        raise UnsupportedContentError(
            f"expected an http or https URL, got scheme {scheme or '(none)'!r} in {url!r}")
    if parts.username is not None or parts.password is not None:
        raise UnsupportedContentError(f"URLs with credentials are not captured: {url!r}")
    host = parts.hostname or ""
    if not host:
        raise UnsupportedContentError(f"URL {url!r} has no host")
    if _parse_ip(host) is None:
        try:
            host = host.rstrip(".").encode("idna").decode("ascii").lower()
        except UnicodeError as e:
            raise UnsupportedContentError(f"host {parts.hostname!r} is not a valid domain name: {e}") from e
        if not host:
            raise UnsupportedContentError(f"URL {url!r} has no host")
    else:
        host = str(_parse_ip(host))
    return scheme, host, port if port is not None else DEFAULT_PORTS[scheme]


def check_url(url: str, allow_networks: Iterable[IPNetwork] = frozenset(),
              resolver: Resolver | None = None) -> Destination:
    """Check a URL before anything connects to it; returns the destination with its addresses.

    Raises UnsupportedContentError (not http/https), FetchError (does not resolve) or
    UnsafeDestinationError (any resolved address is forbidden and not allowlisted).
    """
    allow = frozenset(allow_networks)
    scheme, host, port = parse_url(url)
    url = url.strip()
    literal = _parse_ip(host)
    if literal is not None:
        raw: Iterable = [literal]
    else:
        raw = (resolver or system_resolver)(host, port)
    addresses: list[str] = []
    for a in raw:
        checked = check_address(a, allow, host)
        if checked not in addresses:
            addresses.append(checked)
    if not addresses:
        raise FetchError(f"host {host!r} did not resolve to any address")
    return Destination(url=url, scheme=scheme, host=host, port=port, addresses=tuple(addresses),
                       resolved_at=datetime.now(UTC))


def check_redirect(current_url: str, location: str, allow_networks: Iterable[IPNetwork] = frozenset(),
                   resolver: Resolver | None = None) -> Destination:
    """Check a redirect hop: ``location`` is resolved against ``current_url`` and checked as a new URL."""
    if not location:
        raise FetchError(f"redirect from {current_url} has no Location header")
    return check_url(urljoin(current_url, location.strip()), allow_networks, resolver)


def connect_pinned(dest: Destination, timeout_s: float, address: str | None = None) -> socket.socket:
    """A TCP connection to the checked address (never a fresh DNS answer)."""
    addr = address or dest.pinned
    if addr not in dest.addresses:
        raise UnsafeDestinationError(f"{addr} was not among the checked addresses of {dest.host!r}")
    try:
        return socket.create_connection((addr, dest.port), timeout=timeout_s)
    except TimeoutError as e:
        raise CaptureTimeoutError(f"connecting to {dest.host} ({addr}:{dest.port}) took longer than "
                                  f"{timeout_s:g} s") from e
    except OSError as e:
        raise FetchError(f"cannot connect to {dest.host} ({addr}:{dest.port}): {e}") from e
