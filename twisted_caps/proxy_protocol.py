# -*- test-case-name: tests.test_haproxy -*-
"""
Listeners behind a load balancer that speaks the PROXY protocol (HAProxy's
C{send-proxy} / C{send-proxy-v2}), on which the caps protocol sees the
client's address from its first moment, and a client's half-close works.

Twisted's own C{haproxy:} wrapper has two gaps for caps:

  - it starts the wrapped protocol (C{connectionMade}) when the TCP
    connection opens, before the PROXY header has arrived, so at that point
    C{getPeer()} is the load balancer's address, not the client's;
  - it does not pass a half-close on: the wrapped protocol gets
    C{connectionLost} instead of C{readConnectionLost}, and the replies to
    the last bytes before the client's FIN are dropped.

L{ProxyProtocolEndpoint} wraps any stream server endpoint with
L{HalfCloseProxyProtocolWrapper}, which closes both gaps. It builds on
Twisted's wrapper and header parsers (private modules, present since
Twisted 16).
"""

from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import (
    IHalfCloseableProtocol,
    IListeningPort,
    IProtocolFactory,
    IStreamServerEndpoint,
    ITransport,
)
from twisted.internet.protocol import Protocol, connectionDone
from twisted.protocols.haproxy._exceptions import InvalidProxyHeader
from twisted.protocols.haproxy._v1parser import V1Parser
from twisted.protocols.haproxy._v2parser import V2Parser
from twisted.protocols.haproxy._wrapper import HAProxyProtocolWrapper, HAProxyWrappingFactory
from twisted.python.failure import Failure
from zope.interface import directlyProvides, implementer, providedBy


@implementer(IHalfCloseableProtocol)
class HalfCloseProxyProtocolWrapper(HAProxyProtocolWrapper):
    """
    Read the PROXY header, then start the wrapped protocol; pass half-closes on.

    A connection that ends before a complete header never reaches the
    wrapped protocol; one that does not start with a header is closed, as
    Twisted's wrapper does. A LOCAL header (HAProxy's health checks) starts
    the wrapped protocol with the real connection's addresses, as the
    PROXY protocol specifies.
    """

    _started = False

    def makeConnection(self, transport: ITransport) -> None:
        # ProtocolWrapper.makeConnection, except that the wrapped protocol
        # waits for the header (see dataReceived).
        directlyProvides(self, providedBy(transport))
        Protocol.makeConnection(self, transport)
        self.factory.registerProtocol(self)

    def dataReceived(self, data: bytes) -> None:
        if self._started:
            self.wrappedProtocol.dataReceived(data)
            return
        parser = self._parser
        if parser is None:
            if len(data) >= 16 and data[:12] == V2Parser.PREFIX and data[12] & 0xF0 == 0x20:
                parser = V2Parser()
            elif len(data) >= 8 and data[:5] == V1Parser.PROXYSTR:
                parser = V1Parser()
            else:
                self.loseConnection()
                return
            self._parser = parser
        try:
            info, remaining = parser.feed(data)
        except InvalidProxyHeader:
            self.loseConnection()
            return
        if info is None:
            return
        self._proxyInfo = info
        self._started = True
        self.wrappedProtocol.makeConnection(ITransport(self))
        # A protocol that closed at once (a connection over a limit) gets no
        # data, as over plain TCP, where loseConnection stops reading.
        if remaining and not self.disconnecting:
            self.wrappedProtocol.dataReceived(remaining)

    def loseWriteConnection(self) -> None:
        """Half-close the connection underneath, which is this wrapper's own stream."""
        transport: Any = self.transport
        transport.loseWriteConnection()

    def readConnectionLost(self) -> None:
        protocol = IHalfCloseableProtocol(self.wrappedProtocol, None)
        if self._started and protocol is not None:
            protocol.readConnectionLost()
        else:
            self.loseConnection()

    def writeConnectionLost(self) -> None:
        protocol = IHalfCloseableProtocol(self.wrappedProtocol, None)
        if self._started and protocol is not None:
            protocol.writeConnectionLost()
        else:
            self.loseConnection()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        if self._started:
            super().connectionLost(reason)
        else:
            self.factory.unregisterProtocol(self)


class HalfCloseProxyProtocolFactory(HAProxyWrappingFactory):
    """Wrap each connection in a L{HalfCloseProxyProtocolWrapper}."""

    noisy = False  # the wrapped factory and the service log what matters
    protocol = HalfCloseProxyProtocolWrapper  # type: ignore[assignment]  # a subclass


@implementer(IStreamServerEndpoint)
class ProxyProtocolEndpoint:
    """Listen on C{inner}, reading a PROXY protocol header on each connection."""

    def __init__(self, inner: IStreamServerEndpoint) -> None:
        self._inner = inner

    def listen(self, factory: IProtocolFactory) -> "Deferred[IListeningPort]":
        wrapped: Any = HalfCloseProxyProtocolFactory(factory)
        return self._inner.listen(wrapped)
