"""Where a webhook may be sent: https URLs to public addresses only.

A receiver's URL is checked when it is registered (`check_url`), and its host is resolved again
before every attempt (`refusal` on each address): every address the name resolves to must be
public, and the attempt connects to the address that was checked, so a name that resolves
differently a moment later (DNS rebinding) cannot steer it into the service's own network.
Loopback (and plain http to it) is allowed only with CHECKIN_WEBHOOK_ALLOW_LOOPBACK, for tests
and local development. Plain functions: tested without any traffic.
"""

from __future__ import annotations

import ipaddress
from urllib.parse import SplitResult, urlsplit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

MAX_URL_LENGTH = 2000
LOOPBACK_NAMES = ("localhost",)  # and every name under .localhost (RFC 6761)
NAT64 = ipaddress.IPv6Network("64:ff9b::/96")  # IPv4 addresses reached through a NAT64 gateway


class RefusedURL(ValueError):
    """A URL no webhook may be sent to; the message says why, for the merchant."""


def _is_loopback_name(host: str) -> bool:
    return host in LOOPBACK_NAMES or host.endswith(".localhost")


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one stands for (mapped, NAT64, 6to4, Teredo), if any."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address in NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]
    return None


def refusal(address: IPAddress, *, allow_loopback: bool) -> str | None:
    """Why an attempt must not connect to this address, or None when it may."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = _embedded_ipv4(address)
        if embedded is not None:
            reason = refusal(embedded, allow_loopback=allow_loopback)
            return f"{address} stands for {embedded}: {reason}" if reason else None
    if address.is_loopback:
        return None if allow_loopback else f"{address} is a loopback address"
    if address.is_unspecified:
        return f"{address} is the unspecified address"
    if address.is_multicast:
        return f"{address} is a multicast address"
    if address.is_link_local:
        return f"{address} is a link-local address"
    if address.is_private:
        return f"{address} is a private address"
    if not address.is_global:  # shared (100.64/10), reserved, documentation, benchmarking ...
        return f"{address} is not a public address"
    return None


def parse_ip(host: str) -> IPAddress | None:
    """The address a URL's host names literally, or None for a name."""
    try:
        return ipaddress.ip_address(host.split("%", 1)[0])  # a zone id (fe80::1%eth0) is link-local anyway
    except ValueError:
        return None


def check_url(url: str, *, allow_loopback: bool) -> SplitResult:
    """The parts of a receiver URL that may be registered; RefusedURL says what is wrong."""
    if len(url) > MAX_URL_LENGTH:
        raise RefusedURL(f"must be at most {MAX_URL_LENGTH} characters")
    if any(c.isspace() or ord(c) < 0x20 or ord(c) == 0x7F for c in url) or not url.isascii():
        raise RefusedURL("must not contain spaces, control characters or non-ASCII characters (use punycode)")
    parts = urlsplit(url)
    host = (parts.hostname or "").rstrip(".")
    try:
        parts.port  # noqa: B018 (raises on a port that is not a number from 0 to 65535)
    except ValueError:
        raise RefusedURL("has an invalid port") from None
    if parts.scheme not in ("https", "http") or not host:
        raise RefusedURL("must be an https:// URL with a host")
    if parts.username is not None or parts.password is not None:
        raise RefusedURL("must not carry a user name or password")
    if parts.port == 0:
        raise RefusedURL("has an invalid port")
    literal = parse_ip(host)
    loopback = _is_loopback_name(host) or (literal is not None and literal.is_loopback)
    if loopback and not allow_loopback:
        raise RefusedURL(f"{host} is a loopback address")
    if parts.scheme == "http" and not loopback:
        raise RefusedURL("must be an https:// URL (plain http only to loopback, in tests and local development)")
    if literal is not None and (reason := refusal(literal, allow_loopback=allow_loopback)):
        raise RefusedURL(reason)
    return parts
