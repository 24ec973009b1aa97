"""Tests for L{twisted_caps._twisted.shared_accept}: a shared socket, one waiter woken."""

import os
import select
import shutil
import socket
import tempfile
from typing import Any, cast

from twisted.internet import reactor
from twisted.internet.epollreactor import EPollReactor
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.testing import MemoryReactor
from twisted.trial.unittest import SkipTest, TestCase

from tests.servers import KeptProtocols
from twisted_caps._twisted.shared_accept import adopt_shared_stream_port, wake_one_waiter

Address = str | tuple[str, int]


class SharedPortAcceptTests(TestCase):
    """What a worker's port takes from the shared socket's queue when woken."""

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

    def accepted_after_each_read(self, family: socket.AddressFamily, address: Address) -> list[int]:
        """
        Adopt a listening socket with three clients queued, not reading by
        itself, and drive its C{doRead} three times: the connections built
        after each.
        """
        listener = self.listening(family, address)
        self.queue_clients(listener, 3)
        factory = KeptProtocols(Protocol)
        port: Any = adopt_shared_stream_port(reactor, listener.fileno(), family, factory)
        port.stopReading()
        self.addCleanup(port.stopListening)
        self.addCleanup(self.abort_all, factory)
        counts = []
        for _ in range(3):
            port.doRead()
            counts.append(len(factory.built))
        return counts

    @staticmethod
    def abort_all(factory: KeptProtocols[Protocol]) -> None:
        """Close what the port accepted."""
        for protocol in factory.built:
            cast(Any, protocol.transport).abortConnection()

    def test_tcp_takes_the_queued_connections_in_one_wakeup(self) -> None:
        """
        A woken worker accepts every connection queued (up to Twisted's
        count), not one per trip round the reactor.
        """
        self.assertEqual(self.accepted_after_each_read(socket.AF_INET, ("127.0.0.1", 0)), [3, 3, 3])

    def test_unix_takes_the_queued_connections_in_one_wakeup(self) -> None:
        scratch = tempfile.mkdtemp(prefix="caps-accept-")
        self.addCleanup(shutil.rmtree, scratch)
        path = os.path.join(scratch, "socket")
        self.assertEqual(self.accepted_after_each_read(socket.AF_UNIX, path), [3, 3, 3])


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
