# -*- test-case-name: tests.test_tls,tests.adversarial.test_tls -*-
"""
TLS listeners on which a client's close_notify ends its input the way a
TCP half-close does.

A caps client says "that is all my text" by half-closing. Over TLS that is
the close_notify alert; Twisted's TLS server transport has two gaps there:

  - it reports close_notify to the protocol as C{connectionLost}, never as
    C{readConnectionLost}, so a half-closeable protocol cannot send the rest
    of its answer (caps holds back an unfinished UTF-8 character until the
    end of input);
  - it coalesces small writes until the next reactor iteration, but answers
    close_notify at once in the same read; the replies to the last bytes
    before close_notify are still in that buffer and are dropped, so a
    client that sends its text and close_notify together gets no reply.

And it has no half-close of its own: C{loseWriteConnection}, looked up on
it, is the TCP transport's (through C{ProtocolWrapper.__getattr__}), which
sends a bare FIN under the TLS session, with no close_notify, and leaves
the TLS layer reading a connection it thinks is still open.

L{HalfCloseTLSTransport} fixes all three; L{HalfCloseTLSReactor} makes
C{ssl:} endpoint strings use it.

A listener's certificate and key are re-read on reload (SIGHUP) through
L{ReloadableServerTLS}: new connections get the new ones, open connections
keep theirs.
"""

from typing import Any
from weakref import WeakKeyDictionary

from OpenSSL import SSL
from twisted.internet import endpoints
from twisted.internet.interfaces import (
    IHalfCloseableProtocol,
    IListeningPort,
    IOpenSSLServerConnectionCreator,
)
from twisted.internet.protocol import Factory
from twisted.protocols.tls import BufferingTLSTransport, TLSMemoryBIOFactory, TLSMemoryBIOProtocol
from zope.interface import implementer


class HalfCloseTLSTransport(BufferingTLSTransport):
    """
    A TLS server transport that turns the peer's close_notify into
    C{readConnectionLost} for a protocol that provides
    C{IHalfCloseableProtocol}, and sends every reply written before it.

    The protocol is expected to finish (write, then C{loseConnection}) from
    C{readConnectionLost}: the TLS session ends right after, as TLS before
    1.3 requires.

    L{loseWriteConnection} is the TLS form of a half-close, for a server
    that ends a connection gracefully (idle timeout, shutdown): every reply
    written, then close_notify, while the client's input is still read.
    """

    _input_ended = False

    def loseWriteConnection(self) -> None:
        """
        Send every reply written so far, then close_notify; keep reading,
        so the client's input still reaches the protocol, until the client
        answers with its own close_notify or closes the TCP connection.

        Before the handshake is complete there is no session to end, and a
        reply that OpenSSL could not take yet (a renegotiation under way)
        must go out before close_notify: both are left to
        C{loseConnection}, which aborts or closes once the replies are out.
        """
        if self.disconnecting or self._lostTLSConnection:
            return
        self._aggregator.flush()
        if not self._handshakeDone or self._appSendBuffer:
            self.loseConnection()
            return
        # Writes after this are dropped, as on a TCP transport after its
        # half-close; the TCP connection closes when the client's
        # close_notify completes the TLS shutdown (see _shutdownTLS).
        self.disconnecting = True
        try:
            self._tlsConnection.shutdown()
        except SSL.Error:
            self.abortConnection()
            return
        self._flushSendBIO()

    def _shutdownTLS(self) -> None:
        peer_closed = self._tlsConnection.get_shutdown() & SSL.RECEIVED_SHUTDOWN
        if peer_closed and not self._input_ended and not self._aborted:
            self._input_ended = True
            protocol = IHalfCloseableProtocol(self.wrappedProtocol, None)
            if protocol is not None:
                protocol.readConnectionLost()
        # Replies still waiting in the small-write buffer go out before our
        # own close_notify, which ends the session.
        self._aggregator.flush()
        super()._shutdownTLS()


class HalfCloseTLSReactor:
    """
    A reactor whose C{listenSSL} serves with L{HalfCloseTLSTransport};
    everything else is the wrapped reactor's. Twisted's C{ssl:} endpoint
    listens through C{listenSSL}, so parsing an endpoint string with this
    reactor is all it takes. C{description}, the endpoint string, is what a
    reload parses again.
    """

    def __init__(self, reactor: Any, description: str) -> None:
        self._reactor = reactor
        self._description = description

    def __getattr__(self, name: str) -> Any:
        return getattr(self._reactor, name)

    def listenSSL(
        self,
        port: int,
        factory: Factory,
        contextFactory: Any,
        backlog: int = 50,
        interface: str = "",
    ) -> IListeningPort:
        """Listen for TLS on TCP C{port}, as the reactor would, with the fixed transport."""
        tls = ReloadableServerTLS(self._description, contextFactory)
        tls_factory = TLSMemoryBIOFactory(tls, False, factory)
        tls_factory.protocol = HalfCloseTLSTransport
        listening: IListeningPort = self._reactor.listenTCP(port, tls_factory, backlog, interface)
        _reloadable[listening] = tls
        return listening


@implementer(IOpenSSLServerConnectionCreator)
class ReloadableServerTLS:
    """
    The TLS settings of one C{ssl:} listener, which L{reload} replaces by
    those its endpoint string gives now (the files named are read again).
    """

    def __init__(self, description: str, options: Any) -> None:
        self.description = description
        self._options = options

    def serverConnectionForTLS(self, tlsProtocol: TLSMemoryBIOProtocol) -> SSL.Connection:
        """A TLS connection with the settings in force now."""
        make = getattr(self._options, "serverConnectionForTLS", None)
        if make is not None:
            connection: SSL.Connection = make(tlsProtocol)
            return connection
        return SSL.Connection(self._options.getContext(), None)

    def reload(self) -> None:
        """
        Read the certificate and key files again and use them for new
        connections; on any error, keep the settings in force.

        @raise ValueError: with a one-line explanation, if the files no
            longer make a usable server context (unreadable, not PEM, a key
            that does not match the certificate).
        """
        capture = _CaptureListenSSL()
        try:
            endpoint = endpoints.serverFromString(capture, self.description)
            endpoint.listen(Factory())
            options = capture.context_factory
            options.getContext()
        except Exception as error:
            raise ValueError(describe_tls_error(error)) from None
        self._options = options


def reloadable_tls(port: IListeningPort) -> ReloadableServerTLS | None:
    """The reloadable TLS settings of a listening port, if it serves TLS."""
    return _reloadable.get(port)


def describe_tls_error(error: Exception) -> str:
    """
    An error from reading TLS files as one line: OpenSSL's list of
    C{(library, function, reason)} tuples becomes its reasons.
    """
    details = error.args[0] if error.args else None
    if isinstance(details, list) and all(isinstance(d, tuple) and d for d in details):
        reasons = [str(d[-1]) for d in details if d[-1]]
        if reasons:
            return "; ".join(reasons)
    return str(error) or type(error).__name__


_reloadable: "WeakKeyDictionary[IListeningPort, ReloadableServerTLS]" = WeakKeyDictionary()


class _CaptureListenSSL:
    """A stand-in reactor that keeps the context factory an C{ssl:} endpoint would listen with."""

    context_factory: Any = None

    def listenSSL(
        self, port: int, factory: Factory, contextFactory: Any, *args: object, **kw: object
    ) -> None:
        self.context_factory = contextFactory
