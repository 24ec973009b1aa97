# -*- test-case-name: tests.test_testing -*-
"""
A real caps server on loopback in the reactor of a trial test: ephemeral
ports, and a cleanup that leaves the reactor clean.
"""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.defer import Deferred, DeferredList
from twisted.internet.interfaces import IAddress, IProtocol, IProtocolFactory, ITCPTransport
from twisted.python.failure import Failure
from zope.interface import implementer

from twisted_caps.service import CapsService
from twisted_caps.testing.address import CapsAddress
from twisted_caps.testing.options import OptionValue, caps_config


@implementer(IProtocolFactory)
class OpenConnections:
    """
    Build protocols with another factory and keep each one until its
    connection is lost, so a test's cleanup can close what clients left open
    (trial reports an open connection as a dirty reactor).
    """

    noisy = False

    def __init__(self, factory: IProtocolFactory) -> None:
        self.factory = factory
        self.open: dict[IProtocol, Deferred[None]] = {}

    def doStart(self) -> None:
        self.factory.doStart()

    def doStop(self) -> None:
        self.factory.doStop()

    def buildProtocol(self, addr: IAddress) -> IProtocol | None:
        protocol = self.factory.buildProtocol(addr)
        if protocol is None:
            return None
        lost: Deferred[None] = Deferred()
        self.open[protocol] = lost
        connection_lost = protocol.connectionLost

        def forget(reason: Failure) -> None:
            del self.open[protocol]
            try:
                connection_lost(reason)
            finally:
                lost.callback(None)

        protocol.connectionLost = forget  # type: ignore[method-assign]
        return protocol

    def close(self) -> Deferred[Any]:
        """Abort every open connection; fire when all are closed."""
        waits = list(self.open.values())
        for protocol in list(self.open):
            transport: ITCPTransport = protocol.transport  # type: ignore[attr-defined]
            transport.abortConnection()
        return DeferredList(waits)


@dataclass
class LoopbackCapsServer(CapsAddress):
    """A caps server running in this process's reactor."""

    service: CapsService
    connections: OpenConnections


class Cleanups(Protocol):
    """What L{start_caps_server} needs of a test: trial's C{addCleanup}."""

    def addCleanup(self, f: Callable[[], object], /) -> None: ...


def start_caps_server(case: Cleanups, *argv: str, **options: OptionValue) -> LoopbackCapsServer:
    """
    Start a caps server in the reactor of trial test C{case}, on
    127.0.0.1 (override with C{interface="::1"}) and free ports, configured
    like C{twistd caps} (C{once=True}, or any daemon option; see
    L{caps_argv}). Cleanup stops listening and aborts the connections
    clients left open, then waits until they are closed.

    @raise ValueError: for options the daemon would refuse.
    """
    from twisted.internet import reactor

    service = CapsService(caps_config(*argv, **options), reactor)
    connections = OpenConnections(service.stream_factory)
    service.stream_factory = connections  # type: ignore[assignment]
    service.startService()

    def stop() -> Deferred[Any]:
        stopped = service.stopService()
        return DeferredList([stopped, connections.close()])

    case.addCleanup(stop)
    ports: dict[str, tuple[str, int]] = {}
    for port in service.ports:
        address = port.getHost()
        if isinstance(address, IPv4Address | IPv6Address):
            ports.setdefault(address.type, (address.host, address.port))
    host = (ports.get("TCP") or ports.get("UDP") or ("127.0.0.1", 0))[0]
    return LoopbackCapsServer(
        host,
        ports.get("TCP", (host, None))[1],
        ports.get("UDP", (host, None))[1],
        service,
        connections,
    )
