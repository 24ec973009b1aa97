"""
Tests for L{twisted_caps.serving.compact_stream} and
L{twisted_caps._twisted.compact}: the course's short connections served
without a Twisted transport, and carried on by the protocol when they need
one; in the test's reactor, and the Python calls a connection costs the
daemon.
"""

import os
import pstats
import re
import socket
from typing import Any

from twisted.internet.threads import deferToThread
from twisted.trial.unittest import SynchronousTestCase, TestCase

from tests.servers import (
    HOST,
    course_tcp_client,
    eventually,
    port_of,
    protocol_of,
    receive,
    start_in_reactor,
    start_process,
    traced_daemon,
    twistd,
    wait_for,
)
from twisted_caps._twisted.lean_server import LeanServer
from twisted_caps.serving.compact_stream import (
    LONGEST_CHUNK,
    SHORT_READ,
    CompactCapsConnection,
)
from twisted_caps.serving.service import CapsService


def connected(case: TestCase, service: CapsService, receive_buffer: int = 0) -> socket.socket:
    """A client connected to the service's TCP port, closed at cleanup."""
    client = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    case.addCleanup(client.close)
    if receive_buffer:
        client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
    client.settimeout(10)
    client.connect((HOST, port_of(service, "TCP")))
    return client


class CompactConnectionTests(TestCase):
    """What a compact connection answers, counts and becomes."""

    async def test_the_course_traffic_is_served_compact(self) -> None:
        """
        A sentence is answered, counted and logged by a compact connection,
        with no protocol or transport built, and forgotten when the client
        closes.
        """
        service = start_in_reactor(self, "--no-udp")
        factory = service.stream_factory
        client = connected(self, service)
        client.sendall(b"hello world")
        self.assertEqual(await deferToThread(receive, client, 11), b"HELLO WORLD")
        [connection] = factory.connections
        self.assertIs(type(connection), CompactCapsConnection)
        self.assertEqual((connection.bytes_in, connection.bytes_out), (11, 11))
        self.assertEqual(factory.byte_totals(), (11, 11))
        client.sendall(b" again")
        self.assertEqual(await deferToThread(receive, client, 6), b" AGAIN")
        client.close()
        await eventually(lambda: not factory.connections)
        self.assertEqual(connection.close_reason, "client closed")
        counts = (factory.accepted, factory.bytes_received, factory.bytes_sent)
        self.assertEqual(counts, (1, 17, 17))
        self.assertEqual(factory.limits.open, 0)

    async def test_a_non_ascii_chunk_carries_on_as_the_protocol(self) -> None:
        """
        A character split across chunks after an ASCII one is capitalized
        whole by the protocol the connection became, with the counts so far.
        """
        service = start_in_reactor(self, "--no-udp")
        factory = service.stream_factory
        client = connected(self, service)
        client.sendall(b"stra")
        self.assertEqual(await deferToThread(receive, client, 4), b"STRA")
        client.sendall("ß".encode()[:1])
        await eventually(lambda: protocol_of(factory))
        client.sendall("ße".encode()[1:])
        self.assertEqual(await deferToThread(receive, client, 3), b"SSE")
        protocol = protocol_of(factory)
        assert protocol is not None
        self.assertIsInstance(protocol.transport, LeanServer)
        self.assertEqual((protocol.bytes_in, protocol.bytes_out), (7, 7))
        client.shutdown(socket.SHUT_WR)
        self.assertEqual(await deferToThread(receive, client, 1), b"")
        await eventually(lambda: not factory.connections)
        self.assertEqual(protocol.close_reason, "client closed")
        self.assertEqual(factory.limits.open, 0)

    async def test_a_reply_the_kernel_does_not_take_whole_is_queued(self) -> None:
        """
        A reply larger than the socket buffers carries on as the protocol,
        which queues the rest with flow control; every byte arrives in order.
        """
        service = start_in_reactor(self, "--no-udp")
        factory = service.stream_factory
        [port] = service.ports
        # Accepted sockets inherit the listener's (smallest) send buffer.
        port.socket.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1)  # type: ignore[attr-defined]
        client = connected(self, service, receive_buffer=1)
        sentence = bytes(range(97, 123)) * 600
        client.sendall(sentence)
        await eventually(lambda: protocol_of(factory))
        protocol = protocol_of(factory)
        assert protocol is not None
        self.assertTrue(protocol._producing)
        self.assertEqual(await deferToThread(receive, client, len(sentence)), sentence.upper())
        self.assertEqual(protocol.bytes_out, len(sentence))

    async def test_a_client_that_streams_carries_on_as_the_protocol(self) -> None:
        """
        A read longer than L{LONGEST_CHUNK} (a client that streams) carries
        on as the protocol, on the lean transport whose reads grow.
        """
        service = start_in_reactor(self, "--no-udp")
        factory = service.stream_factory
        client = connected(self, service)
        # Its first read asks for SHORT_READ bytes, the next for 64 KiB.
        chunk = b"stream " * ((SHORT_READ + LONGEST_CHUNK) // 7 + 1)
        client.sendall(chunk)
        self.assertEqual(await deferToThread(receive, client, len(chunk)), chunk.upper())
        protocol = protocol_of(factory)
        assert protocol is not None
        self.assertIsInstance(protocol.transport, LeanServer)
        self.assertEqual(protocol.bytes_in, len(chunk))

    async def test_reads_at_every_size_around_the_short_read_are_answered_whole(self) -> None:
        """
        Chunks just under, at and over L{SHORT_READ} and the longest a
        compact connection answers, each sent after the answer to the one
        before: a read that fills what it asked for leaves the rest to the
        next read, and every byte is answered, in order, the last ones by
        the protocol the connection carried on as.
        """
        service = start_in_reactor(self, "--no-udp")
        factory = service.stream_factory
        client = connected(self, service)
        sizes = [1, SHORT_READ - 1, SHORT_READ, SHORT_READ + 1, 2 * SHORT_READ, 3]
        # After a short read, SHORT_READ bytes are read first: the longest
        # chunk answered compact is theirs and LONGEST_CHUNK more.
        sizes += [
            LONGEST_CHUNK,
            7,
            SHORT_READ + LONGEST_CHUNK,
            9,
            SHORT_READ + LONGEST_CHUNK + 1,
            5,
        ]
        for number, size in enumerate(sizes):
            chunk = (b"%d-abc " % number * size)[:size]
            client.sendall(chunk)
            self.assertEqual(await deferToThread(receive, client, size), chunk.upper())
        protocol = protocol_of(factory)
        assert protocol is not None
        self.assertEqual(protocol.bytes_in, sum(sizes))

    async def test_a_shutdown_closes_a_compact_connection_gracefully(self) -> None:
        """On stop, a compact connection half-closes and is closed, its slot given back."""
        service = start_in_reactor(self, "--no-udp")
        factory = service.stream_factory
        client = connected(self, service)
        client.sendall(b"bye")
        self.assertEqual(await deferToThread(receive, client, 3), b"BYE")
        await service.stopService()
        self.assertEqual(await deferToThread(receive, client, 1), b"")
        self.assertEqual(factory.connections, set())
        self.assertEqual(factory.limits.open, 0)

    async def test_an_idle_compact_connection_times_out(self) -> None:
        """An idle compact connection is closed at the idle timeout, and logged as such."""
        service = start_in_reactor(self, "--no-udp", "--idle-timeout", "0.3")
        factory = service.stream_factory
        client = connected(self, service)
        client.sendall(b"idle")
        self.assertEqual(await deferToThread(receive, client, 4), b"IDLE")
        [connection] = factory.connections
        self.assertIs(type(connection), CompactCapsConnection)
        self.assertEqual(await deferToThread(receive, client, 1), b"")
        await eventually(lambda: not factory.connections)
        self.assertEqual(factory.idle_timeouts, 1)

    async def test_replies_stuck_in_the_kernel_are_not_progress(self) -> None:
        """
        A client that stops reading is closed one idle timeout after its
        replies stopped leaving the kernel's send queue: the first look
        counts them as progress, the next one, a timeout later, closes.
        """
        service = start_in_reactor(self, "--no-udp")
        factory = service.stream_factory
        client = connected(self, service, receive_buffer=4096)
        client.sendall(b"x" * 16_000)
        await eventually(lambda: factory.byte_totals() == (16_000, 16_000))
        [connection] = factory.connections
        self.assertIs(type(connection), CompactCapsConnection)
        first_look = factory.clock.seconds()
        connection.check_idle(first_look, 1.0)
        self.assertEqual(connection.last_progress_at, first_look)
        self.assertGreater(connection.unsent or 0, 0)
        connection.check_idle(first_look + 0.5, 1.0)
        self.assertEqual(factory.idle_timeouts, 0)
        connection.check_idle(first_look + 1.0, 1.0)
        self.assertEqual(factory.idle_timeouts, 1)
        [protocol] = factory.connections
        self.assertEqual(protocol.close_reason, "idle timeout")

    async def test_once_and_a_wrapped_listener_are_not_compact(self) -> None:
        """C{--once} keeps the protocol, whose close follows its one reply."""
        service = start_in_reactor(self, "--no-udp", "--once")
        client = connected(self, service)
        client.sendall(b"once")
        self.assertEqual(await deferToThread(receive, client, 5), b"ONCE")
        [port] = service.ports
        self.assertIsNone(port.compact)  # type: ignore[attr-defined]


class DaemonPythonCallsTests(TestCase):
    """What a short connection costs C{twistd caps} in Python calls."""

    def profiled_calls(self, connections: int) -> int:
        """The Python calls of a profiled daemon that answered C{connections} lecture clients."""
        stats = os.path.abspath(self.mktemp())
        command = twistd("-i", HOST, "-p", "0", "--no-udp")
        command[1:1] = [f"--profile={stats}", "--profiler=cprofile", "--savestats"]
        daemon = start_process(self, command, expect=("TCP",))
        port: Any = daemon.tcp_port
        course_tcp_client(port, b"settle")
        for _ in range(connections):
            self.assertEqual(course_tcp_client(port, b"hello world"), b"HELLO WORLD")
        daemon.stop()
        total: int = pstats.Stats(stats).total_calls  # type: ignore[attr-defined]
        return total

    def test_a_short_connection_costs_few_python_calls(self) -> None:
        """
        The lecture's client, one connection at a time, costs the daemon
        fewer than 100 Python calls a connection, its reactor turns
        included (about 80; a Twisted transport and protocol cost about
        137): the difference of two runs, 50 and 250 connections, so
        start-up and shutdown cancel out.
        """
        per_connection = (self.profiled_calls(250) - self.profiled_calls(50)) / 200
        self.assertLess(per_connection, 100)
        self.assertGreater(per_connection, 10)


#: A read or receive of a client connection in an C{strace} log: the call,
#: and the bytes it asked for.
SOCKET_READ = re.compile(rb"^\d+ +(read|recvfrom)\(\d+, .*, (\d+)(?:, MSG_DONTWAIT.*)?\) += ")


class SteadyConnectionTests(SynchronousTestCase):
    """What a connection that stays, and one that does not, cost in system calls."""

    def socket_reads(self, trace: str) -> list[tuple[str, int]]:
        """The reads of client connections in the trace so far: call and size asked."""
        with open(trace, "rb") as lines:
            found = (SOCKET_READ.match(line) for line in lines)
            return [(match[1].decode(), int(match[2])) for match in found if match]

    def ioctls(self, trace: str) -> int:
        """How many C{ioctl(FIONBIO)} calls the trace has so far."""
        with open(trace, "rb") as lines:
            return sum(b"FIONBIO" in line for line in lines)

    def test_a_sentence_costs_no_ioctl_and_a_conversation_one(self) -> None:
        """
        The lecture's client (one sentence) is read with C{recv} and
        C{MSG_DONTWAIT} asking for L{SHORT_READ} bytes, and never made
        non-blocking; a client that sends ten messages, each after its
        answer, is made non-blocking once, after its second, and read with
        C{read(2)} from then on, to its end of input.
        """
        daemon, trace = traced_daemon(self, "read,recvfrom,ioctl", "--idle-timeout", "0")
        port: Any = daemon.tcp_port
        self.assertEqual(course_tcp_client(port, b"settle"), b"SETTLE")
        wait_for(lambda: daemon.output.count(b"client closed") == 1)
        reads, ioctls = len(self.socket_reads(trace)), self.ioctls(trace)
        self.assertEqual(course_tcp_client(port, b"hello world"), b"HELLO WORLD")
        wait_for(lambda: daemon.output.count(b"client closed") == 2)
        sentence = self.socket_reads(trace)[reads:]
        self.assertEqual(sentence, [("recvfrom", SHORT_READ)] * 2)
        self.assertEqual(self.ioctls(trace), ioctls)
        client = socket.create_connection((HOST, port), timeout=10)
        with client:
            for number in range(10):
                message = b"message %d" % number
                client.sendall(message)
                self.assertEqual(receive(client, len(message)), message.upper())
        wait_for(lambda: daemon.output.count(b"client closed") == 3)
        conversation = self.socket_reads(trace)[reads + 2 :]
        expected = [("recvfrom", SHORT_READ)] * 2 + [("read", SHORT_READ)] * 9
        self.assertEqual(conversation, expected)
        self.assertEqual(self.ioctls(trace), ioctls + 1)
