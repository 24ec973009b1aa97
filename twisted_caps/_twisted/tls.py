# -*- test-case-name: tests.test_tls -*-
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

L{HalfCloseTLSTransport} fixes both; L{HalfCloseTLSReactor} makes
C{ssl:} endpoint strings use it.
"""

from typing import Any

from OpenSSL import SSL
from twisted.internet.interfaces import IHalfCloseableProtocol, IListeningPort
from twisted.internet.protocol import Factory
from twisted.protocols.tls import BufferingTLSTransport, TLSMemoryBIOFactory


class HalfCloseTLSTransport(BufferingTLSTransport):
    """
    A TLS server transport that turns the peer's close_notify into
    C{readConnectionLost} for a protocol that provides
    C{IHalfCloseableProtocol}, and sends every reply written before it.

    The protocol is expected to finish (write, then C{loseConnection}) from
    C{readConnectionLost}: the TLS session ends right after, as TLS before
    1.3 requires.
    """

    _input_ended = False

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
    reactor is all it takes.
    """

    def __init__(self, reactor: Any) -> None:
        self._reactor = reactor

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
        tls_factory = TLSMemoryBIOFactory(contextFactory, False, factory)
        tls_factory.protocol = HalfCloseTLSTransport
        listening: IListeningPort = self._reactor.listenTCP(port, tls_factory, backlog, interface)
        return listening
