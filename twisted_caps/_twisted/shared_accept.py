# -*- test-case-name: tests.test_shared_accept -*-
"""
Adopt a listening socket that several worker processes share, accepting
one connection each time it is readable.

Twisted's listening port accepts up to C{numberAccepts} connections per
wake-up, starting at 100 and growing while the queue stays full. In one
process that saves trips round the reactor. With workers sharing one
socket, whichever wakes first takes a whole burst in one loop, before the
others are even scheduled: 100 clients connecting at once went all to one
worker in most tries. Accepting one at a time shares a burst out, and a
busy worker, which comes back to C{epoll_wait} later, takes fewer.

This builds the port as C{IReactorSocket.adoptStreamPort} does, with
Twisted's private C{_fromListeningDescriptor}, from a subclass whose
C{numberAccepts} stays 1. The change to propose upstream: a way to cap
C{numberAccepts} for a port.
"""

from socket import AF_UNIX
from typing import Any

from twisted.internet import tcp, unix
from twisted.internet.interfaces import IListeningPort
from twisted.internet.protocol import Factory

#: Whether this Twisted has the private constructor the shared ports need.
ONE_ACCEPT_PER_WAKEUP = all(
    hasattr(port, "_fromListeningDescriptor") for port in (tcp.Port, unix.Port)
)


class _OneAcceptPerWakeup:
    """A C{tcp.Port} mix-in whose C{numberAccepts} is always 1."""

    @property
    def numberAccepts(self) -> int:
        """How many connections one wake-up accepts: one."""
        return 1

    @numberAccepts.setter
    def numberAccepts(self, adapted: int) -> None:
        """Twisted's adaptive count is ignored."""


class _SharedTCPPort(_OneAcceptPerWakeup, tcp.Port):
    """A TCP listening port shared with other processes."""


class _SharedUNIXPort(_OneAcceptPerWakeup, unix.Port):
    """A UNIX listening port shared with other processes."""


def adopt_shared_stream_port(
    reactor: Any, fd: int, family: int, factory: Factory
) -> IListeningPort:
    """
    Listen on the shared, non-blocking listening socket C{fd} of C{family}.

    On a Twisted without C{_fromListeningDescriptor}, the reactor's public
    C{adoptStreamPort} adopts it, accepting as many per wake-up as Twisted does.
    """
    if not ONE_ACCEPT_PER_WAKEUP:
        adopted: IListeningPort = reactor.adoptStreamPort(fd, family, factory)
        return adopted
    port: tcp.Port
    if family == AF_UNIX:
        port = _SharedUNIXPort._fromListeningDescriptor(reactor, fd, factory)
    else:
        port = _SharedTCPPort._fromListeningDescriptor(reactor, fd, family, factory)
    port.startListening()
    return port
