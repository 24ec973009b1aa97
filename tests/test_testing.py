"""Tests for L{twisted_caps.testing}: the servers users test their code against."""

import socket
from collections.abc import Callable
from typing import Any

from twisted.internet import error, reactor, tcp
from twisted.internet.interfaces import IAddress, IConnector
from twisted.internet.protocol import ClientFactory, DatagramProtocol, Protocol
from twisted.internet.threads import deferToThread
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase, TestCase

from tests.servers import course_tcp_client, course_udp_client
from twisted_caps._twisted.compact import CompactConnection
from twisted_caps.client import capitalize_over_tcp, capitalize_over_udp
from twisted_caps.testing import (
    MemoryCapsServer,
    NetworkConditions,
    caps_argv,
    caps_config,
    start_caps_process,
    start_caps_server,
)


class Recorder(Protocol):
    """A client that writes nothing by itself and records what happens."""

    def __init__(self) -> None:
        self.pieces: list[bytes] = []
        self.lost: list[Failure] = []

    def dataReceived(self, data: bytes) -> None:
        self.pieces.append(data)

    def connectionLost(self, reason: Failure = error.ConnectionDone) -> None:  # type: ignore[assignment]
        self.lost.append(reason)


class KeptDatagrams(DatagramProtocol):
    """Keep every datagram received."""

    def __init__(self) -> None:
        self.received: list[bytes] = []

    def datagramReceived(self, datagram: bytes, addr: Any) -> None:
        self.received.append(datagram)


class RecordingClientFactory(ClientFactory):
    """Builds one L{Recorder} and records how its connection ended."""

    def __init__(self) -> None:
        self.protocol_made = Recorder()
        self.lost: list[Failure] = []

    def buildProtocol(self, addr: IAddress | None) -> Recorder:
        return self.protocol_made

    def clientConnectionLost(self, connector: IConnector, reason: Failure) -> None:
        self.lost.append(reason)


class OptionsTests(SynchronousTestCase):
    def test_keywords_become_daemon_options_after_the_loopback_defaults(self) -> None:
        self.assertEqual(
            caps_argv("--no-udp", once=True, no_tcp=False, max_connections=5, tcp=["tcp:0"]),
            [
                "-i",
                "127.0.0.1",
                "-p",
                "0",
                "--no-udp",
                "--once",
                "--max-connections=5",
                "--tcp=tcp:0",
            ],
        )

    def test_config_is_the_daemons(self) -> None:
        config = caps_config(once=True, no_udp=True)
        self.assertTrue(config.once)
        self.assertEqual(config.udp, ())
        [tcp] = config.tcp
        self.assertTrue(tcp.description.startswith("tcp:0:interface=127.0.0.1"), tcp)

    def test_refused_options_raise_the_daemons_line(self) -> None:
        with self.assertRaises(ValueError) as raised:
            caps_config(port="x")
        self.assertIn("--port: 'x' is not a port number", str(raised.exception))


class MemoryServerTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.server = MemoryCapsServer.start()
        self.addCleanup(self.server.stop)

    def test_client_library_over_tcp_with_no_sockets(self) -> None:
        reply = capitalize_over_tcp(self.server.reactor, "127.0.0.1", self.server.tcp_port, b"hi")
        self.assertNoResult(reply)
        self.server.flush()
        self.assertEqual(self.successResultOf(reply), b"HI")
        self.assertEqual(self.server.reactor.seconds(), 0)

    def test_client_library_over_udp_with_no_sockets(self) -> None:
        reply = capitalize_over_udp(self.server.reactor, "127.0.0.1", self.server.udp_port, b"x")
        self.server.flush()
        self.assertEqual(self.successResultOf(reply), b"X")

    def test_memory_ports_read_datagrams_as_twisted_ports_do(self) -> None:
        """
        A port opened with Twisted's default maxPacketSize gets the first
        8,192 bytes of a longer datagram, as on a real socket: a service
        that forgets to ask for more fails in memory too.
        """
        receiver = KeptDatagrams()
        port = self.server.reactor.listenUDP(0, receiver)
        self.server.reactor.send_datagram(
            ("127.0.0.1", 1), ("127.0.0.1", port.address.port), b"z" * 9000
        )
        self.server.flush()
        self.assertEqual(receiver.received, [b"z" * 8192])

    def test_largest_datagram_is_answered_whole_in_memory(self) -> None:
        """The memory network reads datagrams as real ports do, and caps reads them whole."""
        datagram = b"y" * 65507
        reply = capitalize_over_udp(
            self.server.reactor, "127.0.0.1", self.server.udp_port, datagram
        )
        self.server.flush()
        self.assertEqual(self.successResultOf(reply), datagram.upper())

    def test_connected_protocol_gets_each_reply(self) -> None:
        client = Recorder()
        self.server.connect(client)
        client.transport.write("straße".encode())  # type: ignore[union-attr]
        self.server.flush()
        self.assertEqual(client.pieces, [b"STRASSE"])
        self.assertEqual(client.lost, [])

    def test_replies_split_into_chunks(self) -> None:
        self.server.conditions = NetworkConditions(chunk_size=4)
        client = Recorder()
        self.server.connect(client)
        client.transport.write(b"hello world")  # type: ignore[union-attr]
        self.server.flush()
        self.assertEqual(client.pieces, [b"HELL", b"O WO", b"RLD"])

    def test_delayed_reply_arrives_after_the_delay_only(self) -> None:
        self.server.conditions = NetworkConditions(delay=2.0)
        reply = capitalize_over_tcp(self.server.reactor, "127.0.0.1", self.server.tcp_port, b"a")
        self.server.advance(1.9)
        self.assertNoResult(reply)
        self.server.advance(0.1)
        self.assertEqual(self.successResultOf(reply), b"A")

    def test_delay_longer_than_the_clients_timeout_times_out(self) -> None:
        self.server.conditions = NetworkConditions(delay=10)
        reply = capitalize_over_tcp(
            self.server.reactor, "127.0.0.1", self.server.tcp_port, b"a", timeout=5
        )
        self.server.advance(5)
        self.failureResultOf(reply, error.TimeoutError)

    def test_dropped_datagram_is_recovered_by_a_resend(self) -> None:
        self.server.conditions = NetworkConditions(drop_datagrams=(0,))
        reply = capitalize_over_udp(
            self.server.reactor, "127.0.0.1", self.server.udp_port, b"u", timeout=3, retries=2
        )
        self.server.flush()
        self.assertNoResult(reply)
        self.server.advance(1)
        self.assertEqual(self.successResultOf(reply), b"U")

    def test_dropped_replies_leave_the_client_to_time_out(self) -> None:
        self.server.conditions = NetworkConditions(drop_replies=(0, 1, 2))
        reply = capitalize_over_udp(
            self.server.reactor, "127.0.0.1", self.server.udp_port, b"u", timeout=3, retries=2
        )
        self.server.advance(3)
        self.failureResultOf(reply, error.TimeoutError)
        self.assertEqual(self.server.service.datagram_protocols[0].counters.answered, 3)

    def test_close_after_n_bytes_cuts_the_reply(self) -> None:
        self.server.conditions = NetworkConditions(close_after=5)
        reply = capitalize_over_tcp(
            self.server.reactor, "127.0.0.1", self.server.tcp_port, b"hello world"
        )
        self.server.flush()
        self.assertEqual(self.successResultOf(reply), b"HELLO")

    def test_client_factory_hears_the_connection_end(self) -> None:
        self.server.conditions = NetworkConditions(close_after=2)
        factory = RecordingClientFactory()
        self.server.reactor.connectTCP(self.server.host, self.server.tcp_port, factory)
        self.server.flush()
        factory.protocol_made.transport.write(b"abc")  # type: ignore[union-attr]
        self.server.flush()
        self.assertEqual(factory.protocol_made.pieces, [b"AB"])
        [reason] = factory.lost
        reason.trap(error.ConnectionDone)

    def test_nothing_listening_is_refused(self) -> None:
        reply = capitalize_over_tcp(self.server.reactor, "127.0.0.1", 1, b"a")
        # HostnameEndpoint reports the refusal at its next attempt, 0.3s on.
        self.server.advance(0.3)
        self.failureResultOf(reply, error.ConnectionRefusedError)

    def test_stop_closes_connections_and_ports(self) -> None:
        client = Recorder()
        self.server.connect(client)
        self.server.stop()
        self.assertEqual(len(client.lost), 1)
        reply = capitalize_over_udp(self.server.reactor, "127.0.0.1", self.server.udp_port, b"x")
        self.server.advance(5)
        self.failureResultOf(reply, error.TimeoutError)

    def test_idle_client_is_closed_after_the_idle_timeout(self) -> None:
        server = MemoryCapsServer.start(idle_timeout=10, shutdown_timeout=0)
        client = Recorder()
        server.connect(client)
        server.advance(9.9)
        self.assertEqual(client.lost, [])
        server.advance(0.1)
        self.assertEqual(len(client.lost), 1)

    def test_connection_limit_refuses_the_next_client(self) -> None:
        server = MemoryCapsServer.start(max_connections=1)
        first, second = Recorder(), Recorder()
        server.connect(first)
        server.connect(second)
        server.flush()
        self.assertEqual((len(first.lost), len(second.lost)), (0, 1))

    def test_daemon_options_apply(self) -> None:
        server = MemoryCapsServer.start(once=True, no_udp=True)
        self.assertIsNone(server.udp)
        client = Recorder()
        server.connect(client)
        client.transport.write(b"first")  # type: ignore[union-attr]
        server.flush()
        self.assertEqual(client.pieces, [b"FIRST"])
        self.assertEqual(len(client.lost), 1)
        client.lost[0].trap(error.ConnectionDone)


class LoopbackServerTests(TestCase):
    async def test_client_library_over_loopback(self) -> None:
        server = start_caps_server(self)
        self.assertEqual(server.host, "127.0.0.1")
        tcp = await capitalize_over_tcp(reactor, server.host, server.tcp_port, b"tcp")
        udp = await capitalize_over_udp(reactor, server.host, server.udp_port, b"udp")
        self.assertEqual((tcp, udp), (b"TCP", b"UDP"))

    async def test_blocking_client_in_a_thread(self) -> None:
        server = start_caps_server(self)
        reply = await deferToThread(course_tcp_client, server.tcp_port, b"thread")
        self.assertEqual(reply, b"THREAD")
        reply = await deferToThread(course_udp_client, server.udp_port, b"udp")
        self.assertEqual(reply, b"UDP")

    async def test_once_closes_after_the_first_reply(self) -> None:
        server = start_caps_server(self, once=True)

        def ask() -> tuple[bytes, bytes]:
            with socket.create_connection((server.host, server.tcp_port), timeout=10) as client:
                client.sendall(b"once")
                first = client.recv(1024)
                return first, client.recv(1024)

        self.assertEqual(await deferToThread(ask), (b"ONCE", b""))

    async def test_cleanup_closes_connections_clients_left_open(self) -> None:
        cleanups = CleanupRecorder()
        server = start_caps_server(cleanups, shutdown_timeout=0)
        client = socket.create_connection((server.host, server.tcp_port), timeout=10)
        self.addCleanup(client.close)
        client.sendall(b"left open")
        self.assertEqual(await deferToThread(client.recv, 1024), b"LEFT OPEN")
        self.assertEqual(len(server_connections(server.tcp_port)), 1)
        for cleanup in reversed(cleanups.calls):
            await cleanup()
        # Trial would report a connection still in the reactor as dirty.
        self.assertEqual(server_connections(server.tcp_port), [])

    def test_refused_options_raise(self) -> None:
        self.assertRaises(ValueError, start_caps_server, self, "--no-tcp", "--no-udp")


class CleanupRecorder:
    """Stands in for a TestCase, to run its cleanups when the test says."""

    def __init__(self) -> None:
        self.calls: list[Callable[[], Any]] = []

    def addCleanup(self, function: Callable[[], Any]) -> None:
        self.calls.append(function)


def server_connections(port: int) -> list[object]:
    """The reactor's accepted TCP connections on C{port}: transports and compact ones."""
    selectables = [*reactor.getReaders(), *reactor.getWriters()]
    return [
        s
        for s in selectables
        if (isinstance(s, tcp.Server) and s.getHost().port == port)
        or (isinstance(s, CompactConnection) and s.port.getHost().port == port)
    ]


class ProcessServerTests(SynchronousTestCase):
    def test_serves_blocking_clients(self) -> None:
        server = start_caps_process()
        self.addCleanup(server.stop)
        self.assertEqual(server.host, "127.0.0.1")
        self.assertEqual(course_tcp_client(server.tcp_port, b"hello world"), b"HELLO WORLD")
        self.assertEqual(course_udp_client(server.udp_port, b"hello world"), b"HELLO WORLD")

    def test_daemon_options_apply(self) -> None:
        server = start_caps_process("--no-udp", once=True)
        self.addCleanup(server.stop)
        self.assertRaises(LookupError, lambda: server.udp_port)
        with socket.create_connection((server.host, server.tcp_port), timeout=10) as client:
            client.sendall(b"once")
            self.assertEqual(client.recv(1024), b"ONCE")
            self.assertEqual(client.recv(1024), b"")

    def test_refused_options_raise_with_the_childs_message(self) -> None:
        with self.assertRaises(RuntimeError) as raised:
            start_caps_process(port="x")
        self.assertIn("--port: 'x' is not a port number", str(raised.exception))

    def test_stop_ends_the_process_and_frees_the_port(self) -> None:
        server = start_caps_process()
        server.stop()
        self.assertIsNotNone(server.process.poll())
        with self.assertRaises(ConnectionRefusedError):
            course_tcp_client(server.tcp_port, b"gone")

    def test_child_stops_when_its_input_closes(self) -> None:
        server = start_caps_process()
        self.addCleanup(server.stop)
        assert server.process.stdin is not None
        server.process.stdin.close()
        self.assertEqual(server.process.wait(30), 0)
