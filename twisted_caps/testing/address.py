# -*- test-case-name: tests.test_testing -*-
"""
Where a test server listens: what a test needs to point a client at it.
"""

from dataclasses import dataclass


@dataclass
class CapsAddress:
    """
    The loopback host and the ports of a running caps server.

    C{tcp_port} and C{udp_port} raise C{LookupError} when the server was
    started without that listener (C{no_tcp=True}, C{no_udp=True}), so a
    test that forgot gets a clear message, not a connection to port None.
    """

    host: str
    tcp: int | None
    udp: int | None

    @property
    def tcp_port(self) -> int:
        """The TCP port number."""
        if self.tcp is None:
            raise LookupError("this caps server has no TCP listener")
        return self.tcp

    @property
    def udp_port(self) -> int:
        """The UDP port number."""
        if self.udp is None:
            raise LookupError("this caps server has no UDP listener")
        return self.udp
