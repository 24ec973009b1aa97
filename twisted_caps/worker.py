# -*- test-case-name: tests.test_workers -*-
"""
One worker of C{twistd caps --workers N}: C{python -m twisted_caps.worker
SPEC}, started by L{twisted_caps.workers.WorkersService}, never by hand.

SPEC is JSON: the parent's pid, the service settings, and the listening
sockets inherited as descriptors. The worker adopts them, logs plain lines
to stdout (the parent stamps and relays them), and stops gracefully on
SIGTERM, on end of input on stdin (the parent is gone, however it died),
or, on Linux, when the kernel sends the parent-death signal.
"""

import ctypes
import json
import os
import signal
import sys
from dataclasses import asdict
from typing import Any

from twisted.internet.abstract import FileDescriptor
from twisted.internet.error import ConnectionDone
from twisted.internet.task import LoopingCall
from twisted.logger import globalLogBeginner
from twisted.python.failure import Failure

from twisted_caps.config import CapsConfig
from twisted_caps.logs import BatchedFileLogObserver, plain_text
from twisted_caps.service import CapsService, InheritedSocket

#: prctl(2) option: the signal the kernel sends this process when its parent dies.
PR_SET_PDEATHSIG = 1


def encode_spec(config: CapsConfig, sockets: tuple[InheritedSocket, ...], parent: int) -> str:
    """The worker's command-line argument: settings and inherited sockets as JSON."""
    settings = asdict(config)
    for listeners in ("tcp", "udp", "metrics", "workers"):
        settings.pop(listeners)
    # --max-connections bounds the whole service, so each worker gets its share.
    settings["max_connections"] = -(-config.max_connections // config.workers)
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


class ParentWatch(FileDescriptor):
    """
    Stop the reactor when stdin, a pipe the parent holds open and never
    writes to, reaches its end: the parent has exited, even by SIGKILL.
    """

    def __init__(self, reactor: Any) -> None:
        super().__init__(reactor)
        self._reactor = reactor

    def fileno(self) -> int:
        return 0

    def doRead(self) -> Failure | BaseException | None:
        if not os.read(0, 4096):
            return ConnectionDone()
        return None

    def connectionLost(self, reason: Failure) -> None:
        super().connectionLost(reason)
        if self._reactor.running:
            self._reactor.stop()


def die_with_parent(parent: int) -> None:
    """
    Ask Linux for SIGTERM when the parent dies (a backstop to L{ParentWatch});
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
    config, sockets, parent, reports = decode_spec(argv[1])
    die_with_parent(parent)
    from twisted.internet import reactor

    # Plain lines, written once per reactor turn, for the parent to stamp.
    plain_lines = BatchedFileLogObserver(sys.stdout, plain_text, reactor)
    globalLogBeginner.beginLoggingTo([plain_lines], redirectStandardIO=False)

    service = CapsService(config, reactor, sockets, fast_dispatch=True)
    service.startService()
    reactor.addSystemEventTrigger("before", "shutdown", service.stopService)
    if reports:
        LoopingCall(report_counters, service).start(COUNTERS_INTERVAL)
    ParentWatch(reactor).startReading()
    reactor.run()


if __name__ == "__main__":
    main(sys.argv)
