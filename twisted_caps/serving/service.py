# -*- test-case-name: tests.test_service -*-
"""
The service that opens every configured listener and closes them on stop.
"""

import errno
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from socket import SOCK_DGRAM, socket
from typing import Any

from twisted.application.service import Service
from twisted.internet.address import IPv4Address, IPv6Address, UNIXAddress
from twisted.internet.defer import Deferred, DeferredList, maybeDeferred
from twisted.internet.error import CannotListenError
from twisted.internet.interfaces import IListeningPort, IReadDescriptor
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.server import Site

from twisted_caps._twisted import dispatch
from twisted_caps._twisted.accept_errors import summarize_accept_errors
from twisted_caps._twisted.eager_read import use_eager_reads
from twisted_caps._twisted.shared_accept import adopt_shared_stream_port, wake_one_waiter
from twisted_caps.core.addresses import host_port
from twisted_caps.core.limits import DATAGRAM_READ_SIZE, ConnectionLimits, DatagramRateLimit
from twisted_caps.serving import endpoint_strings
from twisted_caps.serving.compact_stream import CompactCapsConnection
from twisted_caps.serving.config import CapsConfig, TcpListener, UdpListener
from twisted_caps.serving.datagram import CapsDatagramProtocol
from twisted_caps.serving.listeners import stream_endpoint
from twisted_caps.serving.metrics import Snapshot, metrics_site, snapshot
from twisted_caps.serving.open_files import raise_open_files_limit
from twisted_caps.serving.stream import CapsStreamFactory

#: Tries at finding one free port that TCP and UDP can both bind (--port 0).
SHARED_PORT_ATTEMPTS = 8


class ListenError(SystemExit, Exception):
    """
    A listener could not be opened; the message is the one line users see:
    C{caps: KIND ADDRESS: reason}.

    As a C{SystemExit}, it makes C{twistd -n} and C{twist} print the message
    and exit with status 1, with no traceback. As an C{Exception}, it is
    what daemonizing C{twistd} reports through its start-up pipe, so the
    parent process prints it and exits with status 1 instead of waiting;
    L{twisted_caps._twisted.startup_errors} makes that report this line,
    whole.
    """


@dataclass
class _SharedPort:
    """The port of the first listener asked for port 0, and the kinds bound to it."""

    number: int | None = None
    kinds: set[str] = field(default_factory=set)


class _SharedPortTakenError(Exception):
    """The port chosen for every listener asked for port 0 is taken for one of them."""


@contextmanager
def _opening(listener: str, on_shared_port: bool) -> Iterator[None]:
    """
    Turn a failure to open C{listener} into L{ListenError}, or into
    L{_SharedPortTakenError} when it was to share the port of C{--port 0} and
    that port is in use.
    """
    try:
        yield
    except CannotListenError as error:
        reason = getattr(error.socketError, "strerror", None) or str(error.socketError)
        if on_shared_port and getattr(error.socketError, "errno", None) == errno.EADDRINUSE:
            raise _SharedPortTakenError(f"{listener} is in use") from error
        hint = _privileged_port_hint(error)
        raise ListenError(
            f"caps: {_cannot_listen_address(listener, error)}: {reason}{hint}"
        ) from error
    except Exception as error:
        raise ListenError(f"caps: {listener}: {error}") from error


#: Ports below this one need privileges to bind (Linux's default
#: net.ipv4.ip_unprivileged_port_start).
FIRST_UNPRIVILEGED_PORT = 1024


def _privileged_port_hint(error: CannotListenError) -> str:
    """How to bind a port below 1024 without running as root, when that is what failed."""
    port = error.port if isinstance(error.port, int) else None
    if getattr(error.socketError, "errno", None) != errno.EACCES or port is None:
        return ""
    if port >= FIRST_UNPRIVILEGED_PORT:
        return ""
    return (
        f" (ports below {FIRST_UNPRIVILEGED_PORT} need root: start as root with twistd --uid,"
        " which binds, then drops privileges, or let systemd's sockets bind it;"
        " see docs/deploying.md)"
    )


def _cannot_listen_address(listener: str, error: CannotListenError) -> str:
    """Name what failed as users write it: TCP 127.0.0.1:1200, UDP [::1]:1200, UNIX PATH."""
    kind = listener.split(" ", 1)[0]
    if error.interface is None:
        path = error.port if isinstance(error.port, str) else os.fsdecode(error.port)
        return f"UNIX {path}"
    host = error.interface or "0.0.0.0"
    return f"{kind} {host_port(host, error.port)}"


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
    connections through L{twisted_caps._twisted.dispatch} while the service runs; it
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

    def stop_accepting(self) -> Deferred[Any]:
        """
        Close every listener, leaving the open connections be: a retiring
        worker's way out, since its listening sockets stay open elsewhere.
        """
        ports, self.ports = self.ports, []
        return DeferredList([maybeDeferred(port.stopListening) for port in ports])

    def reload(self) -> None:
        """
        Re-read the certificate and key of every C{ssl:} listener, for new
        connections; a listener whose files no longer load keeps its old
        ones, and says so in one log line.
        """
        for port in self.ports:
            tls = _reloadable_tls(port)
            if tls is None:
                continue
            try:
                tls.reload()
            except ValueError as error:
                self.log.warn(
                    "caps: TLS reload failed for {listener}, keeping the old certificate: {error}",
                    listener=tls.description,
                    error=error,
                )
            else:
                self.log.info(
                    "caps: TLS certificate reloaded for {listener}", listener=tls.description
                )

    def listen_for_metrics(self, listener: TcpListener, site: Site) -> IListeningPort:
        """Serve C{site} on C{listener}; it is closed with the other listeners."""
        port = _synchronous_result(stream_endpoint(listener, self._reactor).listen(site))
        self._opened("metrics", port)
        return port

    def status(self) -> str:
        """What this process is doing, for the operator's status line (SIGUSR2)."""
        factory = self.stream_factory
        return f"{len(factory.connections)} TCP connections open, {factory.accepted} accepted"

    def counters(self) -> Snapshot:
        """A snapshot of this process's counters (see L{twisted_caps.serving.metrics})."""
        return snapshot(self.stream_factory, tuple(self.datagram_protocols))

    def _listen(self) -> None:
        before, after = raise_open_files_limit()
        if after != before:
            self.log.info(
                "caps: open files limit raised from {before} to {after}", before=before, after=after
            )
        for _ in range(SHARED_PORT_ATTEMPTS):
            try:
                self._listen_once()
                return
            except _SharedPortTakenError as taken:
                self.log.info("caps: {taken}; trying another free port", taken=taken)
                self._close_ports()
            except ListenError:
                self._close_ports()
                raise
            except Exception as error:
                self._close_ports()
                raise ListenError(f"caps: {error}") from error
        raise ListenError(
            f"caps: no free port for TCP and UDP alike in {SHARED_PORT_ATTEMPTS} attempts"
        )

    def _listen_once(self) -> None:
        """
        Open every listener. The first one asked for port 0 gets a free port
        from the kernel and every other one asked for 0 is bound to that same
        port when it can, so that C{--port 0} means one port for TCP and UDP
        (see L{_open_sharing}).
        """
        shared = _SharedPort()
        for inherited in self.inherited:
            self._adopt(inherited)
        for tcp in self.config.tcp:
            wants_zero = endpoint_strings.requested_port(tcp.description) == 0
            self._open_sharing("TCP", wants_zero, shared, partial(self._listen_tcp, tcp))
        if self.config.metrics is not None:
            site = metrics_site(lambda: [(None, self.counters())])
            with _opening(f"metrics {self.config.metrics.description}", False):
                self.metrics_port = self.listen_for_metrics(self.config.metrics, site)
        for udp in self.config.udp:
            self._open_sharing("UDP", udp.port == 0, shared, partial(self._listen_udp, udp))

    def _open_sharing(
        self,
        kind: str,
        wants_zero: bool,
        shared: "_SharedPort",
        open_on: Callable[[int | None], IListeningPort],
    ) -> None:
        """
        Open a listener with C{open_on(number)} (C{None}: as configured).

        One asked for port 0 takes the shared port if there is one yet, else
        it makes its own port the shared one. If the shared port is taken for
        its kind by the daemon's own listener (two TCP listeners on one
        address), it gets a free port of its own; if it is taken by another
        program, L{_SharedPortTakenError} has every listener try another port.
        """
        if wants_zero and shared.number is not None:
            try:
                port = open_on(shared.number)
            except _SharedPortTakenError:
                if kind not in shared.kinds:
                    raise
                port = open_on(None)
        else:
            port = open_on(None)
        if wants_zero:
            number = port.getHost().port  # type: ignore[attr-defined]
            if shared.number is None:
                shared.number = number
            if number == shared.number:
                shared.kinds.add(kind)
        self._opened(kind, port)

    def _listen_tcp(self, listener: TcpListener, number: int | None) -> IListeningPort:
        """Listen on C{listener}, on port C{number} instead of its own if given."""
        if number is not None:
            listener = TcpListener(endpoint_strings.with_port(listener.description, number))
        with _opening(f"TCP {listener.description}", number is not None):
            port = _synchronous_result(
                stream_endpoint(listener, self._reactor).listen(self.stream_factory)
            )
        summarize_accept_errors(port, self.stream_factory.count_lack_of_files, self._reactor)
        self._read_eagerly(port)
        return port

    def _read_eagerly(self, port: IListeningPort) -> None:
        """
        Read a TCP listener's connections as they are accepted; compact
        ones (L{CompactCapsConnection}) where the port serves the stream
        factory itself (no TLS or PROXY wrapper) and C{--once} is off.
        """
        factory = self.stream_factory
        plain = getattr(port, "factory", None) is factory and not factory.once
        use_eager_reads(port, CompactCapsConnection if plain else None)

    def _listen_udp(self, listener: UdpListener, number: int | None) -> IListeningPort:
        """Listen on C{listener}, on port C{number} instead of its own if given."""
        port_number = listener.port if number is None else number
        protocol = CapsDatagramProtocol(self._reactor, self.datagram_rate_limit)
        with _opening(f"UDP {UdpListener(listener.interface, port_number)}", number is not None):
            port: IListeningPort = self._reactor.listenUDP(
                port_number,
                protocol,
                interface=listener.interface,
                maxPacketSize=DATAGRAM_READ_SIZE,
            )
        self.datagram_protocols.append(protocol)
        return port

    def _close_ports(self) -> None:
        """Close every listener opened so far (start-up failed or is tried again)."""
        for port in self.ports:
            port.stopListening()
        self.ports = []
        self.metrics_port = None
        self.datagram_protocols = []

    def _adopt(self, inherited: InheritedSocket) -> None:
        """Serve on an inherited listening socket, then close the inherited descriptor."""
        fd, family = inherited.fd, inherited.family
        # The reactor expects a non-blocking socket: a blocking accept would hang it.
        os.set_blocking(fd, False)
        if inherited.kind == "TCP":
            port = adopt_shared_stream_port(self._reactor, fd, family, self.stream_factory)
            summarize_accept_errors(port, self.stream_factory.count_lack_of_files, self._reactor)
            self._read_eagerly(port)
        else:
            protocol = CapsDatagramProtocol(self._reactor, self.datagram_rate_limit)
            port = self._reactor.adoptDatagramPort(fd, family, protocol, DATAGRAM_READ_SIZE)
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
            # A reactor's listening ports are its read descriptors (public
            # interfaces: IReadDescriptor, IReactorFDSet); the socket itself
            # says what it is.
            descriptor = IReadDescriptor(port)
            self._reactor.removeReader(descriptor)
            fd = descriptor.fileno()
            with socket(fileno=os.dup(fd)) as listening:
                kind = "UDP" if listening.type == SOCK_DGRAM else "TCP"
                sockets.append(InheritedSocket(kind, fd, listening.family))
        return tuple(sockets)

    def _opened(self, kind: str, port: IListeningPort) -> None:
        self.ports.append(port)
        tls = _reloadable_tls(port) is not None
        self.log.info(
            "caps: serving {kind} on {address}" + (" with TLS" if tls else ""),
            kind=kind,
            address=_describe(port),
            tls=tls,
        )


def _reloadable_tls(port: IListeningPort) -> Any:
    """The reloadable TLS settings of C{port}, or None (also without pyOpenSSL)."""
    try:
        from twisted_caps._twisted.tls import reloadable_tls
    except ImportError:
        return None
    return reloadable_tls(port)


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
    if isinstance(address, IPv4Address | IPv6Address):
        return host_port(address.host, address.port)
    if isinstance(address, UNIXAddress) and address.name is not None:
        return os.fsdecode(address.name)
    return str(address)
