# -*- test-case-name: tests.test_shared_accept,tests.test_supervisor,tests.test_reload -*-
"""
Adopt a listening socket that several worker processes share, so that a
connection wakes one of the workers waiting on it, not all of them.

Every connection, every datagram, would wake every worker waiting in
C{epoll_wait} on the shared socket, all but one of them for nothing (an
C{accept} that fails with C{EAGAIN}, twice the system calls per
connection with two workers). Linux 4.5 and later wake only one waiter
for a descriptor registered with C{EPOLLEXCLUSIVE} (one or more, says
C{epoll_ctl(2)}; one in practice), and pass the wake-up on to another
waiter when that one is busy. Twisted's epoll reactor registers a port's
descriptor itself, with C{EPOLLIN} only, so L{wake_one_waiter} registers
it again, with the flag, in the reactor's private C{_poller}; any other
reactor, or a kernel that refuses the flag, keeps the plain registration.
Twisted never modifies a reading port's registration (it only deletes it
when the port stops reading), which C{EPOLLEXCLUSIVE} would refuse. The
change to propose upstream: a way to ask the epoll reactor for
C{EPOLLEXCLUSIVE} on a descriptor (Twisted has no ticket for it).

A shared C{unix:} socket is adopted as a L{SharedUNIXPort}: Twisted's
C{unix.Port}, adopting a descriptor, sets the socket file to mode 0666
when it starts listening and removes the file when it stops, so the first
worker a reload retired took the path away from every process still
serving it (the next worker could not start: no such file), and at
shutdown the workers and the parent raced to remove it (the loser left
C{PATH.lock} behind); and it shuts the socket down when it stops, which
ends it for every process sharing it. The file belongs to the process that bound it,
which removes it, and its lock, when it stops for good. The change to
propose upstream: C{adoptStreamPort} leaving an adopted socket's file
alone (Twisted has no ticket for it either).

A woken worker accepts as Twisted's port always does, up to 100
connections (more, adaptively) per wake-up: one trip round the reactor
per connection instead costs a worker a third of its connection rate
(see docs/limits.md for what that means for a burst). Nothing the kernel
queued is lost either way: the queue belongs to the socket, which stays
open while any worker (or the parent) holds it; a waiter is woken only if
it is waiting, and one that starts waiting, or a restarted worker
registering the socket, finds a non-empty queue ready.
"""

import contextlib
import os
import select
import socket
import stat
from typing import Any

from twisted.internet import tcp, unix
from twisted.internet.epollreactor import EPollReactor
from twisted.internet.interfaces import IListeningPort
from twisted.internet.protocol import Factory
from twisted.python.failure import Failure


class SharedUNIXPort(unix.Port):
    """
    A listening C{unix:} socket adopted from the process that bound it: its
    file keeps the mode and the life that process gave it.
    """

    #: Close without C{shutdown}: shutting a shared listening socket down
    #: ends it for every process holding it (clients get ECONNREFUSED).
    #: Twisted's C{tcp.Port} spares an adopted socket so; C{unix.Port} does not.
    _shouldShutdown = False

    def startListening(self) -> None:
        """Listen, leaving the file's mode as it is (Twisted sets its own, 0666)."""
        # Twisted 24.7 keeps the path in port, later ones in _bindPath.
        path = getattr(self, "_bindPath", self.port)
        # A file gone: Twisted's chmod says so, as a failure to listen.
        with contextlib.suppress(OSError):
            self.mode = stat.S_IMODE(os.stat(path).st_mode)
        super().startListening()

    def connectionLost(self, reason: Failure) -> None:
        """Close this process's copy; the file and its lock are the binder's to remove."""
        tcp.Port.connectionLost(self, reason)


def adopt_shared_stream_port(
    reactor: Any, fd: int, family: int, factory: Factory
) -> IListeningPort:
    """
    Listen on the shared, non-blocking listening socket C{fd} of C{family}
    (the reactor's public C{adoptStreamPort}, a L{SharedUNIXPort} for
    C{AF_UNIX}), waking one waiter per connection.
    """
    port: IListeningPort
    if family == socket.AF_UNIX:
        port = SharedUNIXPort._fromListeningDescriptor(reactor, fd, factory)
        port.startListening()
    else:
        port = reactor.adoptStreamPort(fd, family, factory)
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
