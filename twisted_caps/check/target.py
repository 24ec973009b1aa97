# -*- test-case-name: tests.test_check -*-
"""
The server under test, as every check sees it, and the names of the
transports and profiles the checks belong to.
"""

from dataclasses import dataclass
from typing import Any, Literal

Transport = Literal["tcp", "udp"]
Profile = Literal["lecture", "full"]
#: The profiles, each including the checks of those before it.
PROFILES: tuple[Profile, ...] = ("lecture", "full")


@dataclass(frozen=True)
class Target:
    """
    The server under test: C{address} is C{host} resolved to an IP address;
    C{timeout} bounds each wait of a check, in seconds.
    """

    reactor: Any
    host: str
    address: str
    port: int
    timeout: float

    @property
    def server(self) -> str:
        """C{H:P} as the user named the server (IPv6 literals in brackets)."""
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"
