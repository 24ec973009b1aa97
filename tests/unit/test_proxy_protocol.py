"""Tests for L{twisted_caps.serving.proxy_protocol}, driven through a StringTransport."""

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone
from twisted.internet.interfaces import IAddress, IHalfCloseableProtocol, IReactorTime, ITransport
from twisted.internet.protocol import Factory, Protocol, connectionDone
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransportWithDisconnection
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer

from twisted_caps.core.limits import PROXY_HEADER, PROXY_HEADER_TIMEOUT
from twisted_caps.serving.proxy_protocol import HalfCloseProxyProtocolFactory, HeaderPolicy

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


class Policy:
    """A header policy with C{slots} places for connections waiting for their header."""

    header_timeout = 5.0

    def __init__(self, slots: int = 10) -> None:
        self.timer = Clock()
        self.clock: IReactorTime = self.timer
        self.slots = slots
        self.pending = 0
        self.refusals: list[tuple[str, str]] = []

    def admit_pending(self, peer: IAddress) -> bool:
        if self.pending >= self.slots:
            return False
        self.pending += 1
        return True

    def release_pending(self) -> None:
        self.pending -= 1

    def refuse_header(self, reason: str, detail: str, peer: IAddress) -> None:
        self.refusals.append((reason, detail))


class Refuser(Recorder):
    def connectionMade(self) -> None:
        super().connectionMade()
        self.transport.loseConnection()


class WrapperTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.policy = Policy()

    def connect(
        self, recorder: Recorder | None = None
    ) -> tuple[Recorder, Protocol, StringTransportWithDisconnection]:
        recorder = recorder or Recorder()
        self.assertIsInstance(self.policy, HeaderPolicy)
        factory = HalfCloseProxyProtocolFactory(Factory.forProtocol(lambda: recorder), self.policy)
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

    def test_header_byte_by_byte_starts_the_protocol(self) -> None:
        for header in (V1_HEADER, V2_LOCAL_HEADER):
            recorder, wrapper, _ = self.connect()
            for byte in header:
                wrapper.dataReceived(bytes([byte]))
            self.assertEqual(len(recorder.events), 1)
        self.assertEqual(self.policy.pending, 0)

    def test_waiting_for_a_header_holds_a_slot_until_it_comes(self) -> None:
        _, wrapper, _ = self.connect()
        self.assertEqual(self.policy.pending, 1)
        wrapper.dataReceived(V1_HEADER)
        self.assertEqual(self.policy.pending, 0)

    def test_no_slot_closes_at_once(self) -> None:
        self.policy.slots = 0
        recorder, wrapper, transport = self.connect()
        self.assertFalse(transport.connected)
        wrapper.dataReceived(V1_HEADER + b"hello")
        self.assertEqual(recorder.events, [])

    def test_header_not_complete_in_time_is_refused_and_closed(self) -> None:
        recorder, wrapper, transport = self.connect()
        wrapper.dataReceived(V1_HEADER[:10])
        self.policy.timer.advance(4.9)
        self.assertTrue(transport.connected)
        self.policy.timer.advance(0.1)
        self.assertFalse(transport.connected)
        self.assertEqual(
            self.policy.refusals, [(PROXY_HEADER_TIMEOUT, "no complete PROXY header within 5s")]
        )
        self.assertEqual((recorder.events, self.policy.pending), ([], 0))

    def test_malformed_header_is_refused_once_and_closed(self) -> None:
        recorder, wrapper, transport = self.connect()
        wrapper.dataReceived(b"PROXY TCP4 192.0.2.7 127.0.0.1 x 1200\r\n")
        wrapper.dataReceived(b"more")
        self.assertFalse(transport.connected)
        self.assertEqual([reason for reason, _ in self.policy.refusals], [PROXY_HEADER])
        self.assertEqual((recorder.events, self.policy.pending), ([], 0))
        self.assertEqual(self.policy.timer.getDelayedCalls(), [])

    def test_connection_lost_before_the_header_gives_back_its_slot_and_timer(self) -> None:
        _, wrapper, _ = self.connect()
        wrapper.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(self.policy.pending, 0)
        self.assertEqual(self.policy.timer.getDelayedCalls(), [])


class WrapperFuzzTests(SynchronousTestCase):
    @settings(max_examples=300, deadline=None)
    @given(st.lists(st.binary(max_size=40), max_size=8), st.booleans())
    def test_any_chunks_start_the_protocol_or_close_with_one_refusal(
        self, chunks: list[bytes], half_close: bool
    ) -> None:
        """
        Whatever arrives, in whatever pieces, no exception escapes the
        wrapper; a connection is started, or refused at most once, or still
        waiting; and its slot is given back when it ends.
        """
        policy = Policy()
        recorder = Recorder()
        factory = HalfCloseProxyProtocolFactory(Factory.forProtocol(lambda: recorder), policy)
        wrapper = factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 50000))
        assert wrapper is not None
        transport = StringTransportWithDisconnection()
        transport.protocol = wrapper
        wrapper.makeConnection(transport)
        for chunk in [V1_HEADER[:7], *chunks]:
            wrapper.dataReceived(chunk)
        if half_close:
            IHalfCloseableProtocol(wrapper).readConnectionLost()
        self.assertLessEqual(len(policy.refusals), 1)
        started = any(isinstance(e, tuple) and e[0] == "made" for e in recorder.events)
        self.assertFalse(started and policy.refusals)
        if transport.connected:
            wrapper.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(policy.pending, 0)
