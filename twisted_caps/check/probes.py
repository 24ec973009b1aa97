# -*- test-case-name: tests.test_check -*-
"""
The checker's clients: a TCP connection and a UDP socket that record what
the server sends and how the exchange ended, and let a check wait, bounded
by its timeout, until enough has come.
"""

import socket
import struct
from collections.abc import Callable
from typing import Any, cast

from twisted.internet import defer, error
from twisted.internet.abstract import isIPv6Address
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP6ClientEndpoint, connectProtocol
from twisted.internet.interfaces import (
    IHalfCloseableProtocol,
    IPushProducer,
    ISystemHandle,
    ITCPTransport,
    IUDPTransport,
)
from twisted.internet.protocol import DatagramProtocol, Protocol, connectionDone
from twisted.internet.task import deferLater
from twisted.python.failure import Failure
from zope.interface import implementer

#: The largest UDP payload, so a reply is never cut short on our side.
LARGEST_DATAGRAM = 65535
#: Seconds a graceful close may take before the connection is aborted.
CLOSE_TIMEOUT = 1.0
#: Bytes a connection keeps before it stops reading: more than any check
#: waits for, so a server that floods cannot exhaust the checker's memory.
MAX_RECEIVED = 2 << 20
#: Datagrams a socket keeps; later ones are dropped, for the same reason.
MAX_DATAGRAMS = 64


class _Waiters:
    """Deferreds waiting for a condition on a probe, woken on every event."""

    def __init__(self, reactor: Any) -> None:
        self._reactor = reactor
        self._waiting: list[tuple[Callable[[], bool], Deferred[None]]] = []

    def wake(self) -> None:
        """Fire every waiter whose condition now holds."""
        ready = [waiter for condition, waiter in self._waiting if condition()]
        self._waiting = [entry for entry in self._waiting if entry[1] not in ready]
        # A woken check runs at once and may wait again: the list is settled first.
        for waiter in ready:
            waiter.callback(None)

    async def until(self, condition: Callable[[], bool], timeout: float) -> bool:
        """Wait until C{condition()} holds (True) or C{timeout} seconds pass (False)."""
        if condition():
            return True
        waiter: Deferred[None] = Deferred()
        self._waiting.append((condition, waiter))
        waiter.addTimeout(timeout, self._reactor)
        try:
            await waiter
        except defer.TimeoutError:
            return False
        finally:
            self._waiting = [entry for entry in self._waiting if entry[1] is not waiter]
        return True


@implementer(IHalfCloseableProtocol)
class StreamProbe(Protocol):
    """
    One TCP connection to the server under test. It keeps every byte
    received, notices the server's end of file without closing its own
    side, and tells a reset from a close.
    """

    transport: ITCPTransport

    def __init__(self, reactor: Any) -> None:
        self.received = bytearray()
        #: C{"closed"} after the server's end of file, C{"reset"} after a reset.
        self.ending: str | None = None
        self.lost = False
        self._waiters = _Waiters(reactor)

    def dataReceived(self, data: bytes) -> None:
        self.received += data
        if len(self.received) > MAX_RECEIVED:
            IPushProducer(self.transport).pauseProducing()
        self._waiters.wake()

    def readConnectionLost(self) -> None:
        self.ending = self.ending or "closed"
        self._waiters.wake()

    def writeConnectionLost(self) -> None:
        """Our side finished sending; nothing to do."""

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        if self.ending is None:
            self.ending = "closed" if reason.check(error.ConnectionDone) else "reset"
        self.lost = True
        self._waiters.wake()

    def _socket(self) -> socket.socket:
        return cast(socket.socket, ISystemHandle(self.transport).getHandle())

    def send(self, data: bytes) -> None:
        """Queue C{data}; Twisted sends it as the socket accepts it."""
        self.transport.write(data)

    def send_now(self, data: bytes) -> None:
        """
        Hand C{data} to the kernel at once, so it leaves before what
        follows; a connection the server already reset stays reset.
        """
        try:
            self._socket().sendall(data)
        except OSError:
            self.ending = self.ending or "reset"
            self._waiters.wake()

    def no_delay(self) -> None:
        """Send each write in its own segment (TCP_NODELAY)."""
        self.transport.setTcpNoDelay(True)

    def half_close(self) -> None:
        """Shut down our sending side (a FIN) once everything queued is sent."""
        self.transport.loseWriteConnection()

    async def read(self, count: int, timeout: float) -> None:
        """
        Wait until C{count} bytes have come, or the connection ended, or
        nothing new came for C{timeout} seconds.
        """
        while len(self.received) < count and self.ending is None:
            seen = len(self.received)

            def moved(seen: int = seen) -> bool:
                return len(self.received) != seen or self.ending is not None

            if not await self._waiters.until(moved, timeout):
                return

    async def until_ended(self, timeout: float) -> bool:
        """Wait for the server's end of file (or a reset); False after C{timeout} seconds."""
        return await self._waiters.until(lambda: self.ending is not None, timeout)

    async def until_something(self, timeout: float) -> None:
        """Wait until the server sends something or ends, or C{timeout} seconds pass."""
        await self._waiters.until(lambda: bool(self.received) or self.ending is not None, timeout)

    async def close(self) -> None:
        """Close gracefully and wait until the socket is gone (abort after a second)."""
        if self.lost:
            return
        self.transport.loseConnection()
        if not await self._waiters.until(lambda: self.lost, CLOSE_TIMEOUT):
            self.abort()

    def abort(self) -> None:
        """Close at once, without waiting."""
        if not self.lost:
            self.transport.abortConnection()

    async def reset(self) -> None:
        """Reset the connection (SO_LINGER 0: an RST, not a FIN) and wait until it is gone."""
        handle = self._socket()
        handle.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.transport.abortConnection()
        await self._waiters.until(lambda: self.lost, CLOSE_TIMEOUT)


async def connect_stream(reactor: Any, address: str, port: int, timeout: float) -> StreamProbe:
    """
    Connect a L{StreamProbe} to C{address} (an IP address) within C{timeout}
    seconds; raise C{ConnectionRefusedError}, C{TimeoutError} or another
    C{ConnectError}.
    """
    endpoint_type = TCP6ClientEndpoint if isIPv6Address(address) else TCP4ClientEndpoint
    endpoint = endpoint_type(reactor, address, port, timeout=timeout)
    probe = StreamProbe(reactor)
    connecting = connectProtocol(endpoint, probe)
    connecting.addTimeout(timeout, reactor)
    try:
        await connecting
    except defer.TimeoutError:
        raise error.TimeoutError(f"no connection within {timeout} s") from None
    return probe


class DatagramProbe(DatagramProtocol):
    """
    A UDP socket connected to the server under test: it keeps every
    datagram received and notices an ICMP port-unreachable (refused).
    """

    transport: IUDPTransport

    def __init__(self, reactor: Any, address: str, port: int) -> None:
        self.received: list[bytes] = []
        self.refused = False
        self._address = (address, port)
        self._listening = False
        self._waiters = _Waiters(reactor)

    def startProtocol(self) -> None:
        self._listening = True
        self.transport.connect(*self._address)

    def stopProtocol(self) -> None:
        # Twisted's epoll reactor stops a connected UDP port when the kernel
        # reports port-unreachable, instead of calling connectionRefused.
        if self._listening:
            self._listening = False
            self.refused = True
            self._waiters.wake()

    def connectionRefused(self) -> None:
        self.refused = True
        self._waiters.wake()

    def datagramReceived(self, datagram: bytes, addr: Any) -> None:
        if len(self.received) < MAX_DATAGRAMS:
            self.received.append(datagram)
            self._waiters.wake()

    def send(self, datagram: bytes) -> None:
        """Send one datagram to the server; a refusal shows in L{refused}."""
        try:
            self.transport.write(datagram, None)
        except error.ConnectionRefusedError:
            self.refused = True

    async def until_received(self, count: int, timeout: float) -> bool:
        """Wait until C{count} datagrams came (True), or a refusal or C{timeout} (False)."""
        await self._waiters.until(lambda: len(self.received) >= count or self.refused, timeout)
        return len(self.received) >= count

    def close(self) -> None:
        """Close the socket."""
        if self._listening:
            self._listening = False
            self.transport.stopListening()

    abort = close


def open_datagram(reactor: Any, address: str, port: int) -> DatagramProbe:
    """A L{DatagramProbe} on a fresh port, connected to C{address}:C{port}."""
    probe = DatagramProbe(reactor, address, port)
    interface = "::" if isIPv6Address(address) else ""
    reactor.listenUDP(0, probe, interface=interface, maxPacketSize=LARGEST_DATAGRAM)
    return probe


async def pause(reactor: Any, delay: float) -> None:
    """Let C{delay} seconds pass in the reactor."""
    await deferLater(reactor, delay, lambda: None)
