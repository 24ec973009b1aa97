"""Tests for L{twisted_caps.serving.stream}, through an in-memory transport."""

from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.logger import capturedLogs
from twisted.protocols.policies import ProtocolWrapper, WrappingFactory
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from twisted_caps.core.limits import MAX_CONNECTIONS, MAX_PER_PEER, ConnectionLimits
from twisted_caps.core.transform import capitalize
from twisted_caps.serving import stream
from twisted_caps.serving.stream import CapsStreamFactory, CapsStreamProtocol, own_half_close


def connect(once: bool = False) -> tuple[CapsStreamProtocol, StringTransport]:
    protocol = CapsStreamFactory(Clock(), once=once).buildProtocol(None)
    transport = StringTransport()
    protocol.makeConnection(transport)
    return protocol, transport


class CapsStreamProtocolTests(SynchronousTestCase):
    def test_each_chunk_is_answered_at_once(self) -> None:
        protocol, transport = connect()
        protocol.dataReceived(b"hello")
        self.assertEqual(transport.value(), b"HELLO")
        protocol.dataReceived(b" world\n")
        self.assertEqual(transport.value(), b"HELLO WORLD\n")
        self.assertFalse(transport.disconnecting)

    def test_split_multibyte_character_is_reassembled(self) -> None:
        protocol, transport = connect()
        for byte in "ß!".encode():
            protocol.dataReceived(bytes([byte]))
        self.assertEqual(transport.value(), b"SS!")

    def test_every_split_of_mixed_text_is_answered_as_the_whole(self) -> None:
        """
        ASCII chunks are answered without a capitalizer until the first
        non-ASCII byte; whatever the split into two or three chunks, the
        answer is the capitalization of the whole.
        """
        text = "ab ß€ cd\xff".encode("utf-8", "surrogateescape") + b"\xff"
        for first in range(len(text) + 1):
            for second in range(first, len(text) + 1):
                protocol, transport = connect()
                for chunk in (text[:first], text[first:second], text[second:]):
                    if chunk:
                        protocol.dataReceived(chunk)
                protocol.readConnectionLost()
                self.assertEqual(transport.value(), capitalize(text), (first, second))

    def test_half_close_flushes_pending_bytes_and_closes(self) -> None:
        protocol, transport = connect()
        protocol.dataReceived(b"ok\xe2\x82")
        protocol.readConnectionLost()
        self.assertEqual(transport.value(), b"OK\xe2\x82")
        self.assertTrue(transport.disconnecting)

    def test_transport_is_the_producer_of_its_own_writes(self) -> None:
        protocol, transport = connect()
        self.assertTrue(transport.streaming)
        assert transport.producer is not None
        transport.producer.pauseProducing()
        self.assertEqual(transport.producerState, "paused")
        self.assertEqual(protocol.factory.pauses, 1)
        transport.producer.resumeProducing()
        self.assertEqual(transport.producerState, "producing")

    def test_close_unregisters_the_producer(self) -> None:
        protocol, transport = connect()
        protocol.readConnectionLost()
        self.assertIsNone(transport.producer)

    def test_lost_write_side_closes_the_connection(self) -> None:
        protocol, transport = connect()
        protocol.writeConnectionLost()
        self.assertTrue(transport.disconnecting)

    def test_once_answers_the_first_chunk_then_closes(self) -> None:
        protocol, transport = connect(once=True)
        protocol.dataReceived(b"hello \xc3")
        self.assertEqual(transport.value(), b"HELLO \xc3")
        self.assertTrue(transport.disconnecting)


def closed_at(clock: Clock, transport: StringTransport) -> float:
    """Advance C{clock} in half-seconds until C{transport} closes; the time it did."""
    for _ in range(1000):
        if transport.disconnecting:
            return clock.seconds()
        clock.advance(0.5)
    raise AssertionError("never closed")


def connect_from(
    factory: CapsStreamFactory, host: str
) -> tuple[CapsStreamProtocol, StringTransport]:
    protocol = factory.buildProtocol(None)
    transport = StringTransport(peerAddress=IPv4Address("TCP", host, 40000))
    protocol.makeConnection(transport)
    return protocol, transport


class LimitTests(SynchronousTestCase):
    def test_over_max_connections_is_closed_at_once_and_counted(self) -> None:
        factory = CapsStreamFactory(Clock(), limits=ConnectionLimits(max_connections=1))
        connect_from(factory, "10.0.0.1")
        with capturedLogs() as events:
            _, refused = connect_from(factory, "10.0.0.2")
        self.assertTrue(refused.disconnecting)
        self.assertEqual(factory.refused, {MAX_CONNECTIONS: 1})
        self.assertIn("10.0.0.2", events[0]["peer"])

    def test_refusals_are_logged_at_most_once_a_second(self) -> None:
        clock = Clock()
        factory = CapsStreamFactory(clock, limits=ConnectionLimits(max_per_peer=1))
        connect_from(factory, "10.0.0.1")
        with capturedLogs() as events:
            for _ in range(50):
                connect_from(factory, "10.0.0.1")
            clock.advance(1)
            connect_from(factory, "10.0.0.1")
        self.assertEqual(factory.refused, {MAX_PER_PEER: 51})
        self.assertEqual([e["suppressed"] for e in events], [0, 49])

    def test_per_peer_limit_uses_the_address_seen_at_connection_made(self) -> None:
        factory = CapsStreamFactory(Clock(), limits=ConnectionLimits(max_per_peer=1))
        _, first = connect_from(factory, "10.0.0.1")
        _, second = connect_from(factory, "10.0.0.2")
        _, third = connect_from(factory, "10.0.0.1")
        self.assertEqual([t.disconnecting for t in (first, second, third)], [False, False, True])

    def test_counts_return_to_zero_when_clients_are_gone(self) -> None:
        factory = CapsStreamFactory(Clock(), limits=ConnectionLimits(max_per_peer=2))
        connections = [connect_from(factory, host) for host in ("a", "a", "a", "b")]
        for protocol, _ in connections:
            protocol.connectionLost(Failure(ConnectionDone()))
        self.assertEqual((factory.limits.open, factory.limits.per_peer), (0, {}))
        self.assertEqual(factory.connections, set())


class IdleTimeoutTests(SynchronousTestCase):
    def test_silent_client_is_closed_after_the_timeout(self) -> None:
        """
        A client silent since its last input is closed one timeout after it
        at the earliest, and a fifth of a timeout later at the latest (input
        is seen at the sweep's next look, and the close at the look after
        the deadline).
        """
        clock = Clock()
        factory = CapsStreamFactory(clock, idle_timeout=10)
        protocol, transport = connect_from(factory, "10.0.0.1")
        clock.advance(9)
        protocol.dataReceived(b"still here")
        self.assertEqual(closed_at(clock, transport), 9 + 10 + 1)
        self.assertEqual(factory.idle_timeouts, 1)

    def test_steady_input_keeps_one_timer_and_moves_the_deadline(self) -> None:
        clock = Clock()
        factory = CapsStreamFactory(clock, idle_timeout=10)
        protocol, transport = connect_from(factory, "10.0.0.1")
        for _ in range(25):
            clock.advance(4)
            protocol.dataReceived(b"x")
            self.assertEqual(len(clock.getDelayedCalls()), 1)
        last_input = clock.seconds()
        closed = closed_at(clock, transport)
        self.assertGreaterEqual(closed, last_input + 10)
        self.assertLessEqual(closed, last_input + 12)

    def test_client_that_never_reads_is_aborted_after_the_grace_period(self) -> None:
        clock = Clock()
        factory = CapsStreamFactory(clock, idle_timeout=10, shutdown_timeout=2)
        _protocol, transport = connect_from(factory, "10.0.0.1")
        clock.advance(10)
        self.assertFalse(transport.disconnected)
        clock.advance(2)
        self.assertTrue(transport.disconnected)

    def test_no_timer_is_left_after_close(self) -> None:
        clock = Clock()
        factory = CapsStreamFactory(clock, idle_timeout=10, shutdown_timeout=2)
        protocol, _ = connect_from(factory, "10.0.0.1")
        clock.advance(10)
        protocol.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(clock.getDelayedCalls(), [])


class IdleSweepTests(SynchronousTestCase):
    """
    The idle timeout is one sweep per factory on the factory's clock, a
    tenth of the timeout apart, not a timer per connection.
    """

    def test_many_connections_share_one_timer(self) -> None:
        """However many connections are open, the clock holds one call."""
        clock = Clock()
        factory = CapsStreamFactory(clock, idle_timeout=10)
        for number in range(100):
            connect_from(factory, f"10.0.{number}.1")
        self.assertEqual(len(clock.getDelayedCalls()), 1)

    def test_no_sweep_without_an_idle_timeout(self) -> None:
        """With --idle-timeout 0 nothing is scheduled at all."""
        clock = Clock()
        connect_from(CapsStreamFactory(clock, idle_timeout=0), "10.0.0.1")
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_connection_between_sweeps_is_closed_within_a_tenth_of_a_timeout(self) -> None:
        """
        A connection opened between two sweeps is closed at the first sweep
        at least one timeout after its last input: never early, and at
        most a tenth of a timeout late.
        """
        clock = Clock()
        factory = CapsStreamFactory(clock, idle_timeout=10)
        connect_from(factory, "10.0.0.1")
        clock.advance(0.5)
        late, late_transport = connect_from(factory, "10.0.0.2")
        while not late_transport.disconnecting:
            clock.advance(0.05)
        self.assertGreaterEqual(clock.seconds(), 0.5 + 10)
        self.assertLess(clock.seconds(), 0.5 + 10 + 1)
        self.assertEqual(late.close_reason, "idle timeout")

    def test_all_due_connections_close_in_one_sweep(self) -> None:
        """Connections that close at once during a sweep do not stop it."""
        clock = Clock()
        factory = CapsStreamFactory(clock, idle_timeout=10, shutdown_timeout=0)
        connections = [connect_from(factory, f"10.0.{n}.1") for n in range(5)]
        for protocol, transport in connections:
            transport.loseConnection = protocol.connectionLost  # type: ignore[method-assign]
        clock.advance(10)
        self.assertEqual((factory.connections, factory.idle_timeouts), (set(), 5))
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_a_listening_factory_keeps_its_sweep_until_the_next_round(self) -> None:
        """
        While the factory listens, the sweep outlives its last connection
        until its next round, so connections opened one after another do
        not start and stop it each time; then it stops.
        """
        clock = Clock()
        factory = CapsStreamFactory(clock, idle_timeout=10)
        factory.doStart()
        for _ in range(3):
            protocol, _ = connect_from(factory, "10.0.0.1")
            protocol.connectionLost(Failure(ConnectionDone()))
            [sweep] = clock.getDelayedCalls()
            self.assertEqual(sweep.getTime(), 1.0)
        clock.advance(1)
        self.assertEqual(clock.getDelayedCalls(), [])
        factory.doStop()

    def test_stopped_factory_stops_its_sweep(self) -> None:
        """When the last listener stops with no connection left, nothing is left scheduled."""
        clock = Clock()
        factory = CapsStreamFactory(clock, idle_timeout=10)
        factory.doStart()
        protocol, _ = connect_from(factory, "10.0.0.1")
        protocol.connectionLost(Failure(ConnectionDone()))
        factory.doStop()
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_close_all_leaves_nothing_scheduled(self) -> None:
        """Once L{CapsStreamFactory.close_all} has closed everything, the sweep is gone."""
        clock = Clock()
        factory = CapsStreamFactory(clock, idle_timeout=10, shutdown_timeout=5)
        factory.doStart()
        protocol, _ = connect_from(factory, "10.0.0.1")
        closed = factory.close_all()
        protocol.connectionLost(Failure(ConnectionDone()))
        self.successResultOf(closed)
        self.assertEqual(clock.getDelayedCalls(), [])
        factory.doStop()

    def test_connection_closing_with_grace_is_left_to_its_abort(self) -> None:
        """A connection the sweep closed is not counted again at later sweeps."""
        clock = Clock()
        factory = CapsStreamFactory(clock, idle_timeout=1, shutdown_timeout=5)
        _, transport = connect_from(factory, "10.0.0.1")
        for _ in range(40):
            clock.advance(0.1)
        self.assertEqual((factory.idle_timeouts, transport.disconnected), (1, False))
        clock.advance(2.5)
        self.assertTrue(transport.disconnected)


class OutputProgressTests(SynchronousTestCase):
    """The idle timer counts replies taken by the kernel as progress."""

    def setUp(self) -> None:
        self.unsent: int | None = 0
        self.patch(stream, "unsent_bytes", lambda transport: self.unsent)
        self.clock = Clock()
        self.factory = CapsStreamFactory(self.clock, idle_timeout=10, shutdown_timeout=2)

    def test_draining_replies_keep_a_silent_client_open(self) -> None:
        protocol, transport = connect_from(self.factory, "10.0.0.1")
        for unsent in (900, 800, 100):  # the client reads, slowly
            self.unsent = unsent
            self.clock.advance(10)
            self.assertFalse(transport.disconnecting)
        self.clock.advance(10)  # it stopped reading: no progress since the last look
        self.assertTrue(transport.disconnecting)
        self.assertEqual(protocol.close_reason, "idle timeout")

    def test_half_closed_client_that_stops_reading_is_aborted(self) -> None:
        protocol, transport = connect_from(self.factory, "10.0.0.1")
        protocol.dataReceived(b"x" * 1000)
        protocol.readConnectionLost()
        self.assertTrue(transport.disconnecting)
        self.unsent = 500
        self.clock.advance(10)  # first look: replies pending count as progress
        self.assertFalse(transport.disconnected)
        self.clock.advance(10)
        self.assertTrue(transport.disconnected)
        self.assertEqual((protocol.close_reason, self.factory.idle_timeouts), ("idle timeout", 1))

    def test_transport_that_cannot_tell_counts_only_input(self) -> None:
        self.unsent = None
        _, transport = connect_from(self.factory, "10.0.0.1")
        self.clock.advance(10)
        self.assertTrue(transport.disconnecting)


class CloseAllTests(SynchronousTestCase):
    def test_close_all_writes_queued_replies_then_fires_when_all_are_gone(self) -> None:
        clock = Clock()
        factory = CapsStreamFactory(clock, shutdown_timeout=5)
        connections = [connect_from(factory, "10.0.0.1") for _ in range(3)]
        for protocol, _ in connections:
            protocol.dataReceived(b"bye")
        closed = factory.close_all()
        self.assertNoResult(closed)
        for protocol, transport in connections:
            self.assertEqual(transport.value(), b"BYE")
            self.assertTrue(transport.disconnecting)
            protocol.connectionLost(Failure(ConnectionDone()))
        self.successResultOf(closed)
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_stuck_connections_are_aborted_after_the_shutdown_timeout(self) -> None:
        clock = Clock()
        factory = CapsStreamFactory(clock, shutdown_timeout=5)
        _, transport = connect_from(factory, "10.0.0.1")
        factory.close_all()
        clock.advance(4.9)
        self.assertFalse(transport.disconnected)
        clock.advance(0.1)
        self.assertTrue(transport.disconnected)

    def test_close_all_with_no_connections_fires_at_once(self) -> None:
        self.successResultOf(CapsStreamFactory(Clock()).close_all())


class HalfCloseableTransport(StringTransport):
    """A transport with a half-close of its own, as TCP's."""

    write_closed = False

    def loseWriteConnection(self) -> None:
        self.write_closed = True


class OwnHalfCloseTests(SynchronousTestCase):
    def test_a_wrapper_does_not_lend_the_inner_half_close(self) -> None:
        # ProtocolWrapper passes unknown names to the transport it wraps; that
        # half-close would end the stream under the wrapper (TLS: a bare FIN).
        inner = HalfCloseableTransport()
        wrapper = ProtocolWrapper(WrappingFactory(Factory()), Protocol())
        wrapper.makeConnection(inner)
        self.assertTrue(callable(wrapper.loseWriteConnection))
        self.assertIsNone(own_half_close(wrapper))
        half_close = own_half_close(inner)
        assert half_close is not None
        half_close()
        self.assertTrue(inner.write_closed)
