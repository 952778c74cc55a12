"""Where a push notification may go: the URL's name resolved, every address checked, the connection pinned.

A push URL is checked when it is registered and again at every delivery: the name is resolved
afresh, each address it resolves to is judged by the SDK's own policy
(``validate_push_notification_url``: no loopback, private, shared, link-local, multicast, reserved
or unspecified address), and the request then goes to the address that was checked (the URL's
host replaced by it, with the original name in ``Host`` and as the TLS server name), so a second
lookup between the check and the connection cannot send it elsewhere. The operator's
``allow_private_push_urls`` turns the address check off (tests use it for loopback receivers);
resolving and pinning still happen.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import httpx
from a2a.utils.push_url_validator import validate_push_notification_url

Resolver = Callable[[str, int], Awaitable[list[str]]]
"""``(host, port) -> addresses``: raises ``OSError`` when the name does not resolve."""

_DEFAULT_PORTS = {"http": 80, "https": 443}


async def resolve_host(host: str, port: int) -> list[str]:
    """The addresses ``host`` resolves to, in the resolver's order, without repeats (the event loop's resolver)."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


async def _address_allowed(address: str) -> bool:
    """The SDK's policy for one address: its validator given a URL whose host is that address."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    host = f"[{ip}]" if ip.version == 6 else str(ip)
    return await validate_push_notification_url(f"http://{host}/")


@dataclass(frozen=True)
class PinnedTarget:
    """A push URL's checked addresses (in the resolver's order), and what keeps the original name."""

    url: httpx.URL
    """The URL with its host replaced by the first checked address."""
    host_header: str
    sni_hostname: str
    addresses: tuple[str, ...] = ()

    def urls(self) -> list[httpx.URL]:
        """The URL aimed at each checked address in turn (the next is tried when one cannot be reached)."""
        return [self.url.copy_with(host=address) for address in self.addresses] or [self.url]

    @property
    def extensions(self) -> dict[str, str]:
        """httpx request extensions: the TLS server name (and certificate check) stays the URL's name."""
        return {"sni_hostname": self.sni_hostname} if self.url.scheme == "https" else {}


@dataclass(frozen=True)
class Refusal:
    """Why a push URL may not be used now; ``retryable`` when another try later may succeed (DNS)."""

    reason: str
    detail: str
    retryable: bool = False


class PushAddressPolicy:
    """Checks push URLs at registration and pins each delivery to an address checked just before it."""

    def __init__(self, *, allow_private: bool, resolver: Resolver = resolve_host) -> None:
        self.allow_private = allow_private
        self.resolver = resolver

    async def allows(self, url: str) -> bool:
        """The registration check (the request handler's ``push_url_validator``)."""
        if self.allow_private:
            return not isinstance(_parse(url), Refusal)
        return isinstance(await self.pin(url), PinnedTarget)

    async def pin(self, url: str) -> PinnedTarget | Refusal:
        """Resolve the URL's host now, check every address, and aim the URL at the first one."""
        parsed = _parse(url)
        if isinstance(parsed, Refusal):
            return parsed
        host, port = parsed.raw_host.decode("ascii"), parsed.port or _DEFAULT_PORTS[parsed.scheme]
        try:
            addresses = await self.resolver(host, port)
        except OSError as exc:
            return Refusal("unresolvable", f"{host} does not resolve: {exc}", retryable=True)
        if not addresses:
            return Refusal("unresolvable", f"{host} resolves to no address", retryable=True)
        if not self.allow_private:
            for address in addresses:
                if not await _address_allowed(address):
                    return Refusal("address-refused", f"{host} resolves to {address}, not a public address")
        checked = tuple(address.split("%", 1)[0] for address in addresses)
        return PinnedTarget(parsed.copy_with(host=checked[0]), parsed.netloc.decode("ascii"), host, checked)


def _parse(url: str) -> httpx.URL | Refusal:
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL as exc:
        return Refusal("invalid-url", f"not a URL: {exc}")
    if parsed.scheme not in _DEFAULT_PORTS:
        return Refusal("invalid-url", f"scheme {parsed.scheme!r} is not http or https")
    if not parsed.host:
        return Refusal("invalid-url", "the URL has no host")
    return parsed
