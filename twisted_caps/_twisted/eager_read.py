# -*- test-case-name: tests.test_eager_read -*-
"""
Accept a TCP connection when its first bytes arrive, and read them at once,
before the connection is registered with the reactor.

Twisted accepts a connection when the handshake completes, registers it
with epoll (an C{epoll_ctl}), and reads it when C{epoll_wait} says its
first bytes have come: a trip round the reactor per connection. With
C{TCP_DEFER_ACCEPT} on the listening socket (Linux; nginx's C{deferred}),
the kernel queues the connection for C{accept} only once data (or a FIN)
has arrived, or L{DEFER_ACCEPT_SECONDS} after the handshake if none has.
So when L{EagerPort} has accepted, it reads each new connection once,
through the transport's own C{doRead}, which hands the bytes to its
protocol (TLS and PROXY-protocol wrappers included, as the reactor's read
would), and registers it only if it is still open and reading. A
connection closed during that read (C{--once}, a client that connected
and closed) is never registered at all; one whose client has sent nothing
yet reads nothing (C{EAGAIN}) and is registered as any other.

The port accepts as Twisted's C{doRead} does (its limit on accepts per
wake-up, the transport it builds), through the socket's own C{_accept}
instead of Python's C{socket.accept} (12 calls a connection fewer), and
hands any error but an empty queue to Twisted's C{doRead} (its recovery
when descriptors run out, its log lines for errors that persist). It has L{EagerServer}s built:
their constructor queues them on the port instead of registering. A
protocol that stops reading before that first read (in
C{connectionMade}, or while the read's replies wait) is neither read nor
registered, as it asked. What goes wrong in the read is handled as the
reactor does: logged, then the reactor's C{_disconnectSelectable}, which
this reads, as it reads C{tcp.Port._buildAddr} (the address given to
C{buildProtocol}) and Python's C{socket._accept}. On a reactor
without it, or where the option is refused, the port is left to
L{use_lean_server}'s lean transport. The change to propose upstream: a
C{deferAccept} option on C{listenTCP}, and C{tcp.Port} reading a
connection it accepts once before registering it.
"""

import socket
from _socket import socket as c_socket
from typing import Any, Protocol

from twisted.internet import tcp
from twisted.python import log

from twisted_caps._twisted.compact import CompactConnection, compact_supported
from twisted_caps._twisted.lean_server import LeanServer, disconnect_after_read, use_lean_server

#: Seconds the kernel holds a connection that has sent nothing before
#: queueing it for accept all the same: the time a silent client (an
#: interactive one, a port scan) waits before it counts against the limits.
DEFER_ACCEPT_SECONDS = 1


class FirstRead(Protocol):
    """A connection accepted and waiting for its first read."""

    def read_first(self) -> None:
        """Read once, then have the reactor read it if it is still open."""


class EagerServer(LeanServer):
    """A L{LeanServer} registered with the reactor after its first read, if still wanted."""

    server: "EagerPort"

    def start_reading_when_accepted(self) -> None:
        """Wait for the port's first read instead of registering now."""
        self.server.accepted_now.append(self)
        self.server.unregistered.add(self)

    def stopReading(self) -> None:
        """Stop reading; a connection not registered yet never will be by its first read."""
        self.server.unregistered.discard(self)
        super().stopReading()

    def read_first(self) -> None:
        """
        Read once, as the reactor would on an event, then register for
        more if the connection is still open and its protocol still reads.
        """
        unregistered = self.server.unregistered
        if self not in unregistered:
            return
        why: object
        from_read = True
        try:
            why = self.doRead()
        except BaseException as error:
            why, from_read = error, False
            log.callWithLogger(self, log.err)
        if why:
            unregistered.discard(self)
            disconnect_after_read(self.reactor, self, why, from_read)
            return
        if self in unregistered:
            unregistered.discard(self)
            self.startReading()


class EagerPort(tcp.Port):
    """
    A C{tcp.Port} that reads the connections it has just accepted once
    each before they are registered.

    @ivar accepted_now: the connections of the current accepting turn.
    @ivar unregistered: connections accepted and neither registered nor
        stopped by their protocol yet.
    @ivar compact: the L{CompactConnection} class IPv4 connections are
        accepted as, or None for Twisted's transport and protocol.
    """

    accepted_now: list[FirstRead]
    unregistered: set[EagerServer]
    compact: type[CompactConnection] | None = None

    def doRead(self) -> None:
        """Accept what is queued, then read each connection accepted once."""
        try:
            self.accept_queued()
        except BaseException:
            # As Twisted's accepting does: log, and wait for the next event.
            log.deferr()
        accepted, self.accepted_now = self.accepted_now, []
        for transport in accepted:
            transport.read_first()

    def accept_queued(self) -> None:
        """
        Twisted's accepting, through the socket's own C{_accept}: Python's
        C{socket.accept} costs 12 calls a connection (its family and type
        made enums, its default timeout looked up). Any error but an empty
        queue goes to Twisted's C{doRead}, which accepts again: an error
        that persists (out of descriptors, of memory) it meets, recovers
        from and logs as it always has; one that does not (a client that
        reset before its accept) goes unlogged, where Twisted logs a line.
        Builds the transports as Twisted's does; as there, how many a
        wake-up accepts grows by 20 while the queue outlasts it.
        """
        listener: Any = self.socket
        limit = self.numberAccepts
        compact = self.compact
        accepted = 0
        while accepted < limit:
            try:
                fd, address = listener._accept()
            except BlockingIOError:
                break
            except OSError:
                tcp.Port.doRead(self)
                return
            accepted += 1
            if compact is not None:
                # Python's own socket type: no Python constructor to run.
                client = c_socket(socket.AF_INET, socket.SOCK_STREAM, 0, fd)
                self.accepted_now.append(compact(client, fd, address, self))
                continue
            self.serve(socket.socket(self.addressFamily, self.socketType, 0, fd), address)
        self.numberAccepts = limit + 20 if accepted == limit else max(1, accepted)

    def serve(self, client: socket.socket, address: Any) -> None:
        """Build a connection's protocol and transport, as C{tcp.Port.doRead} does."""
        if len(address) == 4:
            # IPv6: the scope ID in the host, as Twisted does.
            host = socket.getnameinfo(address, socket.NI_NUMERICHOST | socket.NI_NUMERICSERV)
            address = (host[0], *address[1:])
        factory: Any = self.factory
        protocol = factory.buildProtocol(self._buildAddr(address))
        if protocol is None:
            client.close()
            return
        session = self.sessionno
        self.sessionno = session + 1
        transport = self.transport(client, protocol, address, self, session, self.reactor)
        protocol.makeConnection(transport)


def use_eager_reads(port: Any, compact: type[CompactConnection] | None = None) -> bool:
    """
    Make a listening C{tcp.Port} build lean transports (L{use_lean_server})
    and, where the kernel defers accepts and the reactor is Twisted's
    posix reactor as this module knows it, read each new connection once
    before registering it; return whether it does the latter. With
    C{compact}, an IPv4 port on Twisted's epoll reactor accepts its
    connections as that L{CompactConnection} class instead.
    """
    if not use_lean_server(port):
        return False
    if not hasattr(port.reactor, "_disconnectSelectable"):
        return False
    defer_accept = getattr(socket, "TCP_DEFER_ACCEPT", None)
    if defer_accept is None:
        return False
    try:
        port.socket.setsockopt(socket.IPPROTO_TCP, defer_accept, DEFER_ACCEPT_SECONDS)
    except OSError:
        return False
    port.accepted_now = []
    port.unregistered = set()
    port.transport = EagerServer
    port.__class__ = EagerPort
    if compact is not None and compact_supported(port):
        port.compact = compact
    return True
