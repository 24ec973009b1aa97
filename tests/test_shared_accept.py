"""Tests for L{twisted_caps._twisted.shared_accept}: one accept per wake-up, one waiter woken."""

import os
import select
import shutil
import socket
import tempfile
from typing import Any, cast

from twisted.internet import reactor
from twisted.internet.epollreactor import EPollReactor
from twisted.internet.interfaces import IReactorSocket
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.testing import MemoryReactor
from twisted.trial.unittest import SkipTest, TestCase

from tests.servers import KeptProtocols
from twisted_caps._twisted import shared_accept
from twisted_caps._twisted.shared_accept import adopt_shared_stream_port, wake_one_waiter

Address = str | tuple[str, int]


class OneAcceptPerWakeupTests(TestCase):
    def listening(self, family: socket.AddressFamily, address: Address) -> socket.socket:
        listener = socket.socket(family, socket.SOCK_STREAM)
        self.addCleanup(listener.close)
        listener.bind(address)
        listener.listen(16)
        listener.setblocking(False)
        return listener

    def queue_clients(self, listener: socket.socket, count: int) -> None:
        """Connect C{count} clients; the kernel completes them without an accept."""
        for _ in range(count):
            client = socket.socket(listener.family, socket.SOCK_STREAM)
            self.addCleanup(client.close)
            client.connect(listener.getsockname())

    def adopt(
        self, shared: bool, family: socket.AddressFamily, address: Address
    ) -> tuple[Any, KeptProtocols[Protocol]]:
        """
        A port on a listening socket with three clients queued, not reading by
        itself, so the test drives its C{doRead}: C{shared}, or Twisted's own.
        """
        listener = self.listening(family, address)
        self.queue_clients(listener, 3)
        factory = KeptProtocols(Protocol)
        fd = listener.fileno()
        port: Any
        if shared:
            port = adopt_shared_stream_port(reactor, fd, family, factory)
        else:
            port = cast(IReactorSocket, reactor).adoptStreamPort(fd, family, factory)
        port.stopReading()
        self.addCleanup(port.stopListening)
        self.addCleanup(self.abort_all, factory)
        return port, factory

    @staticmethod
    def abort_all(factory: KeptProtocols[Protocol]) -> None:
        """Close what the port accepted."""
        for protocol in factory.built:
            cast(Any, protocol.transport).abortConnection()

    def accepted_after_each_read(
        self, shared: bool, family: socket.AddressFamily, address: Address
    ) -> list[int]:
        port, factory = self.adopt(shared, family, address)
        counts = []
        for _ in range(3):
            port.doRead()
            counts.append(len(factory.built))
        return counts

    def test_tcp_accepts_one_connection_per_read(self) -> None:
        counts = self.accepted_after_each_read(True, socket.AF_INET, ("127.0.0.1", 0))
        self.assertEqual(counts, [1, 2, 3])

    def test_unix_accepts_one_connection_per_read(self) -> None:
        scratch = tempfile.mkdtemp(prefix="caps-accept-")
        self.addCleanup(shutil.rmtree, scratch)
        path = os.path.join(scratch, "socket")
        self.assertEqual(self.accepted_after_each_read(True, socket.AF_UNIX, path), [1, 2, 3])

    def test_twisteds_own_port_takes_the_whole_queue_at_once(self) -> None:
        counts = self.accepted_after_each_read(False, socket.AF_INET, ("127.0.0.1", 0))
        self.assertEqual(counts, [3, 3, 3])

    def test_without_the_private_constructor_twisteds_own_port_serves(self) -> None:
        """
        On a Twisted without C{_fromListeningDescriptor}, the shared socket is
        still served, through the public C{adoptStreamPort}.
        """
        self.patch(shared_accept, "ONE_ACCEPT_PER_WAKEUP", False)
        counts = self.accepted_after_each_read(True, socket.AF_INET, ("127.0.0.1", 0))
        self.assertEqual(counts, [3, 3, 3])


class WakeOneWaiterTests(TestCase):
    """The shared socket's registration with C{EPOLLEXCLUSIVE}, and its fallbacks."""

    def reading_port(self) -> Any:
        listener = socket.socket()
        self.addCleanup(listener.close)
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        listener.setblocking(False)
        port = adopt_shared_stream_port(reactor, listener.fileno(), socket.AF_INET, Factory())
        self.addCleanup(port.stopListening)
        return port

    def test_the_epoll_reactor_registers_the_socket_exclusively(self) -> None:
        if not isinstance(reactor, EPollReactor) or not hasattr(select, "EPOLLEXCLUSIVE"):
            raise SkipTest("EPOLLEXCLUSIVE needs Linux's epoll reactor")
        port = self.reading_port()
        # Registered already: EPOLL_CTL_MOD is refused for an exclusive entry.
        poller: Any = getattr(reactor, "_poller")  # noqa: B009
        with self.assertRaises(OSError):
            poller.modify(port.fileno(), select.EPOLLIN)

    def test_another_reactor_is_left_alone(self) -> None:
        self.assertFalse(wake_one_waiter(MemoryReactor(), self.reading_port()))

    def test_a_port_not_reading_is_left_alone(self) -> None:
        port = self.reading_port()
        port.stopReading()
        self.assertFalse(wake_one_waiter(reactor, port))
