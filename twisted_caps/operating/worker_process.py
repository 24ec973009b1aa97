# -*- test-case-name: tests.test_worker_process -*-
"""
One worker of C{twistd caps --workers N}: C{python -m twisted_caps.operating.worker_process
SPEC}, started by L{twisted_caps.operating.supervisor.WorkersService}, never by hand.

SPEC is JSON: the parent's pid, the service settings, and the listening
sockets inherited as descriptors. The worker adopts them, logs plain lines
to stdout (the parent stamps and relays them) ending start-up with the
line L{twisted_caps.operating.parent_pipe.READY}, and stops gracefully on
SIGTERM (once: a repeated SIGTERM only logs), on end of input on stdin
(the parent is gone, however it died), or, on Linux, when the kernel sends
the parent-death signal.

When the parent writes L{RETIRE} to its stdin (a reload replaced it), the
worker closes its copies of the listening sockets (the parent and the other
workers keep them, and the kernel's queue, open), lets its open connections
finish by themselves for up to C{--shutdown-timeout} seconds, then closes
the rest as at shutdown and exits.

SIGHUP, SIGUSR1, SIGUSR2 and SIGINT are the parent's to handle (a terminal's
Ctrl-C reaches the whole process group): a worker ignores them.
"""

import ctypes
import json
import os
import re
import signal
import sys
from dataclasses import asdict
from typing import Any

from twisted.internet.task import LoopingCall
from twisted.logger import LogEvent, Logger, globalLogBeginner

from twisted_caps.operating.parent_pipe import READY, ParentPipe, stop_reactor
from twisted_caps.operating.signals import OperatorSignals
from twisted_caps.serving.config import CapsConfig
from twisted_caps.serving.logs import LOG_DELAY, BatchedFileLogObserver, plain_text
from twisted_caps.serving.service import CapsService, InheritedSocket

#: What the parent writes on a worker's stdin, as a line, to retire it.
RETIRE = b"retire"
#: Signals a worker leaves to its parent.
PARENT_SIGNALS = (signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2, signal.SIGINT)
#: Seconds between two looks at whether a retiring worker's connections are gone.
RETIRE_POLL = 0.05

#: prctl(2) option: the signal the kernel sends this process when its parent dies.
PR_SET_PDEATHSIG = 1
#: Twisted's lines about a listening port: in a worker they describe the
#: socket it shares with its parent and the other workers, as "CapsStreamFactory
#: starting on 1200" when it adopts it and "(TCP Port 1200 Closed)" when it
#: stops using it, though that socket stays open and served. The worker's
#: own lines ("serving", "retiring") and the parent's say it in caps' words.
SHARED_PORT_LINE = re.compile(r"\(\w+ Port \S+ Closed\)|\w+ starting on \S+")


def worker_line(event: LogEvent) -> str | None:
    """A worker's event as the plain line its parent stamps, or None for Twisted's port lines."""
    line = plain_text(event)
    if line is None or SHARED_PORT_LINE.fullmatch(line.rstrip("\n")):
        return None
    return line


def encode_spec(config: CapsConfig, sockets: tuple[InheritedSocket, ...], parent: int) -> str:
    """The worker's command-line argument: settings and inherited sockets as JSON."""
    settings = asdict(config.for_one_worker())
    for listeners in ("tcp", "udp", "metrics", "workers"):
        settings.pop(listeners)
    return json.dumps(
        {
            "parent": parent,
            "config": settings,
            "sockets": [asdict(s) for s in sockets],
            "report_counters": config.metrics is not None,
        }
    )


def decode_spec(spec: str) -> tuple[CapsConfig, tuple[InheritedSocket, ...], int, bool]:
    """The inverse of L{encode_spec}: config, sockets, parent pid, whether to report counters."""
    data = json.loads(spec)
    config = CapsConfig(tcp=(), udp=(), **data["config"])
    sockets = tuple(InheritedSocket(**socket) for socket in data["sockets"])
    return config, sockets, int(data["parent"]), bool(data["report_counters"])


#: A worker's stdout line that carries its counters to the parent, as JSON.
COUNTERS_PREFIX = b"caps-counters "
#: Seconds between two counter reports (a scrape sees counts this old at most).
COUNTERS_INTERVAL = 1.0


def report_counters(service: CapsService) -> None:
    """Write the service's counters to stdout for the parent's /metrics."""
    line = COUNTERS_PREFIX + json.dumps(service.counters()).encode() + b"\n"
    sys.stdout.buffer.write(line)
    sys.stdout.flush()


class Retirement:
    """
    A worker's retirement after a reload: stop accepting, wait until the
    open connections are gone or C{drain} seconds have passed, then stop
    the reactor (whose shutdown closes what is left gracefully).
    """

    log = Logger()

    def __init__(self, service: CapsService, reactor: Any, drain: float) -> None:
        self._service = service
        self._reactor = reactor
        self._drain = drain
        self._watch: LoopingCall | None = None
        self._deadline = 0.0

    def __call__(self) -> None:
        if self._watch is not None:
            return
        self.log.info(
            "caps: retiring: accepting no more; {count} open connections may finish"
            " within {drain}s",
            count=len(self._service.stream_factory.connections),
            drain=self._drain,
        )
        self._service.stop_accepting()
        self._deadline = self._reactor.seconds() + self._drain
        self._watch = LoopingCall(self._check)
        self._watch.clock = self._reactor
        self._watch.start(RETIRE_POLL)

    def _check(self) -> None:
        drained = not self._service.stream_factory.connections
        if drained or self._reactor.seconds() >= self._deadline:
            assert self._watch is not None
            self._watch.stop()
            stop_reactor(self._reactor)


def die_with_parent(parent: int) -> None:
    """
    Ask Linux for SIGTERM when the parent dies (a backstop to L{ParentPipe});
    if the parent died before the request, stop at once.
    """
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    except (OSError, AttributeError):
        pass  # not Linux: stdin's end of input still stops the worker
    if os.getppid() != parent:
        raise SystemExit(0)


def main(argv: list[str]) -> None:
    """Serve the inherited sockets until told to stop."""
    for signum in PARENT_SIGNALS:
        signal.signal(signum, signal.SIG_IGN)
    config, sockets, parent, reports = decode_spec(argv[1])
    die_with_parent(parent)
    from twisted.internet import reactor

    # Plain lines, written in batches, for the parent to stamp.
    plain_lines = BatchedFileLogObserver(sys.stdout, worker_line, reactor, LOG_DELAY)
    globalLogBeginner.beginLoggingTo([plain_lines], redirectStandardIO=False)
    OperatorSignals(reactor, {}, stop_signals=(signal.SIGTERM,)).install()
    service = CapsService(config, reactor, sockets, fast_dispatch=True)
    service.startService()
    reactor.addSystemEventTrigger("before", "shutdown", service.stopService)
    if reports:
        LoopingCall(report_counters, service).start(COUNTERS_INTERVAL)
    retire = Retirement(service, reactor, config.shutdown_timeout)

    def on_request(request: bytes) -> None:
        if request == RETIRE:
            retire()

    ParentPipe(reactor, on_request).startReading()
    Logger().info(READY)
    reactor.run()


if __name__ == "__main__":
    main(sys.argv)
