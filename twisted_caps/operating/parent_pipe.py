# -*- test-case-name: tests.test_parent_pipe,tests.test_worker_process,tests.test_testing -*-
"""
What a caps server run as a child process says to the process that started
it, and how it hears back: the child writes L{READY} on a line of its own
once it serves, and reads its parent's requests on standard input, a pipe
the parent holds open, one line each; the end of that input means the
parent has gone (even by SIGKILL), so the child stops. The workers of
C{--workers} and the test kit's server process both speak it.
"""

import contextlib
import os
from collections.abc import Callable
from typing import Any

from twisted.internet.abstract import FileDescriptor
from twisted.internet.error import ConnectionDone, ReactorNotRunning
from twisted.python.failure import Failure

#: The line a child writes once it serves every listener.
READY = "caps: ready"
#: The longest request line kept: a parent's requests are words.
MAX_REQUEST = 1024


class ParentPipe(FileDescriptor):
    """
    Read the parent's requests from standard input and hand each line,
    without its newline, to C{on_request}; stop the reactor at the end of
    input. A line longer than L{MAX_REQUEST} is no request: it is dropped.
    """

    def __init__(self, reactor: Any, on_request: Callable[[bytes], object]) -> None:
        super().__init__(reactor)
        self._reactor = reactor
        self._on_request = on_request
        self._pending = b""
        self._overlong = False

    def fileno(self) -> int:
        return 0

    def doRead(self) -> Failure | BaseException | None:
        data = os.read(0, 4096)
        if not data:
            return ConnectionDone()
        *lines, rest = (self._pending + data).split(b"\n")
        if lines and self._overlong:
            # The end of a line already found too long.
            lines, self._overlong = lines[1:], False
        if len(rest) > MAX_REQUEST:
            rest, self._overlong = b"", True
        self._pending = rest
        for line in lines:
            if len(line) <= MAX_REQUEST:
                self._on_request(line)
        return None

    def connectionLost(self, reason: Failure) -> None:
        super().connectionLost(reason)
        stop_reactor(self._reactor)


def stop_reactor(reactor: Any) -> None:
    """Stop C{reactor}, unless a signal or the parent already did."""
    with contextlib.suppress(ReactorNotRunning):
        reactor.stop()
