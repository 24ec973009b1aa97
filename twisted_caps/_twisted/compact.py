# -*- test-case-name: tests.test_compact -*-
"""
Serve a short TCP connection as one small object the epoll reactor reads
directly, and hand it to a Twisted transport the moment it needs one.

A Twisted connection is a C{tcp.Server} and a protocol: building them,
registering them and closing them through Twisted's layers costs about
a hundred Python calls per connection, five times the system calls they
make. A connection of the course's traffic (a sentence, its answer, the
client's close) needs a read, a write and a close. So an L{EagerPort}
given a L{CompactConnection} subclass builds one of those for each IPv4
connection it accepts: it holds the accepted socket (Python's C{_socket}
type, no Python constructor; left blocking, so the subclass passes
C{MSG_DONTWAIT} to every C{recv} and C{send} until it makes the socket
non-blocking itself, which spares the connections that never need it an
C{ioctl}), registers it with the reactor itself (the
C{_poller}, C{_reads} and C{_selectables} C{addReader} would fill) and
closes it with C{close(2)} alone, taking it out of the reactor's tables
first. The subclass decides what its reads answer; when it meets
anything else (flow control, a graceful close), it calls L{hand_over},
which builds a L{LeanServer} on the same descriptor for a protocol and
gives it the registration: from then on the connection is Twisted's.

It reads the epoll reactor's C{_poller}, C{_reads} and C{_selectables},
and C{Port.sessionno}. A reactor that is not exactly Twisted's epoll
reactor gets Twisted's transports. The change to propose upstream: a
C{tcp.Port} that builds its transport (and its protocol's) only when a
connection outlives its first exchange.
"""

import socket
from select import EPOLLIN
from typing import Any

from twisted.internet import tcp
from twisted.internet.epollreactor import EPollReactor
from twisted.internet.interfaces import IProtocol
from twisted.python.failure import Failure

from twisted_caps._twisted.lean_server import LeanServer

#: Every L{CompactConnection} class: the dispatch reads them directly.
COMPACT: set[type] = set()


class CompactConnection:
    """
    An accepted IPv4 TCP connection read by the reactor without a transport.

    @ivar socket: the accepted socket; it is blocking, so its reads and
        writes must pass C{MSG_DONTWAIT}, until the subclass makes it
        non-blocking.
    @ivar fd: its descriptor (the port's accept has it already); -1 once
        closed or handed over.
    @ivar address: the client's C{(host, port)}.
    @ivar port: the listening port that accepted it.
    """

    __slots__ = ("address", "fd", "port", "socket")

    def __init_subclass__(cls) -> None:
        COMPACT.add(cls)

    def __init__(self, sock: Any, fd: int, address: tuple[str, int], port: tcp.Port) -> None:
        self.socket = sock
        self.fd = fd
        self.address = address
        self.port = port

    def fileno(self) -> int:
        """The descriptor the reactor polls."""
        return self.fd

    def logPrefix(self) -> str:
        """What the reactor logs this connection's errors under."""
        return self.__class__.__name__

    def read_first(self) -> None:
        """
        The port's first read, right after the accept; then, if the
        connection is still open and its own, have the reactor read it, as
        C{addReader} would.
        """
        if self.fd == -1:
            return
        self.doRead()
        fd = self.fd
        if fd != -1:
            reactor: Any = self.port.reactor
            reactor._poller.register(fd, EPOLLIN)
            reactor._reads.add(fd)
            reactor._selectables[fd] = self

    def doRead(self) -> None:
        """The reactor's read (subclasses answer it)."""
        raise NotImplementedError

    def connectionLost(self, reason: Failure) -> None:
        """The reactor ends the connection (it stops, or the socket failed)."""
        raise NotImplementedError

    def close_now(self) -> None:
        """
        Forget the connection in the reactor's tables and C{close(2)} it,
        which also takes it out of the epoll set. Once only.
        """
        fd = self.fd
        if fd == -1:
            return
        self.fd = -1
        reactor: Any = self.port.reactor
        selectables = reactor._selectables
        if selectables.get(fd) is self:
            del selectables[fd]
            reactor._reads.discard(fd)
        self.socket.close()

    def hand_over(self, protocol: IProtocol) -> LeanServer:
        """
        Give the connection to a L{LeanServer} speaking for C{protocol},
        registered for reading in this object's place; the caller connects
        the protocol to it. This object is done with afterwards.
        """
        fd, self.fd = self.fd, -1
        port: Any = self.port
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, 0, self.socket.detach())
        session = port.sessionno
        port.sessionno = session + 1
        transport = LeanServer(sock, protocol, self.address, port, session, port.reactor)
        # LeanServer's constructor registers a descriptor the reactor does
        # not read yet; one it reads already only changes hands.
        selectables = port.reactor._selectables
        if selectables.get(fd) is self:
            selectables[fd] = transport
        return transport


def compact_supported(port: Any) -> bool:
    """Whether C{port}'s connections can be compact: an IPv4 port on Twisted's epoll reactor."""
    if type(port.reactor) is not EPollReactor:
        return False
    if port.addressFamily != socket.AF_INET:
        return False
    return all(hasattr(port.reactor, name) for name in ("_poller", "_reads", "_selectables"))
