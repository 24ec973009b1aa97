"""
Tests for L{twisted_caps._twisted.eager_read}: connections accepted when
their first bytes arrive and read before they are registered, over loopback
in the test's reactor and through C{twistd caps}.
"""

import socket
import time
from typing import Any, cast

from twisted.internet import reactor
from twisted.internet.address import IPv6Address
from twisted.internet.error import CannotListenError
from twisted.internet.interfaces import IReactorFDSet, IReactorTCP
from twisted.internet.protocol import Protocol
from twisted.internet.threads import deferToThread
from twisted.trial.unittest import SkipTest, TestCase

from tests.servers import (
    KeptProtocols,
    closed_within,
    course_tcp_client,
    eventually,
    port_of,
    read_to_end,
    start_in_reactor,
    start_process,
    traced_calls,
    traced_daemon,
    twistd,
    wait_for,
)
from twisted_caps._twisted.eager_read import DEFER_ACCEPT_SECONDS, EagerServer, use_eager_reads
from twisted_caps._twisted.lean_server import use_lean_server

HOST = "127.0.0.1"


class RegistrationSpy(Protocol):
    """Answer each chunk upper-cased, noting whether the reactor was watching the connection."""

    def __init__(self) -> None:
        self.registered_at_read: list[bool] = []

    def dataReceived(self, data: bytes) -> None:
        readers = cast(IReactorFDSet, reactor).getReaders()
        self.registered_at_read.append(cast(Any, self.transport) in readers)
        self.transport.write(data.upper())  # type: ignore[union-attr]


class PausedAtOnce(RegistrationSpy):
    """A protocol that stops reading as soon as it is connected."""

    def connectionMade(self) -> None:
        self.transport.pauseProducing()  # type: ignore[union-attr]


class EagerReadTests(TestCase):
    def listen(self, protocol: type[Protocol], eager: bool = True) -> tuple[Any, int]:
        """A listening port on loopback, eager or only lean: its factory and number."""
        factory = KeptProtocols(protocol)
        port = cast(IReactorTCP, reactor).listenTCP(0, factory, interface=HOST)
        self.addCleanup(port.stopListening)
        if eager:
            self.assertTrue(use_eager_reads(port))
        else:
            self.assertTrue(use_lean_server(port))
        return factory, port.getHost().port  # type: ignore[attr-defined]

    def client(self, number: int) -> socket.socket:
        """A client connected to port C{number}, closed at cleanup."""
        client = socket.create_connection((HOST, number), timeout=10)
        self.addCleanup(client.close)
        return client

    async def answered_unregistered(self, eager: bool) -> int:
        """
        Have twenty clients connect and send at once; return how many of
        their connections were read before the reactor watched them.
        """
        factory, number = self.listen(RegistrationSpy, eager)
        clients = []
        for _ in range(20):
            # Each sends at once: one silent for a second would be handed
            # over without its bytes.
            clients.append(self.client(number))
            clients[-1].sendall(b"hello")
        await eventually(lambda: len(factory.built) == 20)
        await eventually(lambda: all(p.registered_at_read for p in factory.built))
        readers = cast(IReactorFDSet, reactor).getReaders()
        self.assertTrue(all(p.transport in readers for p in factory.built))
        replies = await deferToThread(lambda: [c.recv(16) for c in clients])
        self.assertEqual(replies, [b"HELLO"] * 20)
        return sum(p.registered_at_read == [False] for p in factory.built)

    async def test_first_bytes_are_answered_before_registration(self) -> None:
        """
        Twenty clients that connect and send at once are each read and
        answered before the reactor ever watches their connection, then
        watched for what comes next; a port that is only lean reads them after.
        """
        self.assertEqual(await self.answered_unregistered(eager=True), 20)
        self.assertEqual(await self.answered_unregistered(eager=False), 0)

    async def test_accepting_skips_pythons_socket_accept(self) -> None:
        """
        The port accepts through the socket's own C{_accept}: Python's
        C{socket.accept}, twelve calls a connection, is never called.
        """
        wrapped = socket.socket.accept
        calls: list[object] = []

        def counted(listener: socket.socket) -> tuple[socket.socket, Any]:
            calls.append(listener)
            return wrapped(listener)

        self.patch(socket.socket, "accept", counted)
        self.assertEqual(await self.answered_unregistered(eager=True), 20)
        self.assertEqual(calls, [])

    async def test_an_ipv6_client_is_answered_and_known_by_its_address(self) -> None:
        """On C{::1}, the eager port builds the IPv6 transport Twisted's would."""
        factory = KeptProtocols(RegistrationSpy)
        try:
            port = cast(IReactorTCP, reactor).listenTCP(0, factory, interface="::1")
        except CannotListenError:
            raise SkipTest("no IPv6 loopback here") from None
        self.addCleanup(port.stopListening)
        self.assertTrue(use_eager_reads(port))
        number = port.getHost().port  # type: ignore[attr-defined]
        client = socket.create_connection(("::1", number), timeout=10)
        self.addCleanup(client.close)
        client.sendall(b"six")
        self.assertEqual(await deferToThread(client.recv, 16), b"SIX")
        [protocol] = factory.built
        peer = cast(Any, protocol.transport).getPeer()
        self.assertIsInstance(peer, IPv6Address)
        self.assertEqual((peer.host, peer.port), ("::1", client.getsockname()[1]))
        self.assertEqual(protocol.registered_at_read, [False])

    async def test_a_protocol_paused_at_connection_is_neither_read_nor_registered(self) -> None:
        """Pausing in C{connectionMade} holds the first bytes until it resumes."""
        factory, number = self.listen(PausedAtOnce)
        client = self.client(number)
        client.sendall(b"wait")
        await eventually(lambda: factory.built)
        [protocol] = factory.built
        transport = protocol.transport
        await deferToThread(time.sleep, 0.2)
        self.assertEqual(protocol.registered_at_read, [])
        self.assertNotIn(transport, cast(IReactorFDSet, reactor).getReaders())
        transport.resumeProducing()
        await eventually(lambda: protocol.registered_at_read)
        self.assertEqual(await deferToThread(client.recv, 16), b"WAIT")

    async def test_a_silent_client_is_accepted_after_the_deferral(self) -> None:
        """
        A client that connects and sends nothing is accepted all the same,
        about L{DEFER_ACCEPT_SECONDS} later, registered without a read,
        and answered when it speaks.
        """
        factory, number = self.listen(RegistrationSpy)
        client = self.client(number)
        connected = time.monotonic()
        await eventually(lambda: factory.built, timeout=DEFER_ACCEPT_SECONDS + 10)
        self.assertGreaterEqual(time.monotonic() - connected, DEFER_ACCEPT_SECONDS * 0.9)
        [protocol] = factory.built
        self.assertIsInstance(protocol.transport, EagerServer)
        await eventually(lambda: protocol.transport in cast(IReactorFDSet, reactor).getReaders())
        client.sendall(b"late")
        self.assertEqual(await deferToThread(client.recv, 16), b"LATE")
        self.assertEqual(protocol.registered_at_read, [True])

    async def test_a_silent_client_holds_its_slot_once_handed_over(self) -> None:
        """
        With C{--max-connections 1}, a client that has said nothing holds
        the slot once the kernel hands it over, and the next one is refused
        and counted, as before deferred accepts.
        """
        service = start_in_reactor(self, "--no-udp", "--max-connections", "1")
        factory = service.stream_factory
        silent = self.client(port_of(service, "TCP"))
        await eventually(lambda: factory.connections, timeout=DEFER_ACCEPT_SECONDS + 10)
        late = self.client(port_of(service, "TCP"))
        late.sendall(b"refused")
        self.assertEqual(await deferToThread(closed_within, late, 10), b"")
        self.assertEqual(factory.refused, {"max-connections": 1})
        silent.sendall(b"still here")
        self.assertEqual(await deferToThread(silent.recv, 16), b"STILL HERE")


class DaemonEagerReadTests(TestCase):
    """What C{twistd caps} does with deferred accepts and eager reads."""

    def test_telnet_style_client_gets_its_answer_after_a_pause(self) -> None:
        """
        A client that connects and types later, before the deferral ends or
        after, gets every answer; the server counts and logs it as any other.
        """
        daemon = start_process(self, twistd("-i", HOST, "-p", "0", "--no-udp"), expect=("TCP",))
        assert daemon.tcp_port
        for pause in (0.3, DEFER_ACCEPT_SECONDS + 0.5):
            with socket.create_connection((HOST, daemon.tcp_port), timeout=10) as client:
                time.sleep(pause)
                client.sendall(b"typed ")
                self.assertEqual(client.recv(16), b"TYPED ")
                client.sendall(b"more\n")
                self.assertEqual(client.recv(16), b"MORE\n")
        wait_for(lambda: daemon.output.count(b"11 bytes out: client closed") == 2)

    def test_once_answers_and_closes_without_registering(self) -> None:
        """
        With C{--once}, a connection whose sentence is there when it is
        accepted is read, answered and closed before it is ever registered
        with epoll: no C{epoll_ctl} at all for twenty of them, each logged.
        """
        daemon, trace = traced_daemon(self, "epoll_ctl", "--once")
        assert daemon.tcp_port
        # A first connection settles the daemon's start-up calls in the trace
        # (the reactor registers its own descriptors after the serving line).
        self.assertEqual(course_tcp_client(daemon.tcp_port, b"first"), b"FIRST")
        wait_for(lambda: daemon.output.count(b"answered once") == 1)
        before = traced_calls(trace)["epoll_ctl"]
        count = 20
        for _ in range(count):
            self.assertEqual(course_tcp_client(daemon.tcp_port, b"hello"), b"HELLO")
        wait_for(lambda: daemon.output.count(b"answered once") == count + 1)
        self.assertEqual(traced_calls(trace)["epoll_ctl"] - before, 0)

    def test_a_connection_its_client_closed_costs_one_epoll_ctl_and_no_shutdown(self) -> None:
        """
        The lecture's client, twenty times: each connection is read at
        accept, answered, registered for what comes next (one
        C{epoll_ctl}), and closed after the client's end of input with
        C{close(2)} alone: no C{epoll_ctl} to unregister it, no
        C{shutdown(2)}; each is answered and logged, and the descriptors
        the next ones reuse are watched again as new.
        """
        daemon, trace = traced_daemon(self, "epoll_ctl,shutdown")
        assert daemon.tcp_port
        # A first connection settles the daemon's start-up calls in the trace.
        self.assertEqual(course_tcp_client(daemon.tcp_port, b"first"), b"FIRST")
        wait_for(lambda: daemon.output.count(b"client closed") == 1)
        before = traced_calls(trace)
        count = 20
        for number in range(count):
            sentence = b"sentence %d" % number
            self.assertEqual(course_tcp_client(daemon.tcp_port, sentence), sentence.upper())
        wait_for(lambda: daemon.output.count(b"client closed") == count + 1)
        after = traced_calls(trace)
        self.assertEqual(after["epoll_ctl"] - before["epoll_ctl"], count)
        self.assertEqual(after["shutdown"] - before["shutdown"], 0)

    def test_a_connection_the_server_closes_first_is_still_shut_down(self) -> None:
        """
        With C{--once} the server closes while its client may still send:
        that close keeps Twisted's C{shutdown(2)} before C{close(2)}.
        """
        daemon, trace = traced_daemon(self, "shutdown", "--once")
        assert daemon.tcp_port
        count = 5
        for _ in range(count):
            self.assertEqual(course_tcp_client(daemon.tcp_port, b"hello"), b"HELLO")
        wait_for(lambda: daemon.output.count(b"answered once") == count)
        self.assertEqual(traced_calls(trace)["shutdown"], count)

    def test_a_client_that_half_closed_is_answered_to_the_end(self) -> None:
        """Sentence and end of input there at accept: the whole reply, then end of stream."""
        daemon = start_process(self, twistd("-i", HOST, "-p", "0", "--no-udp"), expect=("TCP",))
        assert daemon.tcp_port
        for _ in range(10):
            with socket.create_connection((HOST, daemon.tcp_port), timeout=10) as client:
                client.sendall(b"half ")
                client.shutdown(socket.SHUT_WR)
                self.assertEqual(read_to_end(client), b"HALF ")
