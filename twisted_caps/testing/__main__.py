# -*- test-case-name: tests.test_testing -*-
"""
C{python -m twisted_caps.testing [twistd caps options]}: the child process of
L{twisted_caps.testing.process}, on loopback and free ports by default.
"""

import os
import sys
import threading
from contextlib import suppress
from typing import Any

from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.error import ReactorNotRunning
from twisted.logger import globalLogBeginner, textFileLogObserver

from twisted_caps.service import CapsService, ListenError
from twisted_caps.testing.options import caps_config
from twisted_caps.testing.process import READY, serving_line


def main(argv: list[str]) -> None:
    """Serve until SIGTERM, SIGINT, or the end of standard input."""
    try:
        config = caps_config(*argv)
    except ValueError as refusal:
        print(refusal, flush=True)
        raise SystemExit(1) from None
    from twisted.internet import reactor

    globalLogBeginner.beginLoggingTo([textFileLogObserver(sys.stderr)], redirectStandardIO=False)
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
    threading.Thread(target=_stop_at_end_of_input, args=(reactor,), daemon=True).start()
    reactor.run()


def _stop_at_end_of_input(reactor: Any) -> None:
    """The test process closed our standard input, or died: stop serving."""
    # os.read, not sys.stdin: a thread blocked inside the buffered reader
    # holds its lock, and interpreter shutdown would then abort.
    while os.read(0, 65536):
        pass
    reactor.callFromThread(_stop, reactor)


def _stop(reactor: Any) -> None:
    """Stop the reactor, unless a signal already did."""
    with suppress(ReactorNotRunning):
        reactor.stop()


if __name__ == "__main__":
    main(sys.argv[1:])
