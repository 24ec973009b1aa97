"""Tests for L{twisted_caps._twisted.proxy_protocol}, driven through a StringTransport."""

from twisted.internet.address import IPv4Address
from twisted.internet.interfaces import IHalfCloseableProtocol, ITransport
from twisted.internet.protocol import Factory, Protocol, connectionDone
from twisted.internet.testing import StringTransportWithDisconnection
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer

from twisted_caps._twisted.proxy_protocol import HalfCloseProxyProtocolFactory

V1_HEADER = b"PROXY TCP4 192.0.2.7 127.0.0.1 40000 1200\r\n"
# PROXY v2, command LOCAL, family UNSPEC, no addresses: HAProxy's health check.
V2_LOCAL_HEADER = b"\r\n\r\n\x00\r\nQUIT\n\x20\x00\x00\x00"


@implementer(IHalfCloseableProtocol)
class Recorder(Protocol):
    transport: ITransport

    def __init__(self) -> None:
        self.events: list[object] = []

    def connectionMade(self) -> None:
        self.events.append(("made", self.transport.getPeer()))

    def dataReceived(self, data: bytes) -> None:
        self.events.append(("data", data))

    def readConnectionLost(self) -> None:
        self.events.append("read closed")

    def writeConnectionLost(self) -> None:
        self.events.append("write closed")

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.events.append("lost")


class Refuser(Recorder):
    def connectionMade(self) -> None:
        super().connectionMade()
        self.transport.loseConnection()


class WrapperTests(SynchronousTestCase):
    def connect(
        self, recorder: Recorder | None = None
    ) -> tuple[Recorder, Protocol, StringTransportWithDisconnection]:
        recorder = recorder or Recorder()
        factory = HalfCloseProxyProtocolFactory(Factory.forProtocol(lambda: recorder))
        wrapper = factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 50000))
        assert wrapper is not None
        transport = StringTransportWithDisconnection(
            peerAddress=IPv4Address("TCP", "127.0.0.1", 50000)
        )
        transport.protocol = wrapper
        wrapper.makeConnection(transport)
        return recorder, wrapper, transport

    def test_protocol_starts_after_the_header_with_the_client_address(self) -> None:
        recorder, wrapper, _ = self.connect()
        self.assertEqual(recorder.events, [])
        wrapper.dataReceived(V1_HEADER[:10])
        self.assertEqual(recorder.events, [])
        wrapper.dataReceived(V1_HEADER[10:] + b"hello")
        self.assertEqual(
            recorder.events,
            [("made", IPv4Address("TCP", "192.0.2.7", 40000)), ("data", b"hello")],
        )

    def test_half_close_reaches_the_protocol(self) -> None:
        recorder, wrapper, transport = self.connect()
        self.assertTrue(IHalfCloseableProtocol.providedBy(wrapper))
        wrapper.dataReceived(V1_HEADER)
        IHalfCloseableProtocol(wrapper).readConnectionLost()
        IHalfCloseableProtocol(wrapper).writeConnectionLost()
        self.assertEqual(recorder.events[1:], ["read closed", "write closed"])
        self.assertTrue(transport.connected)

    def test_local_header_starts_with_the_real_peer(self) -> None:
        recorder, wrapper, _ = self.connect()
        wrapper.dataReceived(V2_LOCAL_HEADER)
        self.assertEqual(recorder.events, [("made", IPv4Address("TCP", "127.0.0.1", 50000))])

    def test_no_header_closes_without_starting_the_protocol(self) -> None:
        recorder, wrapper, transport = self.connect()
        wrapper.dataReceived(b"hello world, no header here\r\n")
        self.assertFalse(transport.connected)
        self.assertEqual(recorder.events, [])

    def test_closing_before_a_header_never_starts_the_protocol(self) -> None:
        recorder, wrapper, transport = self.connect()
        wrapper.dataReceived(V1_HEADER[:10])
        IHalfCloseableProtocol(wrapper).readConnectionLost()
        self.assertFalse(transport.connected)
        self.assertEqual(recorder.events, [])

    def test_protocol_that_closes_at_once_gets_no_data(self) -> None:
        # A connection refused in connectionMade (over a limit) must not be
        # answered, even when the data came with the header.
        recorder, wrapper, transport = self.connect(Refuser())
        wrapper.dataReceived(V1_HEADER + b"hello")
        self.assertEqual(
            recorder.events, [("made", IPv4Address("TCP", "192.0.2.7", 40000)), "lost"]
        )
        self.assertFalse(transport.connected)
