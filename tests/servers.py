"""
Start caps servers for tests: in this process's reactor, or as twistd; a
plain server factory that keeps the protocols it builds; and a child Python
run in a scratch directory.
"""

import contextlib
import json
import os
import re
import select
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

from twisted.internet import reactor
from twisted.internet.interfaces import IAddress
from twisted.internet.protocol import Protocol, ServerFactory
from twisted.internet.task import deferLater
from twisted.trial.unittest import SkipTest, SynchronousTestCase

from twisted_caps.service import CapsService
from twisted_caps.tap import Options

#: Set (as .ci/run does) to make a missing program fail its tests, not skip them.
REQUIRE_TOOLS = os.environ.get("CAPS_REQUIRE_TOOLS") == "1"
BIN = os.path.dirname(sys.executable)
SERVING = re.compile(rb"serving (TCP|UDP) on (?:\[([^\]]+)\]|([^:\s]+)):(\d+)")

BuiltProtocol = TypeVar("BuiltProtocol", bound=Protocol)


class KeptProtocols(ServerFactory, Generic[BuiltProtocol]):
    """A server factory that builds its protocols with C{make} and keeps them."""

    def __init__(self, make: Callable[[], BuiltProtocol]) -> None:
        self.make = make
        self.built: list[BuiltProtocol] = []

    def buildProtocol(self, addr: IAddress | None) -> BuiltProtocol:
        protocol = self.make()
        self.built.append(protocol)
        return protocol


def require_program(name: str) -> str:
    """Return the path of program C{name}, or skip (fail under CI) without it."""
    path = shutil.which(name) or shutil.which(name, path=BIN)
    if path is None:
        message = f"{name} is not installed"
        if REQUIRE_TOOLS:
            raise AssertionError(message)
        raise SkipTest(message)
    return path


def wait_for(predicate: Callable[[], object], timeout: float = 20) -> None:
    """Poll C{predicate} (blocking) until it is true; fail after C{timeout} seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting after {timeout}s")
        time.sleep(0.05)


async def eventually(predicate: Callable[[], object], timeout: float = 10) -> None:
    """Let the reactor run until C{predicate} is true; fail after C{timeout} seconds."""
    deadline = reactor.seconds() + timeout
    while not predicate():
        if reactor.seconds() > deadline:
            raise AssertionError(f"gave up waiting after {timeout}s")
        await deferLater(reactor, 0.02, lambda: None)


def run_in_scratch(
    case: SynchronousTestCase, *module: str, files: dict[str, str] | None = None
) -> str:
    """
    Run C{python -m MODULE...} in a fresh directory holding C{files} (name to
    text); fail the test unless it succeeds; return its output.
    """
    scratch = Path(case.mktemp()).resolve()
    scratch.mkdir(parents=True)
    for name, text in (files or {}).items():
        (scratch / name).write_text(text)
    done = subprocess.run(
        [sys.executable, "-m", *module], cwd=scratch, capture_output=True, text=True, timeout=300
    )
    case.assertEqual(done.returncode, 0, done.stdout + done.stderr)
    return done.stdout


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
    """A caps server running as a process, logging to a file, with its ports."""

    process: subprocess.Popen[bytes]
    log_path: str
    tcp_port: int | None = None
    udp_port: int | None = None

    @property
    def output(self) -> bytes:
        """Everything the process has written to stdout and stderr so far."""
        with open(self.log_path, "rb") as log:
            return log.read()

    def stop(self, sig: int = signal.SIGTERM) -> int:
        """Signal the process and wait for it; return its exit status."""
        if self.process.poll() is None:
            self.process.send_signal(sig)
        try:
            return self.process.wait(timeout=30)
        finally:
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait()


def json_events(output: bytes) -> list[dict[str, Any]]:
    """Every line of C{output} as a JSON object (RS-separated records too)."""
    lines = output.replace(b"\x1e", b"\n").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def logged_ports(output: bytes) -> dict[str, int]:
    """The ports a server logged it serves, from text or JSON log lines."""
    if output.lstrip().startswith((b"{", b"\x1e")):
        return {
            event["kind"]: int(event["address"].rsplit(":", 1)[1])
            for event in json_events(output.rpartition(b"\n")[0])
            if event.get("log_format", "").startswith("caps: serving")
        }
    return {match.group(1).decode(): int(match.group(4)) for match in SERVING.finditer(output)}


def ready_within(fd: int, events: int, timeout: float) -> bool:
    """Wait up to C{timeout} seconds for C{events} on C{fd} (poll has no FD_SETSIZE cap)."""
    poller = select.poll()
    poller.register(fd, events)
    return bool(poller.poll(timeout * 1000))


def start_process(
    case: SynchronousTestCase, command: list[str], expect: tuple[str, ...] = ("TCP", "UDP")
) -> Daemon:
    """
    Start a server command (twistd -n or twist) whose output goes to a file
    (a pipe nobody reads would fill and stall the server's logging); wait
    for its "serving" lines and stop it (SIGTERM, then SIGKILL) at cleanup.
    """
    log_path = os.path.abspath(case.mktemp())
    with open(log_path, "wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=log, stdin=subprocess.DEVNULL)
    daemon = Daemon(process, log_path)
    case.addCleanup(daemon.stop)
    ports: dict[str, int] = {}
    deadline = time.monotonic() + 30
    while set(expect) - set(ports) and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
        ports.update(logged_ports(daemon.output))
    if set(expect) - set(ports):
        daemon.stop(signal.SIGKILL)
        case.fail(f"{command} did not start: {daemon.output.decode(errors='replace')}")
    daemon.tcp_port, daemon.udp_port = ports.get("TCP"), ports.get("UDP")
    return daemon


def twistd(*argv: str) -> list[str]:
    """The command line of the twistd next to this Python, in the foreground."""
    return [os.path.join(BIN, "twistd"), "-n", "--pidfile=", "caps", *argv]


# Counting a daemon's system calls per connection (tests of what a connection costs).


def traced(command: list[str], calls: str, output: str) -> list[str]:
    """C{command} under C{strace -f}, logging the system calls C{calls} to C{output}."""
    strace = require_program("strace")
    return [strace, "-f", "-qq", "-s", "200", "-e", f"trace={calls}", "-o", output, *command]


def traced_child(case: SynchronousTestCase, daemon: Daemon) -> int:
    """
    The pid of the program C{strace} runs in C{daemon}, which is sent SIGTERM
    at cleanup (C{strace} itself would only detach from it).
    """
    pid = daemon.process.pid
    [child] = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    case.addCleanup(_terminate, int(child))
    return int(child)


def _terminate(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGCONT)
        os.kill(pid, signal.SIGTERM)
