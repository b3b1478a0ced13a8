"""Which ``notify_url`` targets a webhook may be sent to.

Only ``http`` and ``https`` URLs with a host and no credentials. The host is
resolved and **every** address it resolves to must be a public one: loopback,
private (RFC 1918, IPv6 ULA), link-local (where cloud metadata services live,
169.254.169.254), carrier-grade NAT, multicast, reserved and unspecified
addresses are refused, IPv4-mapped IPv6 addresses by their IPv4 address,
unless ``BACKPROP_WEBHOOK_ALLOW_PRIVATE`` is set. The check runs when a run is
created (a 422) and again before each delivery, which then connects to an
address it checked (:attr:`Target.address`), so a DNS answer that changes in
between (rebinding) cannot redirect it. Redirects are never followed.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

MAX_URL_LENGTH = 2048
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class TargetRefusedError(ValueError):
    """The URL may not be notified; the message says why."""


@dataclass(frozen=True)
class Target:
    """A checked webhook target.

    Attributes
    ----------
    url : str
        The URL as given.
    scheme, host : str
        Its scheme and host name (or address literal).
    port : int
        Its port (80/443 by default).
    address : str
        The checked address to connect to.
    """

    url: str
    scheme: str
    host: str
    port: int
    address: str

    def pinned_url(self) -> str:
        """The URL with its host replaced by :attr:`address` (send ``Host`` = :attr:`host`)."""
        parts = urlsplit(self.url)
        literal = f"[{self.address}]" if ":" in self.address else self.address
        path = parts.path or "/"
        query = f"?{parts.query}" if parts.query else ""
        return f"{self.scheme}://{literal}:{self.port}{path}{query}"

    def host_header(self) -> str:
        """The ``Host`` header of the original URL."""
        literal = f"[{self.host}]" if ":" in self.host else self.host
        default = {"http": 80, "https": 443}[self.scheme]
        return literal if self.port == default else f"{literal}:{self.port}"


def address_problem(address: IPAddress) -> str | None:
    """Why ``address`` is not a public one, or None when it is."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    checks = (
        ("is_unspecified", "the unspecified address"),
        ("is_loopback", "a loopback address"),
        ("is_link_local", "a link-local address (cloud metadata)"),
        ("is_private", "a private address"),
        ("is_multicast", "a multicast address"),
        ("is_reserved", "a reserved address"),
    )
    for attribute, reason in checks:
        if getattr(address, attribute):
            return reason
    if not address.is_global:
        return "not a public address"
    return None


def _parse(url: str) -> tuple[str, str, int]:
    if len(url) > MAX_URL_LENGTH:
        raise TargetRefusedError(f"{len(url)} characters; at most {MAX_URL_LENGTH}")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise TargetRefusedError(f"not a valid URL ({exc})") from exc
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise TargetRefusedError("only http:// and https:// URLs are allowed")
    if not parts.hostname:
        raise TargetRefusedError("the URL has no host")
    if parts.username is not None or parts.password is not None:
        raise TargetRefusedError("the URL must not contain credentials")
    if parts.fragment:
        raise TargetRefusedError("the URL must not contain a fragment")
    return scheme, parts.hostname, port or (443 if scheme == "https" else 80)


def _resolve(host: str, port: int) -> list[IPAddress]:
    try:
        return [ipaddress.ip_address(host)]
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        raise TargetRefusedError(f"host {host!r} cannot be resolved") from exc
    addresses: list[IPAddress] = []
    for info in infos:
        address = ipaddress.ip_address(str(info[4][0]).split("%", 1)[0])
        if address not in addresses:
            addresses.append(address)
    if not addresses:
        raise TargetRefusedError(f"host {host!r} cannot be resolved")
    return addresses


def check_target(url: str, *, allow_private: bool) -> Target:
    """Check ``url`` as a webhook target (resolving its host).

    Parameters
    ----------
    url : str
        The ``notify_url``.
    allow_private : bool
        ``BACKPROP_WEBHOOK_ALLOW_PRIVATE``: accept any address.

    Returns
    -------
    Target
        The URL's parts and an address to connect to.

    Raises
    ------
    TargetRefusedError
        Not http(s), malformed, unresolvable, or an address that is not public.
    """
    scheme, host, port = _parse(url)
    addresses = _resolve(host, port)
    if not allow_private:
        for address in addresses:
            problem = address_problem(address)
            if problem is not None:
                where = str(address) if host == str(address) else f"{host} resolves to {address},"
                raise TargetRefusedError(
                    f"{where} {problem}: webhooks go to public addresses only "
                    "(BACKPROP_WEBHOOK_ALLOW_PRIVATE)"
                )
    return Target(url=url, scheme=scheme, host=host, port=port, address=str(addresses[0]))
