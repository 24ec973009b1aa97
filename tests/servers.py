"""Start caps servers for tests: in this process's reactor, or as twistd."""

import os
import re
import select
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass

from twisted.internet import reactor
from twisted.trial.unittest import SkipTest, SynchronousTestCase

from twisted_caps.service import CapsService
from twisted_caps.tap import Options

#: Set (as .ci/run does) to make a missing program fail its tests, not skip them.
REQUIRE_TOOLS = os.environ.get("CAPS_REQUIRE_TOOLS") == "1"
BIN = os.path.dirname(sys.executable)
SERVING = re.compile(rb"serving (TCP|UDP) on (?:\[([^\]]+)\]|([^:\s]+)):(\d+)")


def require_program(name: str) -> str:
    """Return the path of program C{name}, or skip (fail under CI) without it."""
    path = shutil.which(name) or shutil.which(name, path=BIN)
    if path is None:
        message = f"{name} is not installed"
        if REQUIRE_TOOLS:
            raise AssertionError(message)
        raise SkipTest(message)
    return path


def start_in_reactor(case: SynchronousTestCase, *argv: str) -> CapsService:
    """Start a service on loopback in the test's reactor; stop it at cleanup."""
    options = Options()
    options.parseOptions(["-i", "127.0.0.1", "-p", "0", *argv])
    service = CapsService(options.config, reactor)
    service.startService()
    case.addCleanup(service.stopService)
    return service


def port_of(service: CapsService, kind: str) -> int:
    """The port number of the service's first TCP or UDP listener."""
    for port in service.ports:
        if port.getHost().type == kind:  # type: ignore[attr-defined]
            return int(port.getHost().port)  # type: ignore[attr-defined]
    raise LookupError(kind)


@dataclass
class Daemon:
    """A caps server running as a process, with the ports it logged."""

    process: subprocess.Popen[bytes]
    tcp_port: int | None
    udp_port: int | None
    output: bytes

    def stop(self, sig: int = signal.SIGTERM) -> int:
        """Signal the process and wait for it; return its exit status."""
        if self.process.poll() is None:
            self.process.send_signal(sig)
        try:
            return self.process.wait(timeout=15)
        finally:
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait()


def ready_within(fd: int, events: int, timeout: float) -> bool:
    """Wait up to C{timeout} seconds for C{events} on C{fd} (poll has no FD_SETSIZE cap)."""
    poller = select.poll()
    poller.register(fd, events)
    return bool(poller.poll(timeout * 1000))


def read_until(process: subprocess.Popen[bytes], pattern: bytes, timeout: float = 30) -> bytes:
    """Read the process's output until C{pattern} appears, EOF, or timeout."""
    assert process.stdout is not None
    output = b""
    deadline = time.monotonic() + timeout
    while pattern not in output:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        if not ready_within(process.stdout.fileno(), select.POLLIN, remaining):
            break
        chunk = os.read(process.stdout.fileno(), 65536)
        if not chunk:
            break
        output += chunk
    return output


def start_process(
    case: SynchronousTestCase, command: list[str], expect: tuple[str, ...] = ("TCP", "UDP")
) -> Daemon:
    """
    Start a server command (twistd -n or twist) that logs to stdout; wait
    for its "serving" lines and stop it (SIGTERM, then SIGKILL) at cleanup.
    """
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
    )
    ports: dict[str, int] = {}
    output = b""
    while set(expect) - set(ports):
        chunk = read_until(process, b"serving " + expect[-1].encode(), timeout=30)
        if not chunk:
            break
        output += chunk
        for match in SERVING.finditer(output):
            ports.setdefault(match.group(1).decode(), int(match.group(4)))
    daemon = Daemon(process, ports.get("TCP"), ports.get("UDP"), output)
    case.addCleanup(daemon.stop)
    if set(expect) - set(ports):
        daemon.stop(signal.SIGKILL)
        case.fail(f"{command} did not start: {output.decode(errors='replace')}")
    return daemon


def twistd(*argv: str) -> list[str]:
    """The command line of the twistd next to this Python, in the foreground."""
    return [os.path.join(BIN, "twistd"), "-n", "--pidfile=", "caps", *argv]
