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

And every connection, every datagram, would wake every worker waiting in
C{epoll_wait} on the shared socket, all but one of them for nothing (an
C{accept} that fails with C{EAGAIN}, twice the system calls per
connection with two workers). Linux 4.5 and later wake only one waiter
for a descriptor registered with C{EPOLLEXCLUSIVE} (one or more, says
C{epoll_ctl(2)}; one in practice). Twisted's epoll reactor registers a
port's descriptor itself, with C{EPOLLIN} only, so L{wake_one_waiter}
registers it again, with the flag, in the reactor's private C{_poller};
any other reactor, or a kernel that refuses the flag, keeps the plain
registration. Twisted never modifies a reading port's registration (it
only deletes it when the port stops reading), which C{EPOLLEXCLUSIVE}
would refuse. The change to propose upstream: a way to ask the epoll
reactor for C{EPOLLEXCLUSIVE} on a descriptor (Twisted has no ticket for it).

Nothing the kernel queued is lost that way either: the queue belongs to
the socket, which stays open while any worker (or the parent) holds it; a
waiter is woken only if it is waiting, and one that starts waiting, or a
restarted worker registering the socket, finds a non-empty queue ready.
"""

import select
from socket import AF_UNIX
from typing import Any

from twisted.internet import tcp, unix
from twisted.internet.epollreactor import EPollReactor
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
    wake_one_waiter(reactor, port)
    return port


def wake_one_waiter(reactor: Any, port: Any) -> bool:
    """
    Register the reading C{port}'s descriptor in C{reactor} with
    C{EPOLLEXCLUSIVE}, so that a connection or datagram wakes one process
    waiting on the shared socket, not all; return whether it did.
    """
    exclusive = getattr(select, "EPOLLEXCLUSIVE", None)
    if exclusive is None or type(reactor) is not EPollReactor:
        return False
    if not all(hasattr(reactor, name) for name in ("_poller", "_reads", "_writes")):
        return False
    fd = port.fileno()
    if fd not in reactor._reads or fd in reactor._writes:
        return False
    poller = reactor._poller
    poller.unregister(fd)
    try:
        poller.register(fd, select.EPOLLIN | exclusive)
    except OSError:
        # Before Linux 4.5: EINVAL. Twisted's own registration again.
        poller.register(fd, select.EPOLLIN)
        return False
    return True
