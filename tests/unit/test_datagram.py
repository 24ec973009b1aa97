"""Tests for L{twisted_caps.serving.datagram}, through an in-memory transport."""

from typing import Any

from twisted.internet.address import IPv4Address
from twisted.internet.error import MessageLengthError
from twisted.internet.task import Clock
from twisted.logger import capturedLogs
from twisted.trial.unittest import SynchronousTestCase

from twisted_caps.core.limits import DatagramRateLimit
from twisted_caps.core.loop_guard import LOOP_STREAK
from twisted_caps.serving.datagram import (
    ANSWERING_SERVICE,
    MAX_UDP_PAYLOAD,
    CapsDatagramProtocol,
)

OWN_PORT = 1200
CLIENT = ("127.0.0.1", 40000)


class FakeDatagramTransport:
    """Records datagrams written; can be told to fail like the kernel does."""

    def __init__(self, failure: Exception | None = None) -> None:
        self.written: list[tuple[bytes, Any]] = []
        self.failure = failure

    def getHost(self) -> IPv4Address:
        return IPv4Address("UDP", "0.0.0.0", OWN_PORT)

    def write(self, datagram: bytes, addr: Any) -> None:
        if self.failure is not None:
            raise self.failure
        self.written.append((datagram, addr))


def connect(failure: Exception | None = None) -> tuple[CapsDatagramProtocol, FakeDatagramTransport]:
    protocol = CapsDatagramProtocol(Clock())
    transport = FakeDatagramTransport(failure)
    protocol.makeConnection(transport)  # type: ignore[arg-type]
    return protocol, transport


class CapsDatagramProtocolTests(SynchronousTestCase):
    def test_each_datagram_gets_its_capitalization(self) -> None:
        protocol, transport = connect()
        protocol.datagramReceived("straße".encode(), CLIENT)
        protocol.datagramReceived(b"two", CLIENT)
        self.assertEqual(transport.written, [(b"STRASSE", CLIENT), (b"TWO", CLIENT)])
        self.assertEqual(protocol.counters.answered, 2)

    def test_empty_datagram_gets_empty_reply(self) -> None:
        protocol, transport = connect()
        protocol.datagramReceived(b"", CLIENT)
        self.assertEqual(transport.written, [(b"", CLIENT)])

    def test_datagrams_are_capitalized_alone(self) -> None:
        protocol, transport = connect()
        protocol.datagramReceived(b"a\xc3", CLIENT)
        protocol.datagramReceived(b"\xa9", CLIENT)
        self.assertEqual([w[0] for w in transport.written], [b"A\xc3", b"\xa9"])

    def test_no_reply_to_a_privileged_source_port(self) -> None:
        protocol, transport = connect()
        with capturedLogs() as events:
            protocol.datagramReceived(b"echo", ("127.0.0.1", 7))
        self.assertEqual(transport.written, [])
        self.assertEqual(protocol.counters.refused_loop, 1)
        self.assertIn("127.0.0.1:7", events[0]["peer"])

    def test_no_reply_to_our_own_port(self) -> None:
        protocol, transport = connect()
        protocol.datagramReceived(b"loop", ("192.0.2.1", OWN_PORT))
        self.assertEqual(transport.written, [])
        self.assertEqual(protocol.counters.refused_loop, 1)

    def test_no_reply_to_a_source_sending_its_reply_back(self) -> None:
        """
        A source that keeps sending the same upper-case text, as another
        service answering would, is answered ten times, then refused and
        counted as a loop, with one log line; lower-case text from it is
        answered again.
        """
        protocol, transport = connect()
        with capturedLogs() as events:
            for _ in range(LOOP_STREAK + 5):
                protocol.datagramReceived(b"HELLO", CLIENT)
        self.assertEqual(len(transport.written), LOOP_STREAK)
        self.assertEqual(protocol.counters.refused_loop, 5)
        self.assertEqual([e["reason"] for e in events], [ANSWERING_SERVICE])
        protocol.datagramReceived(b"hello", CLIENT)
        protocol.datagramReceived(b"HELLO", CLIENT)
        self.assertEqual(transport.written[-2:], [(b"HELLO", CLIENT)] * 2)

    def test_source_port_1024_is_answered(self) -> None:
        protocol, transport = connect()
        protocol.datagramReceived(b"x", ("127.0.0.1", 1024))
        self.assertEqual(transport.written, [(b"X", ("127.0.0.1", 1024))])

    def test_oversized_reply_is_dropped_and_counted(self) -> None:
        protocol, transport = connect()
        # U+0390 is 2 bytes and upper-cases to 3 characters of 6 bytes.
        datagram = "ΐ".encode() * (MAX_UDP_PAYLOAD // 4)
        with capturedLogs() as events:
            protocol.datagramReceived(datagram, CLIENT)
            protocol.datagramReceived(b"next", CLIENT)
        self.assertEqual(protocol.counters.dropped_oversize, 1)
        self.assertEqual(transport.written, [(b"NEXT", CLIENT)])
        self.assertIn("exceeds", events[0]["reason"])

    def test_reply_of_exactly_the_maximum_is_sent(self) -> None:
        protocol, transport = connect()
        protocol.datagramReceived(b"a" * MAX_UDP_PAYLOAD, CLIENT)
        self.assertEqual(len(transport.written[0][0]), MAX_UDP_PAYLOAD)

    def test_send_failure_is_counted_and_the_service_goes_on(self) -> None:
        for failure in (OSError(105, "No buffer space available"), MessageLengthError()):
            protocol, _ = connect(failure)
            protocol.datagramReceived(b"x", CLIENT)
            self.assertEqual(protocol.counters.dropped_send_error, 1)
            self.assertEqual(protocol.counters.answered, 0)


class RateLimitTests(SynchronousTestCase):
    def test_source_over_its_rate_gets_no_reply(self) -> None:
        clock = Clock()
        protocol = CapsDatagramProtocol(clock, DatagramRateLimit(rate=2, clock=clock))
        transport = FakeDatagramTransport()
        protocol.makeConnection(transport)  # type: ignore[arg-type]
        for _ in range(3):
            protocol.datagramReceived(b"x", CLIENT)
        protocol.datagramReceived(b"other", ("127.0.0.2", 40000))
        self.assertEqual(len(transport.written), 3)
        self.assertEqual(protocol.counters.dropped_rate_limit, 1)
        clock.advance(0.5)
        protocol.datagramReceived(b"x", CLIENT)
        self.assertEqual(len(transport.written), 4)
