# -*- test-case-name: tests.test_testing -*-
"""
A caps server in memory, for fully deterministic tests: clients reach it
through a fake reactor, with no sockets and no real time, and the test says
when bytes move (L{MemoryCapsServer.flush}) and when time passes
(L{MemoryCapsServer.advance}). L{NetworkConditions} make the network split,
delay, drop and cut replies the way real networks do.
"""

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import partial
from itertools import count
from typing import Any, Literal

from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone, ConnectionRefusedError
from twisted.internet.interfaces import (
    IAddress,
    IConsumer,
    IHalfCloseableProtocol,
    IHostnameResolver,
    IHostResolution,
    IListeningPort,
    IProducer,
    IProtocol,
    IProtocolFactory,
    IPushProducer,
    IReactorPluggableNameResolver,
    IReactorUDP,
    IResolutionReceiver,
    ITCPTransport,
    IUDPTransport,
)
from twisted.internet.protocol import DatagramProtocol
from twisted.internet.testing import MemoryReactorClock
from twisted.python.failure import Failure
from zope.interface import implementer

from twisted_caps.serving.service import CapsService
from twisted_caps.testing.address import CapsAddress
from twisted_caps.testing.options import OptionValue, caps_config

HOST = "127.0.0.1"
#: Ports handed out for port 0, above the range loop protection refuses.
FIRST_MEMORY_PORT = 40000
#: A flush that is still moving data after this many steps is a livelock.
MAX_STEPS = 100_000

Address = tuple[str, int]
Kind = Literal["TCP", "UDP"]


@dataclass(frozen=True)
class NetworkConditions:
    """
    What the network does to the server's replies; the default is a perfect
    network that delivers every reply whole and at once.

    @ivar chunk_size: TCP replies arrive in pieces of at most this many bytes,
        each its own C{dataReceived}.
    @ivar delay: replies (TCP bytes and UDP datagrams) arrive this many
        seconds after the server sends them.
    @ivar close_after: the server's side closes each TCP connection after
        this many reply bytes have arrived, as a crashing server would.
    @ivar drop_datagrams: 0-based numbers of the datagrams sent to the server
        that are lost (C{(0,)}: the first request never arrives).
    @ivar drop_replies: 0-based numbers of the server's reply datagrams that
        are lost.
    """

    chunk_size: int | None = None
    delay: float = 0.0
    close_after: int | None = None
    drop_datagrams: tuple[int, ...] = ()
    drop_replies: tuple[int, ...] = ()


@implementer(ITCPTransport, IConsumer, IPushProducer)
class MemoryTransport:
    """
    One end of a L{MemoryConnection}: it keeps what its protocol writes until
    the connection moves it, and is what a TCP transport also is: a consumer
    (the caps protocol registers as its producer), a push producer (the caps
    protocol pauses its own transport) and half-closeable (the caps server
    half-closes when it shuts down or times a client out).

    It is built on Twisted's public interfaces only, so that the test kit
    works on every Twisted the project supports.
    """

    disconnecting = False
    disconnected = False
    write_closed = False

    def __init__(self, protocol: IProtocol, host: IPv4Address, peer: IPv4Address) -> None:
        self.protocol = protocol
        self.producer: IProducer | None = None
        self._host, self._peer = host, peer
        self._written: list[bytes] = []

    def write(self, data: bytes) -> None:
        """Queue C{data}; a closing transport drops it, as a closed socket would."""
        if not self.disconnecting:
            self._written.append(data)

    def writeSequence(self, data: Iterable[bytes]) -> None:
        self.write(b"".join(data))

    def take_written(self) -> bytes:
        """The bytes written since the last call, now on their way."""
        written, self._written = b"".join(self._written), []
        return written

    def loseConnection(self) -> None:
        self.disconnecting = True

    def abortConnection(self) -> None:
        self._written = []
        self.disconnecting = True

    def loseWriteConnection(self) -> None:
        self.write_closed = True

    def getPeer(self) -> IPv4Address:
        return self._peer

    def getHost(self) -> IPv4Address:
        return self._host

    def registerProducer(self, producer: IProducer, streaming: bool) -> None:
        self.producer = producer

    def unregisterProducer(self) -> None:
        self.producer = None

    def pauseProducing(self) -> None:
        """Reading is never paused: the test decides when bytes move."""

    def resumeProducing(self) -> None:
        """Reading is never paused: the test decides when bytes move."""

    def stopProducing(self) -> None:
        self.loseConnection()

    def getTcpNoDelay(self) -> bool:
        return True

    def setTcpNoDelay(self, enabled: bool) -> None:
        """There is no Nagle delay to switch off in memory."""

    def getTcpKeepAlive(self) -> bool:
        return False

    def setTcpKeepAlive(self, enabled: bool) -> None:
        """There are no keep-alive probes in memory."""


class MemoryConnection:
    """One TCP connection between a client protocol and a server protocol."""

    def __init__(
        self,
        network: "MemoryNetwork",
        client: IProtocol,
        server: IProtocol,
        client_address: Address,
        server_address: Address,
        lost: Callable[[Failure], object] | None = None,
    ) -> None:
        self.network = network
        self._lost = lost
        client_host = IPv4Address("TCP", *client_address)
        server_host = IPv4Address("TCP", *server_address)
        self.client_transport = MemoryTransport(client, client_host, server_host)
        self.server_transport = MemoryTransport(server, server_host, client_host)
        self.client, self.server = client, server
        #: Reply bytes that have reached the client so far.
        self.delivered = 0
        self.closed = False
        self._due: list[bytes] = []
        self._in_flight = 0
        self._half_closed = False
        self._eof_sent = False
        server.makeConnection(self.server_transport)
        client.makeConnection(self.client_transport)

    def pump(self) -> bool:
        """Move what is due one step; return whether anything moved."""
        if self.closed:
            return False
        moved = self._send_requests()
        reply = self.server_transport.take_written()
        if reply:
            moved = True
            self._in_flight += 1
            self.network.after_delay(self._arrive, reply)
        if self._due:
            self._deliver_reply()
            return True
        if self._in_flight == 0 and self.server_transport.disconnecting:
            self.close()
            return True
        if self._in_flight == 0 and self.server_transport.write_closed and not self._eof_sent:
            self._eof_sent = True
            self._half_close(self.client)
            return True
        if self.client_transport.disconnecting:
            self.close()
            return True
        return moved

    def close(self) -> None:
        """End the connection on both sides, as a clean TCP close does."""
        if self.closed:
            return
        self.closed = True
        for transport in (self.client_transport, self.server_transport):
            transport.disconnecting = transport.disconnected = True
            transport.protocol.connectionLost(Failure(ConnectionDone()))
        if self._lost is not None:
            self._lost(Failure(ConnectionDone()))

    def _send_requests(self) -> bool:
        request = self.client_transport.take_written()
        if request:
            self.server.dataReceived(request)
            return True
        if self.client_transport.write_closed and not self._half_closed:
            self._half_closed = True
            self._half_close(self.server)
            return True
        return False

    def _half_close(self, receiver: IProtocol) -> None:
        """The other side sent its last byte: tell C{receiver}, as TCP does."""
        half_closeable = IHalfCloseableProtocol(receiver, None)
        if half_closeable is None:
            self.close()
        else:
            half_closeable.readConnectionLost()

    def _arrive(self, reply: bytes) -> None:
        self._in_flight -= 1
        self._due.append(reply)

    def _deliver_reply(self) -> None:
        conditions = self.network.conditions
        piece = b"".join(self._due)
        if conditions.chunk_size is not None:
            piece = piece[: conditions.chunk_size]
        if conditions.close_after is not None:
            piece = piece[: max(conditions.close_after - self.delivered, 0)]
        rest = b"".join(self._due)[len(piece) :]
        self._due = [rest] if rest else []
        if piece:
            self.delivered += len(piece)
            self.client.dataReceived(piece)
        if conditions.close_after is not None and self.delivered >= conditions.close_after:
            self.close()


@implementer(IListeningPort, IUDPTransport)
class MemoryPort:
    """A listening TCP port or a bound UDP port of the memory network."""

    def __init__(self, network: "MemoryNetwork", kind: Kind, port: int, protocol: Any) -> None:
        self.network = network
        self.address = IPv4Address(kind, HOST, port)
        self.protocol = protocol
        #: UDP: a longer datagram is cut to this size, as a real port reads it.
        self.max_packet_size = 8192
        self._connected_to: Address | None = None

    def getHost(self) -> IPv4Address:
        return self.address

    def startListening(self) -> None:
        """Already listening: the network opened it."""

    def stopListening(self) -> None:
        self.network.close_port(self)

    def connect(self, host: str, port: int) -> None:
        """UDP: send to this address when C{write} names none."""
        self._connected_to = (host, port)

    def write(self, datagram: bytes, addr: Address | None = None) -> None:
        """UDP: send a datagram from this port."""
        destination = addr or self._connected_to
        if destination is None:
            raise ValueError("no destination for a datagram on an unconnected port")
        self.network.send_datagram((HOST, self.address.port), destination, datagram)

    def getBroadcastAllowed(self) -> bool:
        """No broadcast: the memory network has one host."""
        return False

    def setBroadcastAllowed(self, enabled: bool) -> None:
        """Broadcast cannot be allowed on the memory network."""


@implementer(IHostResolution)
@dataclass(frozen=True)
class MemoryResolution:
    """A name resolution of the memory network: complete before anyone could cancel it."""

    name: str

    def cancel(self) -> None:
        """Nothing to cancel: the answer came at once."""


@implementer(IHostnameResolver)
class MemoryResolver:
    """Every name resolves to C{127.0.0.1}, at once: the memory network has one host."""

    def resolveHostName(
        self,
        resolutionReceiver: IResolutionReceiver,
        hostName: str,
        portNumber: int = 0,
        addressTypes: Sequence[type[IAddress]] | None = None,
        transportSemantics: str = "TCP",
    ) -> IHostResolution:
        resolution = MemoryResolution(hostName)
        resolutionReceiver.resolutionBegan(resolution)
        resolutionReceiver.addressResolved(IPv4Address("TCP", HOST, portNumber))
        resolutionReceiver.resolutionComplete()
        return resolution


@implementer(IReactorUDP, IReactorPluggableNameResolver)
class MemoryNetwork(MemoryReactorClock):
    """
    A fake reactor (from C{twisted.internet.testing}) whose TCP connections
    and UDP datagrams reach its own listeners, under L{NetworkConditions}.
    Every address is C{127.0.0.1}; ports are numbers in this network only.
    """

    def __init__(self, conditions: NetworkConditions) -> None:
        super().__init__()
        self.nameResolver: IHostnameResolver = MemoryResolver()
        self.connections: list[MemoryConnection] = []
        #: Ports whose datagrams count as requests (to) and replies (from).
        self.server_udp_ports: set[int] = set()
        self._ports = count(FIRST_MEMORY_PORT)
        self._listening: dict[tuple[str, int], MemoryPort] = {}
        self._datagrams: list[tuple[Address, Address, bytes]] = []
        self.conditions = conditions

    def installNameResolver(self, resolver: IHostnameResolver) -> IHostnameResolver:
        """Resolve names with C{resolver} from now on; return the one it replaces."""
        replaced, self.nameResolver = self.nameResolver, resolver
        return replaced

    @property
    def conditions(self) -> NetworkConditions:
        """What the network does from now on; datagrams are counted anew."""
        return self._conditions

    @conditions.setter
    def conditions(self, conditions: NetworkConditions) -> None:
        self._conditions = conditions
        self._requests = self._replies = 0

    def listenTCP(
        self, port: int, factory: IProtocolFactory, backlog: int = 50, interface: str = ""
    ) -> MemoryPort:
        return self._open("TCP", port, factory)

    def listenUDP(
        self, port: int, protocol: DatagramProtocol, interface: str = "", maxPacketSize: int = 8192
    ) -> MemoryPort:
        bound = self._open("UDP", port, protocol)
        bound.max_packet_size = maxPacketSize
        protocol.makeConnection(bound)
        return bound

    def close_port(self, port: MemoryPort) -> None:
        """
        Stop listening on C{port}. A UDP protocol is told it stopped on the
        next step, as a real reactor does, not inside C{stopListening}.
        """
        key = (port.address.type, port.address.port)
        if self._listening.pop(key, None) is not None and port.address.type == "UDP":
            self.callLater(0, port.protocol.doStop)

    def connect_protocol(
        self, client: IProtocol, port: int, lost: Callable[[Failure], object] | None = None
    ) -> MemoryConnection:
        """
        Connect C{client} to the TCP listener on C{port} at once; C{lost} is
        called with the reason when the connection ends.
        """
        listener = self._listening.get(("TCP", port))
        if listener is None:
            raise ConnectionRefusedError(string=f"{HOST}:{port}")
        client_address = (HOST, next(self._ports))
        server = listener.protocol.buildProtocol(IPv4Address("TCP", *client_address))
        connection = MemoryConnection(self, client, server, client_address, (HOST, port), lost)
        self.connections.append(connection)
        return connection

    def after_delay(self, arrive: Callable[[bytes], None], data: bytes) -> None:
        """Call C{arrive(data)} after the network's delay (now, if none)."""
        if self.conditions.delay > 0:
            self.callLater(self.conditions.delay, arrive, data)
        else:
            arrive(data)

    def send_datagram(self, source: Address, destination: Address, datagram: bytes) -> None:
        """Queue a datagram, unless the conditions drop it."""
        if destination[1] in self.server_udp_ports:
            number, self._requests = self._requests, self._requests + 1
            if number in self.conditions.drop_datagrams:
                return
            self._datagrams.append((source, destination, datagram))
            return
        if source[1] in self.server_udp_ports:
            number, self._replies = self._replies, self._replies + 1
            if number in self.conditions.drop_replies:
                return
            self.after_delay(
                lambda data: self._datagrams.append((source, destination, data)), datagram
            )
            return
        self._datagrams.append((source, destination, datagram))

    def flush(self) -> None:
        """Move every byte and datagram that is due, until nothing moves."""
        for _ in range(MAX_STEPS):
            self.advance(0)
            moved = self._complete_connections()
            for connection in list(self.connections):
                moved = connection.pump() or moved
            self.connections = [c for c in self.connections if not c.closed]
            moved = self._deliver_datagrams() or moved
            if not moved:
                return
        raise RuntimeError(f"the network was still busy after {MAX_STEPS} steps")

    def pass_time(self, seconds: float) -> None:
        """Let C{seconds} pass, flushing at every timed call on the way."""
        end = self.seconds() + seconds
        self.flush()
        while True:
            due = [call.getTime() for call in self.getDelayedCalls() if call.getTime() <= end]
            if not due:
                break
            self.advance(max(min(due) - self.seconds(), 0))
            self.flush()
        self.advance(end - self.seconds())
        self.flush()

    def _open(self, kind: Kind, port: int, protocol: Any) -> MemoryPort:
        number = port or next(self._ports)
        if (kind, number) in self._listening:
            raise OSError(f"{HOST}:{number}: Address already in use")
        opened = MemoryPort(self, kind, number, protocol)
        self._listening[(kind, number)] = opened
        return opened

    def _complete_connections(self) -> bool:
        """
        Connect, or refuse, every C{connectTCP} made since the last step,
        telling the client factory as a real connector does.
        """
        pending, self.tcpClients = self.tcpClients, []
        connectors, self.connectors = self.connectors, []
        for (_, port, factory, _, _), connector in zip(pending, connectors, strict=True):
            client = factory.buildProtocol(None)
            if client is None:
                continue
            lost = partial(factory.clientConnectionLost, connector)
            try:
                self.connect_protocol(client, port, lost)
            except ConnectionRefusedError as refusal:
                factory.clientConnectionFailed(connector, Failure(refusal))
        return bool(pending)

    def _deliver_datagrams(self) -> bool:
        datagrams, self._datagrams = self._datagrams, []
        for source, destination, datagram in datagrams:
            receiver = self._listening.get(("UDP", destination[1]))
            if receiver is not None:
                # A real port reads at most maxPacketSize bytes; the kernel drops the rest.
                receiver.protocol.datagramReceived(datagram[: receiver.max_packet_size], source)
        return bool(datagrams)


@dataclass
class MemoryCapsServer(CapsAddress):
    """
    A caps server (the daemon's own service, with the daemon's options) in a
    L{MemoryNetwork}. Give C{reactor} to code that takes one, such as
    L{twisted_caps.client}, or connect a protocol with L{connect}; then
    L{flush} or L{advance} to move bytes.
    """

    reactor: MemoryNetwork
    service: CapsService

    @classmethod
    def start(
        cls,
        *argv: str,
        conditions: NetworkConditions | None = None,
        **options: OptionValue,
    ) -> "MemoryCapsServer":
        """Start a server with C{twistd caps} options (see L{caps_argv})."""
        network = MemoryNetwork(conditions or NetworkConditions())
        service = CapsService(caps_config(*argv, **options), network)
        service.startService()
        ports: dict[str, int] = {}
        for port in service.ports:
            address = port.getHost()
            if isinstance(address, IPv4Address):
                ports.setdefault(address.type, address.port)
        if "UDP" in ports:
            network.server_udp_ports.add(ports["UDP"])
        return cls(HOST, ports.get("TCP"), ports.get("UDP"), network, service)

    @property
    def conditions(self) -> NetworkConditions:
        """
        What the network does from now on; assign to change it mid-test
        (datagram numbers for drops count from the assignment).
        """
        return self.reactor.conditions

    @conditions.setter
    def conditions(self, conditions: NetworkConditions) -> None:
        self.reactor.conditions = conditions

    def connect(self, protocol: IProtocol) -> MemoryConnection:
        """Connect a client protocol to the server's TCP listener."""
        return self.reactor.connect_protocol(protocol, self.tcp_port)

    def flush(self) -> None:
        """Deliver everything that is due now; no time passes."""
        self.reactor.flush()

    def advance(self, seconds: float) -> None:
        """Let C{seconds} of fake time pass, delivering what falls due."""
        self.reactor.pass_time(seconds)

    def stop(self) -> None:
        """Close every connection and stop the service."""
        for connection in list(self.reactor.connections):
            connection.close()
        self.service.stopService()
        self.reactor.flush()
