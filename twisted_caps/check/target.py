# -*- test-case-name: tests.test_check -*-
"""
The server under test, as every check sees it, and the names of the
transports and profiles the checks belong to.
"""

from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from twisted_caps.core.addresses import host_port

Transport = Literal["tcp", "udp"]
Profile = Literal["lecture", "full"]
#: The profiles, each including the checks of those before it.
PROFILES: tuple[Profile, ...] = ("lecture", "full")


class Socket(Protocol):
    """A socket a check opened: it can be closed at once."""

    def abort(self) -> None:
        """Close at once, without waiting."""


@dataclass(frozen=True)
class Target:
    """
    The server under test: C{address} is C{host} resolved to an IP address;
    C{timeout} bounds each wait of a check, in seconds. C{opened} holds the
    sockets checks open, so that what a stopped check left open is closed
    before the next check runs.
    """

    reactor: Any
    host: str
    address: str
    port: int
    timeout: float
    opened: list[Socket] = field(default_factory=list, compare=False, repr=False)

    def close_all(self) -> None:
        """Close every socket the checks opened (those already closed are left alone)."""
        for opened in self.opened:
            opened.abort()
        self.opened.clear()

    @property
    def server(self) -> str:
        """C{H:P} as the user named the server (IPv6 literals in brackets)."""
        return host_port(self.host, self.port)


def chosen_transports(tcp_only: bool, udp_only: bool) -> tuple[Transport, ...]:
    """The transports a run checks, as C{--tcp-only} and C{--udp-only} choose them."""
    if tcp_only:
        return ("tcp",)
    if udp_only:
        return ("udp",)
    return ("tcp", "udp")
