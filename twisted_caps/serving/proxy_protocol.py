# -*- test-case-name: tests.unit.test_proxy_protocol,tests.test_haproxy -*-
"""
Listeners behind a load balancer that speaks the PROXY protocol (HAProxy's
C{send-proxy} / C{send-proxy-v2}), on which the caps protocol sees the
client's address from its first moment, a client's half-close works, and
a connection that has not sent its header yet is bounded in time and in
number.

Twisted's own C{haproxy:} wrapper starts the wrapped protocol before the
header has arrived (so C{getPeer()} is the load balancer's address), drops
half-closes, refuses C{PROXY UNKNOWN} (what HAProxy sends from a
UNIX-socket frontend) and a header split over several reads, and lets a
malformed port or address escape as a traceback. So this wrapper is built
on Twisted's public C{ProtocolWrapper}, with L{twisted_caps.core.proxy_header}
to read the header.

What happens before the header is policy, and the wrapped factory sets it
by providing L{HeaderPolicy}: how long a header may take, whether one more
connection may wait for its header, and how a refusal is counted and
logged. L{ProxyProtocolReactor} puts the wrapper under every listener of
an endpoint string, TLS included.
"""

from typing import Any, Protocol, runtime_checkable

from twisted.internet.interfaces import (
    IAddress,
    IDelayedCall,
    IHalfCloseableProtocol,
    IListeningPort,
    IProtocolFactory,
    IReactorTime,
    ITransport,
)
from twisted.internet.protocol import Protocol as TwistedProtocol
from twisted.internet.protocol import connectionDone
from twisted.protocols.policies import ProtocolWrapper, WrappingFactory
from twisted.python.failure import Failure
from zope.interface import directlyProvides, implementer, providedBy

from twisted_caps.core.limits import PROXY_HEADER, PROXY_HEADER_TIMEOUT
from twisted_caps.core.proxy_header import HeaderReader, MalformedHeaderError, ProxyHeader


@runtime_checkable
class HeaderPolicy(Protocol):
    """What a factory behind a PROXY-protocol listener decides before a header."""

    #: The clock of the header deadline.
    clock: IReactorTime

    @property
    def header_timeout(self) -> float:
        """Seconds a connection has to send its whole header."""

    def admit_pending(self, peer: IAddress) -> bool:
        """Take a slot for a connection from C{peer} (the proxy) until its header is read."""

    def release_pending(self) -> None:
        """Give back the slot L{admit_pending} took."""

    def refuse_header(self, reason: str, detail: str, peer: IAddress) -> None:
        """Count and log a connection closed for C{reason} (C{detail}: one line)."""


@implementer(IHalfCloseableProtocol)
class HalfCloseProxyProtocolWrapper(ProtocolWrapper):
    """
    Read the PROXY header, then start the wrapped protocol; pass half-closes on.

    Until its header is complete, a connection holds a slot of its
    factory's L{HeaderPolicy} and has C{header_timeout} seconds; a
    malformed header, or none in time, closes it, counted and logged by the
    policy. A connection that ends before a complete header never reaches
    the wrapped protocol. A header that names no client (LOCAL, UNKNOWN,
    AF_UNSPEC) starts the wrapped protocol with the real connection's
    addresses, as the PROXY protocol specifies.
    """

    factory: "HalfCloseProxyProtocolFactory"
    disconnecting = False
    _header: ProxyHeader | None = None
    _deadline: IDelayedCall | None = None
    _pending = False

    def __init__(self, factory: "HalfCloseProxyProtocolFactory", wrapped: Any) -> None:
        super().__init__(factory, wrapped)  # type: ignore[arg-type]
        self._reader: HeaderReader | None = HeaderReader()

    def makeConnection(self, transport: ITransport) -> None:
        # ProtocolWrapper.makeConnection, except that the wrapped protocol
        # waits for the header (see dataReceived).
        directlyProvides(self, providedBy(transport))
        TwistedProtocol.makeConnection(self, transport)
        self.factory.registerProtocol(self)
        policy = self.factory.policy
        if not policy.admit_pending(transport.getPeer()):
            self._reader = None
            self.loseConnection()
            return
        self._pending = True
        self._deadline = policy.clock.callLater(policy.header_timeout, self._header_too_late)

    def dataReceived(self, data: bytes) -> None:
        if self._header is not None:
            self.wrappedProtocol.dataReceived(data)
            return
        if self._reader is None:  # refused, closing
            return
        try:
            complete = self._reader.feed(data)
        except MalformedHeaderError as error:
            self._refuse(PROXY_HEADER, str(error))
            return
        if complete is None:
            return
        self._stop_waiting()
        self._header, remaining = complete
        self.wrappedProtocol.makeConnection(ITransport(self))
        # A protocol that closed at once (a connection over a limit) gets no
        # data, as over plain TCP, where loseConnection stops reading.
        if remaining and not self.disconnecting:
            self.wrappedProtocol.dataReceived(remaining)

    def getPeer(self) -> IAddress:
        if self._header is not None and self._header.source is not None:
            return self._header.source
        peer: IAddress = self.transport.getPeer()  # type: ignore[union-attr]
        return peer

    def getHost(self) -> IAddress:
        if self._header is not None and self._header.destination is not None:
            return self._header.destination
        host: IAddress = self.transport.getHost()  # type: ignore[union-attr]
        return host

    def loseWriteConnection(self) -> None:
        """Half-close the connection underneath, which is this wrapper's own stream."""
        transport: Any = self.transport
        transport.loseWriteConnection()

    def abortConnection(self) -> None:
        """Abort the connection underneath."""
        self.disconnecting = True
        transport: Any = self.transport
        transport.abortConnection()

    def readConnectionLost(self) -> None:
        protocol = _half_closeable(self.wrappedProtocol)
        if self._header is not None and protocol is not None:
            protocol.readConnectionLost()
        else:
            self.loseConnection()

    def writeConnectionLost(self) -> None:
        protocol = _half_closeable(self.wrappedProtocol)
        if self._header is not None and protocol is not None:
            protocol.writeConnectionLost()
        else:
            self.loseConnection()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self._stop_waiting()
        if self._header is not None:
            super().connectionLost(reason)
        else:
            self.factory.unregisterProtocol(self)

    def _header_too_late(self) -> None:
        self._deadline = None
        timeout = self.factory.policy.header_timeout
        self._refuse(PROXY_HEADER_TIMEOUT, f"no complete PROXY header within {timeout:g}s")

    def _refuse(self, reason: str, detail: str) -> None:
        self._stop_waiting()
        self.factory.policy.refuse_header(reason, detail, self.transport.getPeer())  # type: ignore[union-attr]
        self.loseConnection()

    def _stop_waiting(self) -> None:
        """The header is read, refused or will never come: give back its slot and timer."""
        self._reader = None
        if self._deadline is not None and self._deadline.active():
            self._deadline.cancel()
        self._deadline = None
        if self._pending:
            self._pending = False
            self.factory.policy.release_pending()


def _half_closeable(protocol: object) -> IHalfCloseableProtocol | None:
    """
    C{protocol}, if its own class handles half-closes. A TLS protocol above
    this wrapper copies the interfaces of its transport, this wrapper's
    C{IHalfCloseableProtocol} among them, without handling half-closes: its
    C{readConnectionLost} would be this wrapper's own, through
    C{__getattr__}, for ever.
    """
    if IHalfCloseableProtocol.implementedBy(type(protocol)):
        return IHalfCloseableProtocol(protocol)
    return None


class HalfCloseProxyProtocolFactory(WrappingFactory):
    """Wrap each connection in a L{HalfCloseProxyProtocolWrapper} under C{policy}."""

    noisy = False  # the wrapped factory and the service log what matters
    protocol = HalfCloseProxyProtocolWrapper

    def __init__(self, wrappedFactory: IProtocolFactory, policy: HeaderPolicy) -> None:
        super().__init__(wrappedFactory)
        self.policy = policy

    def logPrefix(self) -> str:
        return f"{type(self.wrappedFactory).__name__} (PROXY)"


class ProxyProtocolReactor:
    """
    A reactor whose stream listeners (C{listenTCP}, C{listenUNIX},
    C{adoptStreamPort}) read a PROXY header first on every connection;
    everything else is the wrapped reactor's. Parsing an endpoint string
    with it gives a listener behind the PROXY protocol.

    The header is the first thing on the connection, under any other
    layer: for C{ssl:}, L{twisted_caps._twisted.tls.HalfCloseTLSReactor} over this
    one starts TLS after the header, as HAProxy sends it
    (C{server ... ssl send-proxy}); Twisted's own C{haproxy:ssl:} expects
    the header inside TLS.

    The factory given to a listener, or the factory it wraps (TLS), must
    be the L{HeaderPolicy} of the connections.
    """

    def __init__(self, reactor: Any) -> None:
        self._reactor = reactor

    def __getattr__(self, name: str) -> Any:
        return getattr(self._reactor, name)

    def listenTCP(
        self, port: int, factory: IProtocolFactory, backlog: int = 50, interface: str = ""
    ) -> IListeningPort:
        """Listen on TCP C{port}, as the reactor would, reading a header first."""
        listening: IListeningPort = self._reactor.listenTCP(
            port, _with_header(factory), backlog, interface
        )
        return listening

    def listenUNIX(
        self,
        address: str,
        factory: IProtocolFactory,
        backlog: int = 50,
        mode: int = 0o666,
        wantPID: bool = False,
    ) -> IListeningPort:
        """Listen on the UNIX socket C{address}, as the reactor would, reading a header first."""
        listening: IListeningPort = self._reactor.listenUNIX(
            address, _with_header(factory), backlog, mode, wantPID
        )
        return listening

    def adoptStreamPort(
        self, fileDescriptor: int, addressFamily: Any, factory: IProtocolFactory
    ) -> IListeningPort:
        """Serve an inherited listening socket (systemd), reading a header first."""
        listening: IListeningPort = self._reactor.adoptStreamPort(
            fileDescriptor, addressFamily, _with_header(factory)
        )
        return listening


def _with_header(factory: IProtocolFactory) -> HalfCloseProxyProtocolFactory:
    """Wrap C{factory} to read a header first, under the policy it (or what it wraps) sets."""
    policy: object = factory
    while not isinstance(policy, HeaderPolicy):
        policy = getattr(policy, "wrappedFactory", None)
        if policy is None:
            raise TypeError(f"{factory!r} sets no policy for PROXY headers")
    return HalfCloseProxyProtocolFactory(factory, policy)
