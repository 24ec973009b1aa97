# -*- test-case-name: tests.test_testing -*-
"""
A caps server in a child process, for tests whose body blocks (a blocking
socket client, a subprocess) and so cannot let this process's reactor run.

The child is C{python -m twisted_caps.testing [twistd caps options]}: it
listens on loopback and free ports, prints one C{caps: serving KIND on
HOST:PORT} line per listener and then C{caps: ready}, and stops on SIGTERM
or when its standard input closes (so it never outlives the test process).

What the server saw of the clients is there to assert on:
L{CapsServerProcess.report} gives the connections open now and those
closed so far with their close reasons; L{CapsServerProcess.assert_all_closed}
fails, naming them, while the client under test left connections open;
and L{CapsServerProcess.stop} keeps, in C{left_open}, the connections the
client had not closed when the server was stopped (each of which made the
stop wait up to the server's C{--shutdown-timeout}).
"""

import contextlib
import json
import os
import re
import select
import subprocess
import sys
import time
from dataclasses import dataclass, field

from twisted_caps.core.addresses import host_port
from twisted_caps.operating.parent_pipe import READY
from twisted_caps.testing.address import CapsAddress
from twisted_caps.testing.options import OptionValue, option_words

#: The line that asks the child for a report, and the prefix of its answer.
REPORT_REQUEST = b"report\n"
REPORT_PREFIX = "caps-report "
#: Seconds a report may take to come back.
REPORT_TIMEOUT = 10.0
#: Seconds a child may take to listen; generous for a loaded CI machine.
STARTUP_TIMEOUT = 30.0
SERVING = re.compile(r"caps: serving (TCP|UDP) on (?:\[([^\]]+)\]|([^:\s]+)):(\d+)")


def serving_line(kind: str, host: str, port: int) -> str:
    """The line the child prints for a listener (IPv6 hosts in brackets)."""
    return f"caps: serving {kind} on {host_port(host, port)}"


class ConnectionsLeftOpenWarning(UserWarning):
    """
    The client under test left connections open when its caps server was
    stopped: a bug in the client, and a stop that waited for them. An
    autograder makes it fail the test with
    C{-W error::twisted_caps.testing.ConnectionsLeftOpenWarning}.
    """


@dataclass(frozen=True)
class ConnectionRecord:
    """
    One TCP connection as the server saw it: the client's address
    (C{"local"} for a UNIX socket), seconds open, bytes each way, and why
    it closed (C{"client closed"}, C{"idle timeout"}, C{"shutdown"},
    C{"answered once"}, C{"error"}; None while open).
    """

    peer: str
    duration: float
    bytes_in: int
    bytes_out: int
    reason: str | None

    def __str__(self) -> str:
        state = f"closed: {self.reason}" if self.reason else "still open"
        return (
            f"{self.peer} ({self.duration:.1f}s, {self.bytes_in} bytes in,"
            f" {self.bytes_out} bytes out, {state})"
        )


@dataclass(frozen=True)
class ServerReport:
    """The connections a caps server has open now, and those it closed so far."""

    open: tuple[ConnectionRecord, ...]
    closed: tuple[ConnectionRecord, ...]


@dataclass
class CapsServerProcess(CapsAddress):
    """A caps server running as a child process; L{stop} ends it."""

    process: "subprocess.Popen[bytes]"
    #: The connections still open when L{stop} was called (filled in by it).
    left_open: tuple[ConnectionRecord, ...] = field(default=(), init=False)

    def report(self) -> ServerReport:
        """
        Ask the server which connections are open and which have closed.

        @raise RuntimeError: if the server has exited or does not answer.
        """
        stdin, stdout = self.process.stdin, self.process.stdout
        if stdin is None or stdout is None or self.process.poll() is not None:
            raise RuntimeError("the caps server is not running")
        stdin.write(REPORT_REQUEST)
        stdin.flush()
        deadline = time.monotonic() + REPORT_TIMEOUT
        line = "\n"
        # Skip the rest of an earlier line (the newline after "caps: ready").
        while line and not line.startswith(REPORT_PREFIX):
            line = _read_line(stdout.fileno(), deadline - time.monotonic())
        if not line:
            raise RuntimeError("the caps server did not report")
        data = json.loads(line[len(REPORT_PREFIX) :])
        return ServerReport(
            open=tuple(ConnectionRecord(**record) for record in data["open"]),
            closed=tuple(ConnectionRecord(**record) for record in data["closed"]),
        )

    def assert_all_closed(self, timeout: float = 2.0) -> ServerReport:
        """
        Wait up to C{timeout} seconds for the client under test to close
        every connection; return the report.

        @raise AssertionError: naming the connections still open.
        """
        deadline = time.monotonic() + timeout
        report = self.report()
        while report.open and time.monotonic() < deadline:
            time.sleep(0.02)
            report = self.report()
        if report.open:
            listed = "; ".join(str(record) for record in report.open)
            raise AssertionError(
                f"{len(report.open)} connection(s) still open after {timeout}s"
                f" (the client did not close its socket): {listed}"
            )
        return report

    def stop(self, timeout: float = 10.0) -> int | None:
        """
        SIGTERM, then SIGKILL after C{timeout} seconds. Return the exit
        status as C{Popen} gives it: C{-15} after a clean stop on SIGTERM.
        The connections still open are kept in L{left_open}.
        """
        process = self.process
        if process.poll() is None:
            with contextlib.suppress(RuntimeError):
                self.left_open = self.report().open
            process.terminate()
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        for pipe in (process.stdin, process.stdout):
            if pipe is not None:
                pipe.close()
        return process.returncode


def start_caps_process(*argv: str, **options: OptionValue) -> CapsServerProcess:
    """
    Start a caps server process with C{twistd caps} options (see
    L{caps_argv}) and wait until it listens. The caller must L{CapsServerProcess.stop} it.

    @raise RuntimeError: with the child's output, if it exits (bad options,
        a port in use) or is not ready within L{STARTUP_TIMEOUT} seconds.
    """
    command = [sys.executable, "-m", "twisted_caps.testing", *argv, *option_words(**options)]
    process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    output = _read_until_ready(process, STARTUP_TIMEOUT)
    listeners: dict[str, tuple[str, int]] = {}
    for match in SERVING.finditer(output):
        kind, v6, host, port = match.groups()
        listeners.setdefault(kind, (v6 or host, int(port)))
    server = CapsServerProcess(
        (listeners.get("TCP") or listeners.get("UDP") or ("127.0.0.1", 0))[0],
        listeners["TCP"][1] if "TCP" in listeners else None,
        listeners["UDP"][1] if "UDP" in listeners else None,
        process,
    )
    if READY not in output:
        server.stop()
        raise RuntimeError(f"the caps server did not start: {' '.join(command)}\n{output}")
    return server


def _read_line(fd: int, timeout: float) -> str:
    """
    Read one line from C{fd}, with its newline, byte by byte so nothing
    after it is consumed; "" at the end of output or of C{timeout}.
    """
    line = b""
    deadline = time.monotonic() + timeout
    while not line.endswith(b"\n"):
        remaining = deadline - time.monotonic()
        if remaining <= 0 or not select.select([fd], [], [], remaining)[0]:
            break
        byte = os.read(fd, 1)
        if not byte:
            break
        line += byte
    return line.decode(errors="replace")


def _read_until_ready(process: "subprocess.Popen[bytes]", timeout: float) -> str:
    """Read the child's output until it is ready, exits, or time is up."""
    assert process.stdout is not None
    output = b""
    deadline = time.monotonic() + timeout
    while READY.encode() not in output:
        remaining = deadline - time.monotonic()
        if remaining <= 0 or not select.select([process.stdout], [], [], remaining)[0]:
            break
        chunk = os.read(process.stdout.fileno(), 65536)
        if not chunk:
            break
        output += chunk
    return output.decode(errors="replace")
