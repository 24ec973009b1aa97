# -*- test-case-name: tests.test_dispatch -*-
"""
Dispatch the read events of TCP connections and listening ports without
Twisted's log-context wrappers.

For every event, the epoll reactor calls C{log.callWithLogger}, which asks
the transport for its log prefix and pushes it on the legacy logging
context (four nested calls and a dict copy) so that an old-style
C{log.msg} made while handling the event is tagged with it. That costs
1.4 microseconds per event here, a seventh of caps' whole cost per message
on request/response. New-style C{twisted.logger} events, which is all caps
emits, never read that context.

So, for the commonest events, a plain read on a C{tcp.Server}, a compact
connection (L{twisted_caps._twisted.compact}) or a
C{tcp.Port} (a connection to accept), this calls C{doRead} (and, when the
read ends the connection,
L{disconnect_after_read<twisted_caps._twisted.lean_server.disconnect_after_read>},
the reactor's disconnect, which runs the protocol's C{readConnectionLost}
or C{connectionLost}) directly and enters the context only if one raises,
to log the error with the transport's prefix as Twisted does. Every other
event (writes, hang-ups, errors, other transports) goes through the
reactor's own path. It replaces C{doIteration} on one
C{EPollReactor} instance, reads the reactor's private C{_poller} and
C{_selectables}, and is undone by the function L{install} returns. The
change to propose upstream: set the log context only when handling an
event fails.
"""

from collections.abc import Callable
from select import EPOLLIN
from types import MethodType
from typing import Any

from twisted.internet import tcp
from twisted.internet.epollreactor import EPollReactor
from twisted.python import log

from twisted_caps._twisted.compact import COMPACT
from twisted_caps._twisted.eager_read import EagerPort
from twisted_caps._twisted.immediate import SERVERS
from twisted_caps._twisted.lean_server import disconnect_after_read

#: The classes whose plain reads skip the context.
_FAST = (*SERVERS, tcp.Port, EagerPort)
#: The reactor's private parts this reads; a Twisted without them is left alone.
_USED = ("_poller", "_selectables", "_doReadOrWrite", "_disconnectSelectable")


def install(reactor: object) -> Callable[[], None] | None:
    """
    Use the fast read dispatch on C{reactor} if it is exactly Twisted's epoll
    reactor, as this module knows it, and nothing has replaced its
    C{doIteration} yet; return the function that restores the reactor's own,
    or None if it was left alone.
    """
    if type(reactor) is not EPollReactor or "doIteration" in vars(reactor):
        return None
    if not all(hasattr(reactor, name) for name in _USED):
        return None
    poll = MethodType(_poll, reactor)
    reactor.doIteration = poll  # type: ignore[method-assign]

    def uninstall() -> None:
        if vars(reactor).get("doIteration") is poll:
            del reactor.doIteration

    return uninstall


def _poll(reactor: Any, timeout: float | None) -> None:
    """C{EPollReactor.doPoll}, reading TCP connections and ports without the log context."""
    events = reactor._poller.poll(-1 if timeout is None else timeout, len(reactor._selectables))
    selectables = reactor._selectables
    dispatch = reactor._doReadOrWrite
    for fd, event in events:
        selectable = selectables.get(fd)
        if selectable is None:
            continue
        kind = selectable.__class__
        # A compact connection's read handles its own end (and one closed
        # earlier in this batch reads nothing): no fileno() check needed.
        if event != EPOLLIN or not (
            kind in COMPACT or (kind in _FAST and selectable.fileno() != -1)
        ):
            log.callWithLogger(selectable, dispatch, selectable, fd, event)
            continue
        why: object
        from_read = True
        try:
            why = selectable.doRead()
        except BaseException as error:
            why, from_read = error, False
            log.callWithLogger(selectable, log.err)
        if why:
            # Closing runs protocol code too: the context only if it fails.
            disconnect_after_read(reactor, selectable, why, from_read)
