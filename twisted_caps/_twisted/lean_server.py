# -*- test-case-name: tests.test_lean_server -*-
"""
Accept TCP connections into a transport that makes its log prefix and its
C{repr} when they are asked for, not at every accept.

C{tcp.Server}'s constructor formats two strings per connection, C{logstr}
(the prefix of old-style log lines about it) and C{repstr} (its C{repr}):
about 165 bytes that every idle connection keeps, an eighth of what one
costs caps in all, and two string formats per accepted connection, for
text read only when something logs an error about the connection or
prints it. L{LeanServer} takes the values the constructor assigns and
drops them, and makes the same text on demand; L{use_lean_server} has a
listening C{tcp.Port} build it (the port's C{transport} attribute is the
class it builds). A connection's prefix after it has closed (Twisted has
removed its protocol by then) names no protocol.

It reads C{Port._realPortNumber} for the C{repr}, as Twisted does. The
change to propose upstream: compute C{logstr} and C{repr} lazily in
C{tcp.Server} itself (no ticket yet). A port that is not exactly a
C{tcp.Port} building C{tcp.Server}s keeps Twisted's transport; on a
Twisted whose C{Server} no longer stores either string, the subclass
changes nothing.
"""

from typing import Any

from twisted.internet import tcp
from twisted.internet.interfaces import ILoggingContext


def _log_prefix(protocol: object) -> str:
    """What Twisted logs a protocol's events under: its C{logPrefix()}, or its class name."""
    if ILoggingContext.providedBy(protocol):
        prefix: str = protocol.logPrefix()
        return prefix
    return protocol.__class__.__name__


class LeanServer(tcp.Server):
    """A C{tcp.Server} whose C{logstr} and C{repstr} are made when read."""

    @property
    def logstr(self) -> str:
        """C{PROTOCOL,SESSION,HOST}, as Twisted's constructor would have made it."""
        protocol = vars(self).get("protocol")
        prefix = "-" if protocol is None else _log_prefix(protocol)
        return f"{prefix},{self.sessionno},{self.hostname}"

    @logstr.setter
    def logstr(self, value: str) -> None:
        """The constructor's value is dropped: it is made when read."""

    @property
    def repstr(self) -> str:
        """C{<PROTOCOL #SESSION on PORT>}, as Twisted's constructor would have made it."""
        protocol = vars(self).get("protocol")
        name = "closed" if protocol is None else protocol.__class__.__name__
        return f"<{name} #{self.sessionno} on {self.server._realPortNumber}>"

    @repstr.setter
    def repstr(self, value: str) -> None:
        """The constructor's value is dropped: it is made when read."""


def use_lean_server(port: Any) -> bool:
    """
    Have the listening C{port} build L{LeanServer}s for its connections if
    it is a C{tcp.Port} building C{tcp.Server}s; return whether it does.
    """
    if type(port) is not tcp.Port or port.transport is not tcp.Server:
        return False
    port.transport = LeanServer
    return True
