"""Tests for L{twisted_caps.stream}, through an in-memory transport."""

from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase

from twisted_caps.stream import CapsStreamFactory, CapsStreamProtocol


def connect(once: bool = False) -> tuple[CapsStreamProtocol, StringTransport]:
    protocol = CapsStreamFactory(once=once).buildProtocol(None)
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

    def test_half_close_flushes_pending_bytes_and_closes(self) -> None:
        protocol, transport = connect()
        protocol.dataReceived(b"ok\xe2\x82")
        protocol.readConnectionLost()
        self.assertEqual(transport.value(), b"OK\xe2\x82")
        self.assertTrue(transport.disconnecting)

    def test_transport_is_the_producer_of_its_own_writes(self) -> None:
        _, transport = connect()
        self.assertIs(transport.producer, transport)
        self.assertTrue(transport.streaming)

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
