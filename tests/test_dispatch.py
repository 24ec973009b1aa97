"""Tests for L{twisted_caps._twisted.dispatch}, on the real epoll reactor over loopback."""

import select
import socket
from collections.abc import Callable
from typing import Any, cast

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.epollreactor import EPollReactor
from twisted.internet.error import ConnectionDone
from twisted.internet.interfaces import IHalfCloseableProtocol, IReactorUDP
from twisted.internet.protocol import DatagramProtocol, Protocol, connectionDone
from twisted.internet.testing import MemoryReactor
from twisted.logger import ILogObserver, LogEvent, globalLogPublisher
from twisted.python import context, log
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase, TestCase
from zope.interface import implementer

from tests.servers import KeptProtocols, eventually, start_in_reactor
from twisted_caps._twisted import dispatch
from twisted_caps.operating.tap import Options
from twisted_caps.serving.service import CapsService

ON_EPOLL = type(cast(object, reactor)) is EPollReactor


@implementer(IHalfCloseableProtocol)
class Recorder(Protocol):
    """Record what arrives, the log system it arrives under, and how it ends."""

    fail_on: bytes | None = None

    def __init__(self) -> None:
        self.received = b""
        self.systems: list[str] = []
        self.made_under = ""
        self.read_closed: Deferred[None] = Deferred()
        self.lost: Deferred[None] = Deferred()
        self.reason: Failure | None = None

    def connectionMade(self) -> None:
        self.made_under = context.get(log.ILogContext)["system"]

    def dataReceived(self, data: bytes) -> None:
        self.received += data
        self.systems.append(context.get(log.ILogContext)["system"])
        if data == self.fail_on:
            raise ZeroDivisionError("broken protocol")
        self.transport.write(data.upper())  # type: ignore[union-attr]

    def readConnectionLost(self) -> None:
        self.systems.append(context.get(log.ILogContext)["system"])
        self.read_closed.callback(None)
        self.transport.loseConnection()  # type: ignore[union-attr]

    def writeConnectionLost(self) -> None:
        pass

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.reason = reason
        self.lost.callback(None)


class BrokenClose(Protocol):
    """A protocol, not half-closeable, whose C{connectionLost} raises."""

    def __init__(self) -> None:
        self.lost = False

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.lost = True
        raise ZeroDivisionError("broken close")


class DatagramRecorder(DatagramProtocol):
    """Record the log system each datagram arrives under."""

    def __init__(self) -> None:
        self.systems: list[str] = []

    def datagramReceived(self, datagram: bytes, addr: Any) -> None:
        self.systems.append(context.get(log.ILogContext)["system"])


class InstallTests(SynchronousTestCase):
    def test_other_reactors_are_left_alone(self) -> None:
        memory = MemoryReactor()
        self.assertIsNone(dispatch.install(memory))
        self.assertNotIn("doIteration", vars(memory))

    def epoll(self) -> EPollReactor:
        """A reactor of its own, never run, closed at cleanup."""
        epoll = EPollReactor()
        self.addCleanup(epoll._poller.close)
        self.addCleanup(epoll.waker.connectionLost, None)
        return epoll

    def test_uninstall_restores_the_reactors_own_poll(self) -> None:
        epoll = self.epoll()
        restore = dispatch.install(epoll)
        assert restore is not None
        self.assertIn("doIteration", vars(epoll))
        restore()
        self.assertEqual(epoll.doIteration.__func__, EPollReactor.doPoll)  # type: ignore[attr-defined]

    def test_a_reactor_without_the_parts_it_reads_is_left_alone(self) -> None:
        epoll = self.epoll()
        del epoll._selectables
        self.assertIsNone(dispatch.install(epoll))
        self.assertNotIn("doIteration", vars(epoll))

    def test_a_second_install_leaves_the_first_in_place(self) -> None:
        epoll = self.epoll()
        restore = dispatch.install(epoll)
        assert restore is not None
        installed = vars(epoll)["doIteration"]
        self.assertIsNone(dispatch.install(epoll))
        self.assertIs(vars(epoll)["doIteration"], installed)
        restore()
        self.assertNotIn("doIteration", vars(epoll))


class LoopbackTests(TestCase):
    def setUp(self) -> None:
        if not ON_EPOLL:
            self.skipTest("runs on the epoll reactor only")
        restore = dispatch.install(reactor)
        assert restore is not None
        self.restore: Callable[[], None] = restore
        self.events: list[LogEvent] = []
        observer = cast(ILogObserver, self.events.append)
        globalLogPublisher.addObserver(observer)
        self.addCleanup(globalLogPublisher.removeObserver, observer)
        self.addCleanup(self._restore)
        factory = KeptProtocols(Recorder)
        self.protocols = factory.built
        port = reactor.listenTCP(0, factory, interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        self.client_address = ("127.0.0.1", port.getHost().port)  # type: ignore[attr-defined]
        self.client = socket.create_connection(self.client_address)
        self.addCleanup(self.client.close)

    def assert_one_error_logged_with_the_prefix(self, prefix: str) -> None:
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 1)
        [logged] = [event for event in self.events if event.get("isError")]
        self.assertIn(prefix, logged["log_system"])

    def _restore(self) -> None:
        if "doIteration" in vars(reactor):
            self.restore()

    async def _connected(self) -> Recorder:
        await eventually(lambda: self.protocols)
        return self.protocols[0]

    async def test_reads_skip_the_log_context_and_half_close_still_works(self) -> None:
        """The read and the half-close it finds both run outside the context."""
        self.client.sendall(b"hello")
        server = await self._connected()
        # The reply is out, so the end of input is a plain read event.
        await eventually(lambda: select.select([self.client], [], [], 0)[0])
        self.assertEqual(self.client.recv(100), b"HELLO")
        self.client.shutdown(socket.SHUT_WR)
        await server.read_closed
        await server.lost
        assert server.reason is not None
        self.assertTrue(server.reason.check(ConnectionDone))
        self.assertEqual(server.received, b"hello")
        self.assertEqual(server.systems, ["-", "-"])

    async def test_accepting_skips_the_log_context(self) -> None:
        """The listening port's read, which accepts and builds the protocol, runs outside it."""
        server = await self._connected()
        self.assertEqual(server.made_under, "-")

    async def test_an_error_is_logged_with_the_transports_prefix(self) -> None:
        Recorder.fail_on = b"boom"
        self.addCleanup(setattr, Recorder, "fail_on", None)
        self.client.sendall(b"boom")
        server = await self._connected()
        await server.lost
        assert server.reason is not None
        self.assertTrue(server.reason.check(ZeroDivisionError))
        self.assert_one_error_logged_with_the_prefix("Recorder")

    async def test_an_error_while_closing_is_logged_and_serving_goes_on(self) -> None:
        factory = KeptProtocols(BrokenClose)
        port = reactor.listenTCP(0, factory, interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        address = ("127.0.0.1", port.getHost().port)  # type: ignore[attr-defined]
        socket.create_connection(address).close()
        await eventually(lambda: factory.built and factory.built[0].lost)
        self.assert_one_error_logged_with_the_prefix("BrokenClose")
        self.client.sendall(b"still serving")
        server = await self._connected()
        await eventually(lambda: server.received)
        self.assertEqual(server.received, b"still serving")

    async def test_other_transports_keep_the_context(self) -> None:
        protocol = DatagramRecorder()
        port = cast(IReactorUDP, reactor).listenUDP(0, protocol, "127.0.0.1", 8192)
        self.addCleanup(port.stopListening)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
            sender.sendto(b"hello", ("127.0.0.1", port.getHost().port))  # type: ignore[attr-defined]
        await eventually(lambda: protocol.systems)
        self.assertIn("(UDP)", protocol.systems[0])

    async def test_without_it_reads_run_in_the_context_again(self) -> None:
        self.restore()
        self.client.sendall(b"hello")
        server = await self._connected()
        await eventually(lambda: server.received)
        self.assertIn("Recorder", server.systems[0])


class ServiceTests(TestCase):
    async def test_the_daemons_service_uses_it_while_it_runs(self) -> None:
        if not ON_EPOLL:
            self.skipTest("runs on the epoll reactor only")
        options = Options()
        options.parseOptions(["-i", "127.0.0.1", "-p", "0", "--no-udp"])
        service = CapsService(options.config, reactor, fast_dispatch=True)
        service.startService()
        self.assertIn("doIteration", vars(reactor))
        await service.stopService()
        self.assertNotIn("doIteration", vars(reactor))

    def test_an_embedded_service_leaves_the_reactor_alone(self) -> None:
        start_in_reactor(self, "--no-udp")
        self.assertNotIn("doIteration", vars(reactor))
