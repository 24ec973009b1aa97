"""Tests for L{twisted_caps.dispatch}, on the real epoll reactor over loopback."""

import socket
from collections.abc import Callable
from typing import cast

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.epollreactor import EPollReactor
from twisted.internet.error import ConnectionDone
from twisted.internet.interfaces import IAddress, IHalfCloseableProtocol
from twisted.internet.protocol import Protocol, ServerFactory, connectionDone
from twisted.internet.testing import MemoryReactor
from twisted.logger import ILogObserver, LogEvent, globalLogPublisher
from twisted.python import context, log
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase, TestCase
from zope.interface import implementer

from tests.servers import eventually, start_in_reactor
from twisted_caps import dispatch
from twisted_caps.service import CapsService
from twisted_caps.tap import Options

ON_EPOLL = type(cast(object, reactor)) is EPollReactor


@implementer(IHalfCloseableProtocol)
class Recorder(Protocol):
    """Record what arrives, the log system it arrives under, and how it ends."""

    fail_on: bytes | None = None

    def __init__(self) -> None:
        self.received = b""
        self.systems: list[str] = []
        self.read_closed: Deferred[None] = Deferred()
        self.lost: Deferred[None] = Deferred()
        self.reason: Failure | None = None

    def dataReceived(self, data: bytes) -> None:
        self.received += data
        self.systems.append(context.get(log.ILogContext)["system"])
        if data == self.fail_on:
            raise ZeroDivisionError("broken protocol")
        self.transport.write(data.upper())  # type: ignore[union-attr]

    def readConnectionLost(self) -> None:
        self.read_closed.callback(None)
        self.transport.loseConnection()  # type: ignore[union-attr]

    def writeConnectionLost(self) -> None:
        pass

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.reason = reason
        self.lost.callback(None)


class RecorderFactory(ServerFactory):
    """Build L{Recorder}s and keep them."""

    def __init__(self) -> None:
        self.built: list[Recorder] = []

    def buildProtocol(self, addr: IAddress | None) -> Recorder:
        protocol = Recorder()
        self.built.append(protocol)
        return protocol


class InstallTests(SynchronousTestCase):
    def test_other_reactors_are_left_alone(self) -> None:
        memory = MemoryReactor()
        self.assertIsNone(dispatch.install(memory))
        self.assertNotIn("doIteration", vars(memory))

    def test_uninstall_restores_the_reactors_own_poll(self) -> None:
        epoll = EPollReactor()
        self.addCleanup(epoll._poller.close)
        restore = dispatch.install(epoll)
        assert restore is not None
        self.assertIn("doIteration", vars(epoll))
        restore()
        self.assertEqual(epoll.doIteration.__func__, EPollReactor.doPoll)  # type: ignore[attr-defined]


class LoopbackTests(TestCase):
    def setUp(self) -> None:
        if not ON_EPOLL:
            self.skipTest("runs on the epoll reactor only")
        restore = dispatch.install(reactor)
        assert restore is not None
        self.restore: Callable[[], None] = restore
        self.addCleanup(self._restore)
        factory = RecorderFactory()
        self.protocols = factory.built
        port = reactor.listenTCP(0, factory, interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        address = port.getHost()
        self.client = socket.create_connection(("127.0.0.1", address.port))  # type: ignore[attr-defined]
        self.addCleanup(self.client.close)

    def _restore(self) -> None:
        if "doIteration" in vars(reactor):
            self.restore()

    async def _connected(self) -> Recorder:
        await eventually(lambda: self.protocols)
        return self.protocols[0]

    async def test_reads_skip_the_log_context_and_half_close_still_works(self) -> None:
        self.client.sendall(b"hello")
        self.client.shutdown(socket.SHUT_WR)
        server = await self._connected()
        await server.read_closed
        await server.lost
        assert server.reason is not None
        self.assertTrue(server.reason.check(ConnectionDone))
        self.assertEqual(server.received, b"hello")
        self.assertEqual(set(server.systems), {"-"})
        self.assertEqual(self.client.recv(100), b"HELLO")

    async def test_an_error_is_logged_with_the_transports_prefix(self) -> None:
        events: list[LogEvent] = []
        observer = cast(ILogObserver, events.append)
        globalLogPublisher.addObserver(observer)
        self.addCleanup(globalLogPublisher.removeObserver, observer)
        Recorder.fail_on = b"boom"
        self.addCleanup(setattr, Recorder, "fail_on", None)
        self.client.sendall(b"boom")
        server = await self._connected()
        await server.lost
        assert server.reason is not None
        self.assertTrue(server.reason.check(ZeroDivisionError))
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 1)
        [logged] = [event for event in events if event.get("isError")]
        self.assertIn("Recorder", logged["log_system"])

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
        self.addCleanup(service.stopService)
        self.assertIn("doIteration", vars(reactor))
        await service.stopService()
        self.assertNotIn("doIteration", vars(reactor))

    def test_an_embedded_service_leaves_the_reactor_alone(self) -> None:
        start_in_reactor(self, "--no-udp")
        self.assertNotIn("doIteration", vars(reactor))
