"""Tests for L{twisted_caps._twisted.immediate}."""

import errno
import socket

from twisted.internet import abstract, tcp
from twisted.internet.error import ConnectionDone
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.testing import StringTransport
from twisted.protocols.policies import ProtocolWrapper, WrappingFactory
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase, TestCase

from tests.servers import (
    eventually,
    port_of,
    protocol_of,
    read_to_end,
    start_in_reactor,
    traced_calls,
    traced_daemon,
    wait_for,
)
from twisted_caps._twisted.immediate import (
    datagram_sender,
    lose_connection_now,
    send_at_once,
    supports_immediate_send,
    unsent_bytes,
)


class FakeSocket:
    """A socket whose C{send} takes at most C{accepts} bytes, or raises it."""

    def __init__(self, accepts: int | OSError) -> None:
        self.accepts = accepts
        self.sent: list[bytes] = []

    def send(self, data: bytes) -> int:
        self.sent.append(data)
        if isinstance(self.accepts, OSError):
            raise self.accepts
        return min(self.accepts, len(data))


class FakeTCPBuffer:
    """The attributes of C{tcp.Connection} that L{send_at_once} reads."""

    def __init__(self, accepts: int | OSError, queued: bytes = b"") -> None:
        self.dataBuffer = queued
        self.offset = 0
        self._tempDataLen = 0
        self.connected = True
        self.disconnecting = False
        self._writeDisconnecting = False
        self.socket = FakeSocket(accepts)
        self.buffered: list[bytes] = []

        self.calls: list[str] = []

    def write(self, data: bytes) -> None:
        self.buffered.append(data)

    def stopReading(self) -> None:
        self.calls.append("stopReading")

    def stopWriting(self) -> None:
        self.calls.append("stopWriting")

    def loseConnection(self) -> None:
        self.calls.append("loseConnection")

    def connectionLost(self, reason: Failure) -> None:
        reason.trap(ConnectionDone)
        self.calls.append("connectionLost")


def send_now(transport: FakeTCPBuffer, data: bytes) -> None:
    """Send what the kernel takes at once, and write the rest, as the protocol does."""
    rest = send_at_once(transport, data)
    if rest:
        transport.write(rest)


class SendAtOnceTests(SynchronousTestCase):
    def test_empty_buffer_sends_at_once(self) -> None:
        transport = FakeTCPBuffer(accepts=100)
        send_now(transport, b"HELLO")
        self.assertEqual((transport.socket.sent, transport.buffered), ([b"HELLO"], []))

    def test_what_the_kernel_does_not_take_is_buffered_in_order(self) -> None:
        transport = FakeTCPBuffer(accepts=2)
        send_now(transport, b"HELLO")
        self.assertEqual((transport.socket.sent, transport.buffered), ([b"HELLO"], [b"LLO"]))

    def test_queued_bytes_go_first(self) -> None:
        transport = FakeTCPBuffer(accepts=100, queued=b"EARLIER")
        send_now(transport, b"LATER")
        self.assertEqual((transport.socket.sent, transport.buffered), ([], [b"LATER"]))

    def test_a_full_socket_buffer_leaves_the_bytes_to_twisted(self) -> None:
        transport = FakeTCPBuffer(accepts=BlockingIOError(errno.EAGAIN, "full"))
        send_now(transport, b"HELLO")
        self.assertEqual(transport.buffered, [b"HELLO"])

    def test_a_send_error_leaves_the_bytes_to_twisted(self) -> None:
        transport = FakeTCPBuffer(accepts=BrokenPipeError(errno.EPIPE, "gone"))
        send_now(transport, b"HELLO")
        self.assertEqual(transport.buffered, [b"HELLO"])

    def test_a_closing_transport_is_not_sent_on(self) -> None:
        transport = FakeTCPBuffer(accepts=100)
        transport.disconnecting = True
        send_now(transport, b"HELLO")
        self.assertEqual((transport.socket.sent, transport.buffered), ([], [b"HELLO"]))


class LoseConnectionNowTests(SynchronousTestCase):
    def test_nothing_queued_closes_at_once(self) -> None:
        transport = FakeTCPBuffer(accepts=100)
        lose_connection_now(transport)
        self.assertEqual(transport.calls, ["connectionLost"])

    def test_queued_bytes_are_written_first_by_twisted(self) -> None:
        transport = FakeTCPBuffer(accepts=100, queued=b"NOT YET SENT")
        lose_connection_now(transport)
        self.assertEqual(transport.calls, ["loseConnection"])

    def test_a_closing_transport_is_left_to_twisted(self) -> None:
        transport = FakeTCPBuffer(accepts=100)
        transport.disconnecting = True
        lose_connection_now(transport)
        self.assertEqual(transport.calls, ["loseConnection"])


class SupportTests(TestCase):
    def test_string_transport_keeps_the_plain_write(self) -> None:
        self.assertFalse(supports_immediate_send(StringTransport()))

    def test_a_tcp_server_without_the_parts_it_reads_keeps_the_plain_write(self) -> None:
        self.assertFalse(supports_immediate_send(tcp.Server.__new__(tcp.Server)))

    async def test_a_served_tcp_connection_sends_at_once(self) -> None:
        """A connection carried on as the protocol (at a non-ASCII byte) sends at once."""
        service = start_in_reactor(self, "--no-udp")
        client = socket.create_connection(("127.0.0.1", port_of(service, "TCP")))
        self.addCleanup(client.close)
        client.sendall("é".encode())
        await eventually(lambda: protocol_of(service.stream_factory))
        protocol = protocol_of(service.stream_factory)
        assert protocol is not None
        self.assertTrue(supports_immediate_send(protocol.transport))


class DatagramSenderTests(TestCase):
    def test_only_a_real_udp_port_gets_the_socket_sendto(self) -> None:
        self.assertIsNone(datagram_sender(object()))
        service = start_in_reactor(self, "--no-tcp")
        [protocol] = service.datagram_protocols
        sender = datagram_sender(protocol.transport)
        self.assertIsNotNone(sender)
        receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.addCleanup(receiver.close)
        receiver.bind(("127.0.0.1", 0))
        assert sender is not None
        sender(b"DIRECT", receiver.getsockname())
        self.assertEqual(receiver.recvfrom(64)[0], b"DIRECT")


class SocketDescriptor(abstract.FileDescriptor):
    """A file descriptor transport over a real socket, with Twisted's write buffer."""

    def __init__(self, sock: socket.socket) -> None:
        super().__init__()
        self.sock = sock

    def fileno(self) -> int:
        return self.sock.fileno()


class UnsentBytesTests(SynchronousTestCase):
    def test_counts_the_transport_buffer_and_the_kernel_queue_under_wrappers(self) -> None:
        mine, peer = socket.socketpair()
        self.addCleanup(mine.close)
        self.addCleanup(peer.close)
        descriptor = SocketDescriptor(mine)
        descriptor.dataBuffer, descriptor.offset = b"queued", 2
        mine.sendall(b"x" * 1000)  # in the kernel, not read by the peer yet
        wrapper = ProtocolWrapper(WrappingFactory(Factory()), Protocol())
        wrapper.transport = descriptor
        # A UNIX socket's queue is counted in the memory it takes, not bytes.
        self.assertGreaterEqual(unsent_bytes(wrapper) or 0, 4 + 1000)
        self.assertEqual(len(peer.recv(4096)), 1000)
        self.assertEqual(unsent_bytes(descriptor), 4)

    def test_a_transport_without_a_descriptor_cannot_tell(self) -> None:
        self.assertIsNone(unsent_bytes(StringTransport()))


class DaemonHalfCloseTests(TestCase):
    """What a connection the client half-closes costs C{twistd caps}."""

    def test_half_closed_connection_closes_without_waiting_to_write(self) -> None:
        """
        A client that sends, half-closes and reads gets its reply and an orderly
        end of stream; with the reply already sent, the server closes at once:
        at most two C{epoll_ctl} calls per connection (watch it, forget it),
        not two more to wait for writability with nothing left to write.
        """
        daemon, trace = traced_daemon(self, "epoll_ctl")
        assert daemon.tcp_port
        port = daemon.tcp_port

        def exchange() -> None:
            with socket.create_connection(("127.0.0.1", port), timeout=10) as client:
                client.sendall(b"hello")
                client.shutdown(socket.SHUT_WR)
                self.assertEqual(read_to_end(client), b"HELLO")

        # A first connection, closed and logged, so that every start-up call
        # is in the trace before counting starts.
        exchange()
        wait_for(lambda: daemon.output.count(b"5 bytes out: client closed") == 1)
        before = traced_calls(trace)["epoll_ctl"]
        count = 20
        for _ in range(count):
            exchange()
        wait_for(lambda: daemon.output.count(b"5 bytes out: client closed") == count + 1)
        self.assertLessEqual(traced_calls(trace)["epoll_ctl"] - before, 2 * count)
