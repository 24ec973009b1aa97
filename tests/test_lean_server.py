"""Tests for L{twisted_caps._twisted.lean_server}, over loopback in the test's reactor."""

import os
import shutil
import socket
import tempfile
from typing import Any, cast

from twisted.internet import reactor, tcp
from twisted.internet.error import ConnectionDone
from twisted.internet.interfaces import IReactorTCP, IReactorUNIX
from twisted.internet.protocol import Protocol
from twisted.internet.threads import deferToThread
from twisted.python.failure import Failure
from twisted.trial.unittest import TestCase

from tests.servers import KeptProtocols, eventually, port_of, protocol_of, start_in_reactor
from twisted_caps._twisted.lean_server import (
    MAX_READ_SIZE,
    READ_SIZE,
    LeanServer,
    use_lean_server,
)


class ChunkSizes(Protocol):
    """Record the size of every chunk read, and answer nothing."""

    def __init__(self) -> None:
        self.sizes: list[int] = []

    def dataReceived(self, data: bytes) -> None:
        self.sizes.append(len(data))


class TripleEcho(Protocol):
    """
    Answer every chunk with three times its bytes (the most capitals can
    grow), recording its size and the bytes queued in the transport before.
    """

    def __init__(self) -> None:
        self.reads: list[tuple[int, int]] = []

    def dataReceived(self, data: bytes) -> None:
        transport: Any = self.transport
        queued = len(transport.dataBuffer) - transport.offset + transport._tempDataLen
        self.reads.append((len(data), queued))
        transport.write(data * 3)


class LeanServerTests(TestCase):
    async def connected(
        self, lean: bool, protocol: type[Protocol] = Protocol
    ) -> tuple[Any, socket.socket, int]:
        """
        A connection accepted by a plain listening port, lean or not: the
        server's C{protocol}, the client's socket, the port.
        """
        factory = KeptProtocols(protocol)
        port = cast(IReactorTCP, reactor).listenTCP(0, factory, interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        if lean:
            self.assertTrue(use_lean_server(port))
        number: int = port.getHost().port  # type: ignore[attr-defined]
        client = socket.create_connection(("127.0.0.1", number))
        self.addCleanup(client.close)
        await eventually(lambda: factory.built)
        server = factory.built[0]
        self.addCleanup(cast(Any, server.transport).abortConnection)
        return server, client, number

    async def served(self, lean: bool) -> tuple[Any, int]:
        """A connection accepted by a plain listening port, lean or not: its transport, its port."""
        server, _, number = await self.connected(lean)
        return server.transport, number

    async def test_prefix_and_repr_are_twisteds_made_when_asked(self) -> None:
        """The lean transport logs and prints as Twisted's own, and stores neither string."""
        twisteds, _ = await self.served(lean=False)
        lean, number = await self.served(lean=True)
        self.assertIs(type(lean), LeanServer)
        self.assertIs(type(twisteds), tcp.Server)
        self.assertEqual(lean.logPrefix(), f"Protocol,{lean.sessionno},127.0.0.1")
        self.assertEqual(twisteds.logPrefix(), f"Protocol,{twisteds.sessionno},127.0.0.1")
        self.assertEqual(repr(lean), f"<Protocol #{lean.sessionno} on {number}>")
        self.assertNotIn("logstr", vars(lean))
        self.assertNotIn("repstr", vars(lean))
        self.assertIn("logstr", vars(twisteds))

    async def test_the_constructor_sets_what_twisteds_does_but_the_strings(self) -> None:
        """
        The lean constructor replaces Twisted's: the same attributes with the
        same values, less the two strings (a Twisted that sets more fails here).
        """
        twisteds, _ = await self.served(lean=False)
        lean, _ = await self.served(lean=True)
        self.assertEqual(set(vars(lean)), set(vars(twisteds)) - {"logstr", "repstr"})
        for name in ("client", "hostname", "server", "connected", "protocol", "socket"):
            self.assertEqual(type(getattr(lean, name)), type(getattr(twisteds, name)), name)
        self.assertEqual(lean.hostname, twisteds.hostname)
        self.assertEqual(lean.getPeer().__class__, twisteds.getPeer().__class__)

    async def test_a_closed_connection_still_has_a_prefix_and_a_repr(self) -> None:
        """Twisted drops the protocol at close: what names it falls back, nothing raises."""
        lean, number = await self.served(lean=True)
        lean.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(lean.logPrefix(), f"-,{lean.sessionno},127.0.0.1")
        self.assertEqual(repr(lean), f"<closed #{lean.sessionno} on {number}>")

    async def test_the_daemons_tcp_connections_are_lean(self) -> None:
        """
        The service's TCP connections carried on as the protocol (here at a
        non-ASCII byte) run on lean transports that answer as before.
        """
        service = start_in_reactor(self, "--no-udp")
        client = socket.create_connection(("127.0.0.1", port_of(service, "TCP")))
        self.addCleanup(client.close)
        client.sendall("léan".encode())
        await eventually(lambda: protocol_of(service.stream_factory))
        protocol = protocol_of(service.stream_factory)
        assert protocol is not None
        self.assertIsInstance(protocol.transport, LeanServer)
        await eventually(lambda: protocol.bytes_out == 5)

    async def test_reads_grow_while_the_client_streams_and_shrink_after(self) -> None:
        """
        4 MiB sent at once is read in chunks of up to 256 KiB, never more;
        a small read asked for 256 KiB brings the read size back to 64 KiB.
        """
        server, client, _ = await self.connected(True, ChunkSizes)
        payload = b"x" * (4 * 1024 * 1024)
        await deferToThread(client.sendall, payload)
        await eventually(lambda: sum(server.sizes) == len(payload))
        self.assertGreater(max(server.sizes), READ_SIZE)
        self.assertLessEqual(max(server.sizes), MAX_READ_SIZE)
        # The stream's last read may have been short already: ask for 256
        # KiB again, as after a full read.
        cast(Any, server.transport).read_size = MAX_READ_SIZE
        client.sendall(b"small")
        await eventually(lambda: sum(server.sizes) == len(payload) + 5)
        self.assertEqual(cast(Any, server.transport).read_size, READ_SIZE)

    async def test_reads_stay_small_once_replies_wait_here(self) -> None:
        """
        For a client that stops reading, once its replies are queued in the
        transport (the kernel's buffer is full), every read asks for 64 KiB:
        a large read's replies never pile up behind them.
        """
        server, client, _ = await self.connected(True, TripleEcho)
        payload = b"x" * (8 * 1024 * 1024)
        await deferToThread(client.sendall, payload)
        await eventually(lambda: sum(size for size, _ in server.reads) == len(payload))
        behind_queued = [size for size, queued in server.reads if queued]
        self.assertTrue(behind_queued)
        self.assertLessEqual(max(behind_queued), READ_SIZE)

    def test_other_ports_keep_their_transport(self) -> None:
        """A UNIX port, or a port already building something else, is left alone."""
        scratch = tempfile.mkdtemp(prefix="caps-lean-")
        self.addCleanup(shutil.rmtree, scratch)
        unix_port = cast(IReactorUNIX, reactor).listenUNIX(
            os.path.join(scratch, "socket"), KeptProtocols(Protocol)
        )
        self.addCleanup(unix_port.stopListening)
        self.assertFalse(use_lean_server(unix_port))
        tcp_port = cast(IReactorTCP, reactor).listenTCP(
            0, KeptProtocols(Protocol), interface="127.0.0.1"
        )
        self.addCleanup(tcp_port.stopListening)
        cast(Any, tcp_port).transport = tcp.Server
        self.assertTrue(use_lean_server(tcp_port))
        self.assertFalse(use_lean_server(tcp_port))
