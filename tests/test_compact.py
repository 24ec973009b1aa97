"""
Tests for L{twisted_caps._twisted.compact}: which ports accept compact
connections, how the reactor reads them, and how one is handed over to a
lean transport; over loopback in the test's reactor.
"""

import socket
from typing import Any, cast

from twisted.internet import reactor, tcp
from twisted.internet.error import CannotListenError
from twisted.internet.interfaces import IReactorFDSet, IReactorTCP
from twisted.internet.protocol import Protocol
from twisted.internet.selectreactor import SelectReactor
from twisted.internet.threads import deferToThread
from twisted.trial.unittest import SkipTest, TestCase

from tests.servers import HOST, KeptProtocols, eventually, receive
from twisted_caps._twisted.compact import CompactConnection, compact_supported
from twisted_caps._twisted.eager_read import use_eager_reads
from twisted_caps._twisted.lean_server import LeanServer


class Upper(Protocol):
    """Answer each chunk upper-cased."""

    def dataReceived(self, data: bytes) -> None:
        self.transport.write(data.upper())  # type: ignore[union-attr]


class Echoing(CompactConnection):
    """
    A compact connection that echoes each chunk, and hands itself over to
    an L{Upper} protocol at a chunk starting with C{!}.
    """

    made: "list[Echoing]" = []
    handed: list[LeanServer] = []

    def __init__(self, sock: Any, fd: int, address: tuple[str, int], port: Any) -> None:
        super().__init__(sock, fd, address, port)
        self.made.append(self)

    def doRead(self) -> None:
        try:
            data = self.socket.recv(1024, socket.MSG_DONTWAIT)
        except BlockingIOError:
            return
        if not data:
            self.close_now()
        elif data.startswith(b"!"):
            protocol = Upper()
            transport = self.hand_over(protocol)
            protocol.makeConnection(transport)
            self.handed.append(transport)
            protocol.dataReceived(data)
        else:
            self.socket.send(data, socket.MSG_DONTWAIT)

    def connectionLost(self, reason: object) -> None:
        self.close_now()


class CompactConnectionTests(TestCase):
    def listen(self, interface: str = HOST) -> int:
        """An eager port accepting L{Echoing} connections; its number."""
        Echoing.made, Echoing.handed = [], []
        factory = KeptProtocols(Upper)
        port = cast(IReactorTCP, reactor).listenTCP(0, factory, interface=interface)
        self.addCleanup(port.stopListening)
        self.assertTrue(use_eager_reads(port, Echoing))
        return cast(Any, port).getHost().port  # type: ignore[no-any-return]

    def client(self, number: int) -> socket.socket:
        """A client connected to port C{number}, closed at cleanup."""
        client = socket.create_connection((HOST, number), timeout=10)
        self.addCleanup(client.close)
        return client

    async def test_the_reactor_reads_a_compact_connection_until_it_closes(self) -> None:
        """
        A compact connection answers its first bytes, is read by the
        reactor for the rest, and leaves the reactor's tables at its close.
        """
        client = self.client(self.listen())
        client.sendall(b"first")
        self.assertEqual(await deferToThread(receive, client, 5), b"first")
        [connection] = Echoing.made
        readers = cast(IReactorFDSet, reactor).getReaders()
        self.assertIn(connection, readers)
        client.sendall(b"second")
        self.assertEqual(await deferToThread(receive, client, 6), b"second")
        client.close()
        await eventually(lambda: connection.fd == -1)
        self.assertNotIn(connection, cast(IReactorFDSet, reactor).getReaders())

    async def test_a_handed_over_connection_is_the_transports(self) -> None:
        """
        After L{CompactConnection.hand_over}, the reactor reads the lean
        transport on the same descriptor, and the protocol answers.
        """
        client = self.client(self.listen())
        client.sendall(b"echo")
        self.assertEqual(await deferToThread(receive, client, 4), b"echo")
        [connection] = Echoing.made
        fd = connection.fd
        client.sendall(b"!upper")
        self.assertEqual(await deferToThread(receive, client, 6), b"!UPPER")
        [transport] = Echoing.handed
        self.assertEqual(transport.fileno(), fd)
        self.assertEqual(connection.fd, -1)
        readers = cast(IReactorFDSet, reactor).getReaders()
        self.assertIn(transport, readers)
        self.assertNotIn(connection, readers)
        client.sendall(b"more")
        self.assertEqual(await deferToThread(receive, client, 4), b"MORE")

    async def test_a_first_chunk_handed_over_is_registered_by_the_transport(self) -> None:
        """A connection handed over in its first read is registered once, by its transport."""
        client = self.client(self.listen())
        client.sendall(b"!now")
        self.assertEqual(await deferToThread(receive, client, 4), b"!NOW")
        [transport] = Echoing.handed
        await eventually(lambda: transport in cast(IReactorFDSet, reactor).getReaders())
        client.sendall(b"then")
        self.assertEqual(await deferToThread(receive, client, 4), b"THEN")

    def test_other_reactors_and_ipv6_ports_get_twisteds_transports(self) -> None:
        """The fallback: only an IPv4 port on Twisted's epoll reactor is compact."""
        port = tcp.Port(0, KeptProtocols(Upper), interface=HOST, reactor=SelectReactor())
        self.assertFalse(compact_supported(port))
        try:
            factory = KeptProtocols(Upper)
            six = cast(IReactorTCP, reactor).listenTCP(0, factory, interface="::1")
        except CannotListenError:
            raise SkipTest("no IPv6 loopback here") from None
        self.addCleanup(six.stopListening)
        self.assertFalse(compact_supported(six))
        use_eager_reads(six, Echoing)
        self.assertIsNone(cast(Any, six).compact)
