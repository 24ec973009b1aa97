# -*- test-case-name: tests.test_testing -*-
"""
C{python -m twisted_caps.testing [twistd caps options]}: the child process of
L{twisted_caps.testing.process}, on loopback and free ports by default.

Each line L{REPORT_REQUEST} on its standard input is answered on standard
output by one line, L{REPORT_PREFIX} and a JSON object: the connections
open now and those closed so far, with their close reasons (see
L{twisted_caps.testing.process.ServerReport}).
"""

import json
import sys
from functools import partial
from typing import Any

from twisted.internet.address import IPv4Address, IPv6Address
from twisted.logger import ILogObserver, LogEvent, globalLogBeginner, textFileLogObserver
from zope.interface import implementer

from twisted_caps.operating.parent_pipe import READY, ParentPipe
from twisted_caps.serving.service import CapsService, ListenError
from twisted_caps.testing.options import caps_config
from twisted_caps.testing.process import REPORT_PREFIX, REPORT_REQUEST, serving_line


def main(argv: list[str]) -> None:
    """Serve until SIGTERM, SIGINT, or the end of standard input."""
    try:
        config = caps_config(*argv)
    except ValueError as refusal:
        print(refusal, flush=True)
        raise SystemExit(1) from None
    from twisted.internet import reactor

    closed: list[dict[str, Any]] = []

    @implementer(ILogObserver)
    def keep_close_records(event: LogEvent) -> None:
        if "bytes_in" in event and "reason" in event:
            closed.append({key: event[key] for key in RECORD_FIELDS})

    observers: list[ILogObserver] = [textFileLogObserver(sys.stderr), keep_close_records]
    globalLogBeginner.beginLoggingTo(observers, redirectStandardIO=False)
    service = CapsService(config, reactor)
    try:
        service.startService()
    except ListenError as refusal:
        print(refusal, flush=True)
        raise SystemExit(1) from None
    for port in service.ports:
        address = port.getHost()
        if isinstance(address, IPv4Address | IPv6Address):
            print(serving_line(address.type, address.host, address.port))
    print(READY, flush=True)
    reactor.addSystemEventTrigger("before", "shutdown", service.stopService)
    answer = partial(_report, service, closed)

    def on_request(request: bytes) -> None:
        if request + b"\n" == REPORT_REQUEST:
            answer()

    ParentPipe(reactor, on_request).startReading()
    reactor.run()


#: The fields of a connection's record, as its close log line names them.
RECORD_FIELDS = ("peer", "duration", "bytes_in", "bytes_out", "reason")


def _report(service: CapsService, closed: list[dict[str, Any]]) -> None:
    """Print the connections open now and those closed so far, as one JSON line."""
    now = service.stream_factory.clock.seconds()
    still_open = [
        {
            "peer": protocol.peer or "local",
            "duration": now - protocol.opened_at,
            "bytes_in": protocol.bytes_in,
            "bytes_out": protocol.bytes_out,
            "reason": None,
        }
        for protocol in service.stream_factory.connections
    ]
    report = json.dumps({"open": still_open, "closed": closed})
    print(REPORT_PREFIX + report, flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
