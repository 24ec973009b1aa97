# -*- test-case-name: tests.test_accept_errors -*-
"""
Summarize what Twisted logs when a listening port cannot accept, which is
a line per client when the process runs out of file descriptors.

When C{accept} fails with C{EMFILE}, Twisted's C{tcp.Port} frees a
descriptor it keeps in reserve, accepts and closes every queued client so
that none waits in vain, and takes the reserve back (twisted/twisted#5368):
good, but it logs "EMFILE recovery: Closed socket from ..." for each of
those clients, plus two lines per episode, and "Could not accept new
connection (...)" on every wake-up for the other errors (C{ENFILE},
C{ENOBUFS}, C{ENOMEM}, C{EMFILE} with the reserve spent). Under a flood of
connections that is a line per attempt. Twisted gives an application no
hook into this (twisted/twisted#3958 asked for one for factories, and was
closed as a duplicate), so this module replaces a port's private
C{_logger}, the logger C{tcp.Port.doRead} buffers those events through,
with one whose observer counts them and logs one summary line a second per
kind; every other event passes through unchanged. A Twisted whose ports
have no C{_logger}, or that words those events otherwise, keeps its own
lines: nothing breaks, only the summary is lost. The change to propose
upstream: report accept errors to the factory.
"""

from collections.abc import Callable
from typing import Any

from twisted.internet.interfaces import IDelayedCall, IListeningPort, IReactorTime
from twisted.logger import ILogObserver, LogEvent, Logger
from zope.interface import implementer

from twisted_caps.core.limits import OPEN_FILES
from twisted_caps.core.log_throttle import LogThrottle

#: Twisted's per-client line after EMFILE: the client was accepted and closed.
CLOSED_FOR_LACK_OF_FILES = "EMFILE recovery: Closed socket from {address}"
#: Twisted's lines around each EMFILE episode, which say nothing more.
EPISODE_LINES = (
    "EMFILE encountered; releasing reserved file descriptor.",
    "Re-reserving EMFILE recovery file descriptor.",
)
#: Twisted's line when accept fails and the client is left in the queue.
COULD_NOT_ACCEPT = "Could not accept new connection ({acceptError})"


@implementer(ILogObserver)
class AcceptErrorSummary:
    """
    Observe a listening port's accept events: report each client closed for
    lack of descriptors to C{count_refusal}, log
    refusals and failed accepts at most once a second each, and pass every
    other event on to C{forward}.

    The first refusal is logged at once; those that follow within a second
    are summed up in one line a second later, and so on while they last, so
    the log accounts for every refused client in at most a line a second.
    """

    log = Logger()

    def __init__(
        self,
        count_refusal: Callable[[], None],
        clock: IReactorTime,
        forward: Any,
        interval: float = 1.0,
    ) -> None:
        self._count_refusal = count_refusal
        self._clock = clock
        self._forward = forward
        self._interval = interval
        self._failures = LogThrottle(clock, interval)
        self._held = 0
        self._last_peer = ""
        self._report: IDelayedCall | None = None

    def __call__(self, event: LogEvent) -> None:
        text = event.get("log_format")
        if text == CLOSED_FOR_LACK_OF_FILES:
            self._refused(_host(event.get("address")))
        elif text == COULD_NOT_ACCEPT:
            self._failures.warn(
                self.log,
                "caps: could not accept a connection: {error}"
                " (left queued; {suppressed} similar not logged)",
                error=event.get("acceptError"),
            )
        elif text not in EPISODE_LINES:
            self._forward(event)

    def _refused(self, peer: str) -> None:
        self._count_refusal()
        if self._report is not None:
            self._held += 1
            self._last_peer = peer
            return
        self.log.warn(
            "caps: refused a connection from {peer}: {limit} reached"
            " (the process has no file descriptor left)",
            peer=peer,
            limit=OPEN_FILES,
        )
        self._report = self._clock.callLater(self._interval, self._report_held)

    def _report_held(self) -> None:
        """Log how many refusals came since the last line; keep reporting while they do."""
        self._report = None
        if not self._held:
            return
        self.log.warn(
            "caps: refused {count} more connections in {interval:g}s, the last from {peer}:"
            " {limit} reached",
            count=self._held,
            interval=self._interval,
            peer=self._last_peer,
            limit=OPEN_FILES,
        )
        self._held = 0
        self._report = self._clock.callLater(self._interval, self._report_held)


def summarize_accept_errors(
    port: IListeningPort, count_refusal: Callable[[], None], clock: IReactorTime
) -> None:
    """
    Have C{port} (a C{tcp.Port} or C{unix.Port}, as the reactor and the
    endpoints build them) report its accept errors through an
    L{AcceptErrorSummary}, calling C{count_refusal} once per client closed
    for lack of descriptors; any other port is left alone.
    """
    twisted_logger = getattr(port, "_logger", None)
    if not isinstance(twisted_logger, Logger):
        return
    summary = AcceptErrorSummary(count_refusal, clock, twisted_logger.observer)
    port._logger = Logger(  # type: ignore[attr-defined]
        namespace=twisted_logger.namespace, source=port, observer=summary
    )


def _host(address: object) -> str:
    """The client's host in Twisted's event: an (host, port, ...) tuple, or local."""
    if isinstance(address, tuple) and address and isinstance(address[0], str):
        return address[0]
    return "local"
