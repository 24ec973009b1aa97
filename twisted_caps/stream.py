# -*- test-case-name: tests.test_stream -*-
"""
The TCP capitalization protocol: every byte received is answered, in order,
with its capitalized form as soon as it arrives.
"""

from twisted.internet.interfaces import (
    IAddress,
    IConsumer,
    IHalfCloseableProtocol,
    IPushProducer,
    ITransport,
)
from twisted.internet.protocol import Factory, Protocol
from zope.interface import implementer

from twisted_caps.transform import StreamCapitalizer, capitalize


@implementer(IHalfCloseableProtocol)
class CapsStreamProtocol(Protocol):
    """
    Answer a byte stream with its capitalization, with no framing.

    The transport is registered as the producer of its own writes: when a
    client sends faster than it reads and the outgoing buffer fills, Twisted
    stops reading from that client until the buffer drains, so memory stays
    bounded and nothing is dropped. When the client half-closes, the
    remaining replies are written and then the connection is closed.
    """

    transport: ITransport

    def __init__(self, once: bool = False) -> None:
        self._once = once

    def connectionMade(self) -> None:
        self._capitalizer = StreamCapitalizer()
        IConsumer(self.transport).registerProducer(IPushProducer(self.transport), True)

    def dataReceived(self, data: bytes) -> None:
        if self._once:
            self.transport.write(capitalize(data))
            self._finish()
            return
        reply = self._capitalizer.feed(data)
        if reply:
            self.transport.write(reply)

    def readConnectionLost(self) -> None:
        """The client sent its last byte: flush, answer, then close."""
        tail = self._capitalizer.flush()
        if tail:
            self.transport.write(tail)
        self._finish()

    def writeConnectionLost(self) -> None:
        """Replies can no longer be delivered, so stop reading too."""
        self._finish()

    def _finish(self) -> None:
        # A transport with a paused producer registered never closes, so
        # unregister it before asking for the close.
        IConsumer(self.transport).unregisterProducer()
        self.transport.loseConnection()


class CapsStreamFactory(Factory):
    """
    Build L{CapsStreamProtocol}s.

    @ivar once: answer only the first chunk received, then close (the
        course's server behaviour, for clients that read until the server
        closes).
    """

    noisy = False

    def __init__(self, once: bool = False) -> None:
        self.once = once

    def buildProtocol(self, addr: IAddress | None) -> CapsStreamProtocol:
        protocol = CapsStreamProtocol(once=self.once)
        protocol.factory = self
        return protocol
