# -*- test-case-name: tests.test_service -*-
"""
The service that opens every configured listener and closes them on stop.
"""

import os
from collections.abc import Callable
from dataclasses import dataclass
from socket import SOCK_DGRAM
from typing import Any

from twisted.application.service import Service
from twisted.internet.address import IPv4Address, IPv6Address, UNIXAddress
from twisted.internet.defer import Deferred, DeferredList, maybeDeferred
from twisted.internet.interfaces import IListeningPort
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.server import Site

from twisted_caps import dispatch
from twisted_caps.config import CapsConfig, TcpListener
from twisted_caps.datagram import CapsDatagramProtocol
from twisted_caps.limits import ConnectionLimits, DatagramRateLimit
from twisted_caps.metrics import Snapshot, metrics_site, snapshot
from twisted_caps.rlimits import raise_open_files_limit
from twisted_caps.shared_accept import adopt_shared_stream_port, wake_one_waiter
from twisted_caps.stream import CapsStreamFactory


class ListenError(SystemExit, Exception):
    """
    A listener could not be opened; the message is the one line users see.

    As a C{SystemExit}, it makes C{twistd -n} and C{twist} print the message
    and exit with status 1, with no traceback. As an C{Exception}, it is
    what daemonizing C{twistd} reports through its start-up pipe, so the
    parent process prints it and exits with status 1 instead of waiting.
    """


@dataclass(frozen=True)
class InheritedSocket:
    """A listening socket this process inherited, as a descriptor and its family."""

    kind: str
    fd: int
    family: int


class CapsService(Service):
    """
    Serve capitalization on every TCP and UDP listener of a L{CapsConfig}.

    Listeners are opened in C{privilegedStartService}, so C{twistd --uid}
    can bind a port below 1024 before dropping privileges; C{twist}, which
    only calls C{startService}, gets them opened there. If any listener
    fails, the ones already open are closed and L{ListenError} is raised.

    A worker of C{--workers} gives C{inherited}: the sockets its supervisor
    opened, which it adopts instead of opening the configured listeners.

    With C{fast_dispatch}, the daemon's setting, the reactor reads TCP
    connections through L{twisted_caps.dispatch} while the service runs; it
    is off by default because it changes the reactor for the whole process,
    which a test suite embedding the service may not expect.
    """

    log = Logger()

    def __init__(
        self,
        config: CapsConfig,
        reactor: Any,
        inherited: tuple[InheritedSocket, ...] = (),
        fast_dispatch: bool = False,
    ) -> None:
        """C{reactor} provides TCP, UDP and time (the global reactor, or a fake)."""
        self.config = config
        self.inherited = inherited
        self.fast_dispatch = fast_dispatch
        self._restore_dispatch: Callable[[], None] | None = None
        self.stream_factory = CapsStreamFactory(
            reactor,
            once=config.once,
            limits=ConnectionLimits(config.max_connections, config.max_per_peer),
            idle_timeout=config.idle_timeout,
            shutdown_timeout=config.shutdown_timeout,
        )
        self.datagram_rate_limit = (
            DatagramRateLimit(config.udp_rate, reactor) if config.udp_rate else None
        )
        self.datagram_protocols: list[CapsDatagramProtocol] = []
        self.ports: list[IListeningPort] = []
        self.metrics_port: IListeningPort | None = None
        self._reactor = reactor

    def privilegedStartService(self) -> None:
        self._listen()
        super().privilegedStartService()

    def startService(self) -> None:
        if not self.ports:
            self._listen()
        if self.fast_dispatch:
            self._restore_dispatch = dispatch.install(self._reactor)
        super().startService()

    def stopService(self) -> Deferred[Any]:
        """Stop accepting, then close every connection gracefully."""
        super().stopService()
        if self._restore_dispatch is not None:
            self._restore_dispatch()
            self._restore_dispatch = None
        ports, self.ports = self.ports, []
        stopping = [maybeDeferred(port.stopListening) for port in ports]
        return DeferredList([*stopping, self.stream_factory.close_all()], consumeErrors=True)

    def listen_for_metrics(self, listener: TcpListener, site: Site) -> IListeningPort:
        """Serve C{site} on C{listener}; it is closed with the other listeners."""
        port = _synchronous_result(listener.endpoint(self._reactor).listen(site))
        self._opened("metrics", port)
        return port

    def counters(self) -> Snapshot:
        """A snapshot of this process's counters (see L{twisted_caps.metrics})."""
        return snapshot(self.stream_factory, tuple(self.datagram_protocols))

    def _listen(self) -> None:
        before, after = raise_open_files_limit()
        self.log.info("caps: open files limit {after} (was {before})", before=before, after=after)
        try:
            for inherited in self.inherited:
                self._adopt(inherited)
            for tcp in self.config.tcp:
                endpoint = tcp.endpoint(self._reactor)
                port = _synchronous_result(endpoint.listen(self.stream_factory))
                self._opened("TCP", port)
            if self.config.metrics is not None:
                site = metrics_site(lambda: [(None, self.counters())])
                self.metrics_port = self.listen_for_metrics(self.config.metrics, site)
            for udp in self.config.udp:
                protocol = CapsDatagramProtocol(self._reactor, self.datagram_rate_limit)
                port = self._reactor.listenUDP(udp.port, protocol, interface=udp.interface)
                self.datagram_protocols.append(protocol)
                self._opened("UDP", port)
        except Exception as error:
            for port in self.ports:
                port.stopListening()
            self.ports = []
            raise ListenError(f"caps: {error}") from error

    def _adopt(self, inherited: InheritedSocket) -> None:
        """Serve on an inherited listening socket, then close the inherited descriptor."""
        fd, family = inherited.fd, inherited.family
        # The reactor expects a non-blocking socket: a blocking accept would hang it.
        os.set_blocking(fd, False)
        if inherited.kind == "TCP":
            port = adopt_shared_stream_port(self._reactor, fd, family, self.stream_factory)
        else:
            protocol = CapsDatagramProtocol(self._reactor, self.datagram_rate_limit)
            port = self._reactor.adoptDatagramPort(fd, family, protocol)
            wake_one_waiter(self._reactor, port)
            self.datagram_protocols.append(protocol)
        # The reactor adopted a duplicate; this one would only keep the socket open.
        os.close(fd)
        self._opened(inherited.kind, port)

    def listening_sockets(self) -> tuple[InheritedSocket, ...]:
        """
        Stop reading from every TCP and UDP listener and return their sockets,
        for workers to inherit: this process keeps them open but serves nothing.
        """
        sockets = []
        for port in self.ports:
            readable: Any = port
            kind = "UDP" if readable.socket.type == SOCK_DGRAM else "TCP"
            readable.stopReading()
            sockets.append(InheritedSocket(kind, readable.fileno(), readable.socket.family))
        return tuple(sockets)

    def _opened(self, kind: str, port: IListeningPort) -> None:
        self.ports.append(port)
        self.log.info("caps: serving {kind} on {address}", kind=kind, address=_describe(port))


def _synchronous_result(deferred: Deferred[IListeningPort]) -> IListeningPort:
    """
    Return what an endpoint's C{listen} gave: Twisted's endpoints listen
    synchronously, which lets a failure stop start-up at once.
    """
    results: list[IListeningPort | Failure] = []
    deferred.addBoth(results.append)
    if not results:
        deferred.cancel()
        raise RuntimeError("the endpoint did not start listening at once")
    result = results[0]
    if isinstance(result, Failure):
        result.raiseException()
    assert not isinstance(result, Failure)
    return result


def _describe(port: IListeningPort) -> str:
    """Name a listening port as users write it: host:port, [v6]:port or a path."""
    address = port.getHost()
    if isinstance(address, IPv6Address):
        return f"[{address.host}]:{address.port}"
    if isinstance(address, IPv4Address):
        return f"{address.host}:{address.port}"
    if isinstance(address, UNIXAddress) and address.name is not None:
        return os.fsdecode(address.name)
    return str(address)
