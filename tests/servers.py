"""
Start caps servers for tests: in this process's reactor, or as twistd; a
plain server factory that keeps the protocols it builds; a child Python
run in a scratch directory; the clients and checks several test modules use.
"""

import contextlib
import json
import os
import re
import select
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

from prometheus_client.parser import text_string_to_metric_families
from twisted.internet import reactor
from twisted.internet.interfaces import IAddress
from twisted.internet.protocol import Protocol, ServerFactory
from twisted.internet.task import deferLater
from twisted.trial.unittest import SkipTest, SynchronousTestCase

from twisted_caps.operating.tap import Options
from twisted_caps.serving.service import CapsService
from twisted_caps.serving.stream import CapsStreamFactory, CapsStreamProtocol

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


def protocol_of(factory: CapsStreamFactory) -> CapsStreamProtocol | None:
    """
    The factory's one open connection if it has become a protocol (a
    compact connection carries on as one when it needs a transport), else None.
    """
    connections = list(factory.connections)
    if len(connections) == 1 and isinstance(connections[0], CapsStreamProtocol):
        return connections[0]
    return None


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


def caps_client(*argv: str) -> subprocess.CompletedProcess[bytes]:
    """Run the installed C{caps-client ARGV} to its end (at most 60 s), no input."""
    return subprocess.run(
        [os.path.join(BIN, "caps-client"), *argv],
        capture_output=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )


def twistd(*argv: str) -> list[str]:
    """The command line of the twistd next to this Python, in the foreground."""
    return [os.path.join(BIN, "twistd"), "-n", "--pidfile=", "caps", *argv]


# Clients and checks shared by several test modules: the course's blocking
# clients, a scrape of /metrics, the shape of a usage error.

HOST = "127.0.0.1"


def course_tcp_client(port: int, sentence: bytes) -> bytes:
    """The lecture's TCP client: connect, send, recv(1024), close."""
    client = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    client.settimeout(10)
    client.connect((HOST, port))
    client.send(sentence)
    modified = client.recv(1024)
    client.close()
    return modified


def course_udp_client(port: int, message: bytes) -> bytes:
    """The lecture's UDP client: sendto, recvfrom(2048)."""
    client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    client.settimeout(10)
    client.sendto(message, (HOST, port))
    modified, _ = client.recvfrom(2048)
    client.close()
    return modified


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Fetch /metrics and index every sample by name and labels."""
    with urllib.request.urlopen(f"http://{HOST}:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def assert_one_line_usage_error(
    case: SynchronousTestCase, argv: list[str], prefix: str, *fragments: str
) -> None:
    """Parsing C{argv} must exit with one line starting C{prefix} and naming C{fragments}."""
    options = Options()
    error = case.assertRaises(SystemExit, options.parseOptions, argv)
    message = str(error.code)
    case.assertTrue(message.startswith(prefix), message)
    case.assertNotIn("\n", message)
    for fragment in fragments:
        case.assertIn(fragment, message)


# The adversarial suite's view of a running daemon: its metrics port and counters.

METRICS_SERVING = re.compile(rb"caps: serving metrics on \S*:(\d+)")


def metrics_port_of(daemon: Daemon) -> int:
    """
    The port of a daemon's C{--metrics} listener, once its log names it: the
    last one named, since C{--port 0} may try again on other ports (and
    reopen the metrics listener) when another program holds one it drew.
    """
    wait_for(lambda: METRICS_SERVING.search(daemon.output))
    return int(METRICS_SERVING.findall(daemon.output)[-1])


def metric_total(port: int, name: str, **labels: str) -> float:
    """
    Scrape C{/metrics} on 127.0.0.1:C{port} and add up the samples of C{name}
    whose labels include C{labels} (every worker's, under C{--workers}).
    """
    return sum(
        value
        for (sample, sample_labels), value in scrape(port).items()
        if sample == name and set(labels.items()) <= set(sample_labels)
    )


# Helpers of the adversarial suite (tests/adversarial): raw clients and log checks.


def assert_clean_log(case: SynchronousTestCase, daemon: Daemon) -> None:
    """Fail if the daemon logged a traceback or an unhandled error."""
    output = daemon.output
    for marker in (b"Traceback", b"Unhandled"):
        case.assertNotIn(marker, output, output.decode(errors="replace"))


def closed_within(client: socket.socket, timeout: float) -> bytes:
    """
    Read C{client} until the server closes it (end of stream or reset) and
    return what came; fail if it is still open after C{timeout} seconds.
    """
    deadline = time.monotonic() + timeout
    received = b""
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"still open after {timeout}s")
        client.settimeout(left)
        try:
            chunk = client.recv(65536)
        except ConnectionResetError:
            return received
        except TimeoutError:
            continue
        if not chunk:
            return received
        received += chunk


# Daemonized twistd, for the tests of signals, reload, logs and pidfiles.


@dataclass
class DaemonizedTwistd:
    """A C{twistd caps} that daemonized itself, known by its pidfile and log file."""

    pid: int
    pidfile: str
    logfile: str
    ports: dict[str, int]

    @property
    def log(self) -> bytes:
        """The log file's content (the current file, after any rotation)."""
        with open(self.logfile, "rb") as log:
            return log.read()


def alive(pid: int) -> bool:
    """Whether process C{pid} exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rpartition(")")[2].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        # Gone before the open, or between the open and the read (ESRCH).
        return False


def start_daemonized(
    case: SynchronousTestCase,
    *argv: str,
    directory: str | None = None,
    twistd_options: tuple[str, ...] = (),
    expect: tuple[str, ...] = ("TCP", "UDP"),
) -> DaemonizedTwistd:
    """
    Run C{twistd --pidfile DIR/caps.pid --logfile DIR/caps.log caps ARGV},
    which daemonizes; wait until it serves; SIGKILL it at cleanup if alive.
    """
    directory = os.path.abspath(directory or case.mktemp())
    os.makedirs(directory, exist_ok=True)
    pidfile, logfile = os.path.join(directory, "caps.pid"), os.path.join(directory, "caps.log")
    command = [os.path.join(BIN, "twistd"), "--pidfile", pidfile, "--logfile", logfile]
    done = subprocess.run(
        [*command, *twistd_options, "caps", *argv],
        capture_output=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    case.assertEqual(done.returncode, 0, done.stdout + done.stderr)
    wait_for(lambda: os.path.exists(pidfile))
    with open(pidfile) as f:
        pid = int(f.read())

    def kill() -> None:
        if alive(pid):
            os.kill(pid, signal.SIGKILL)

    case.addCleanup(kill)
    started = DaemonizedTwistd(pid, pidfile, logfile, {})
    wait_for(lambda: set(expect) <= set(logged_ports(started.log)))
    started.ports.update(logged_ports(started.log))
    return started


# --workers processes: their pids from the log, and their cleanup.

WORKERS = ("--workers", "2", "-i", "127.0.0.1", "-p", "0")
STARTED = re.compile(rb"caps: worker (\d+) started, pid (\d+)")


def running_workers(daemon: Daemon) -> dict[int, int]:
    """Worker index to pid, from the latest "worker N started" line of each."""
    return {int(i): int(pid) for i, pid in STARTED.findall(daemon.output)}


def exited(pid: int) -> bool:
    """Whether process C{pid} is gone (or a zombie nobody has reaped yet)."""
    return not alive(pid)


def kill_at_cleanup(case: SynchronousTestCase, pids: list[int]) -> None:
    """SIGKILL whichever of C{pids} is still alive when the test ends."""

    def kill() -> None:
        for pid in pids:
            if not exited(pid):
                os.kill(pid, signal.SIGKILL)

    case.addCleanup(kill)


def start_workers(
    case: SynchronousTestCase, *argv: str, environment: dict[str, str] | None = None
) -> tuple[Daemon, dict[int, int]]:
    """
    Start C{twistd caps --workers 2}, with C{environment} added to its own,
    and wait until both workers serve.
    """
    settings = [f"{name}={value}" for name, value in (environment or {}).items()]
    daemon = start_process(case, ["env", *settings, *twistd(*WORKERS, *argv)])
    wait_for(lambda: len(running_workers(daemon)) == 2)
    workers = running_workers(daemon)
    kill_at_cleanup(case, list(workers.values()))
    serving = [f"caps worker {pid}: caps: serving".encode() for pid in workers.values()]
    wait_for(lambda: all(line in daemon.output for line in serving))
    return daemon, workers


def start_unix_workers(case: SynchronousTestCase, path: str, *argv: str) -> Daemon:
    """
    Start C{twistd caps --workers 2 --tcp unix:PATH --no-udp} and wait until
    both workers serve the socket.
    """
    command = twistd("--workers", "2", "--tcp", f"unix:{path}", "--no-udp", *argv)
    daemon = start_process(case, command, expect=())
    wait_for(lambda: len(running_workers(daemon)) == 2 or daemon.process.poll() is not None)
    workers = running_workers(daemon)
    kill_at_cleanup(case, list(workers.values()))
    ready = [f"caps worker {pid}: caps: ready".encode() for pid in workers.values()]
    wait_for(lambda: all(line in daemon.output for line in ready))
    return daemon


def unix_exchange(path: str, sentence: bytes) -> bytes:
    """Connect to the UNIX socket C{path}, send C{sentence}, half-close, read the reply."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
        client.settimeout(10)
        client.connect(path)
        client.sendall(sentence)
        client.shutdown(socket.SHUT_WR)
        return read_to_end(client)


# Servers written the way students write them, and caps-check run against them.

#: Where caps-check's tests find the servers they check.
CHECKED_HOST = "127.0.0.1"


def caps_check(*argv: str) -> "subprocess.CompletedProcess[str]":
    """Run the installed caps-check command."""
    return subprocess.run(
        [os.path.join(BIN, "caps-check"), *argv],
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )


def checked(
    case: SynchronousTestCase, port: int, *argv: str
) -> tuple["subprocess.CompletedProcess[str]", dict[str, Any]]:
    """Run caps-check against loopback C{port}; return its run and its --json document."""
    path = os.path.abspath(case.mktemp())
    done = caps_check("--host", CHECKED_HOST, "--port", str(port), "--json", path, *argv)
    case.assertNotIn("Traceback", done.stderr)
    with open(path, encoding="utf-8") as document:
        return done, json.load(document)


def failed(document: dict[str, Any]) -> set[str]:
    """The ids of the checks that failed in a --json document."""
    return {check["id"] for check in document["checks"] if not check["passed"]}


def detail(document: dict[str, Any], check_id: str) -> str:
    """The detail of one check in a --json document."""
    for check in document["checks"]:
        if check["id"] == check_id:
            return str(check["detail"])
    raise KeyError(check_id)


def start_student_server(
    case: SynchronousTestCase, program: str, transports: tuple[str, ...] = ("tcp", "udp")
) -> int:
    """
    Run C{python PROGRAM PORT} on a free port, in a session of its own;
    wait until it listens; stop it and its children at cleanup. Return the port.
    """
    from twisted_caps.check.started_server import free_port, stop

    port = free_port()
    log_path = os.path.abspath(case.mktemp())
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [sys.executable, program, str(port)],
            stdout=log,
            stderr=log,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    case.addCleanup(stop, process)
    if not wait_until_listening(process, port, transports, 30):
        with open(log_path, "rb") as log:
            case.fail(f"{program} did not start: {log.read().decode(errors='replace')}")
    return port


def wait_until_listening(
    server: "subprocess.Popen[bytes]", port: int, transports: tuple[str, ...], timeout: float
) -> bool:
    """
    Wait until the server accepts a TCP connection on C{port} (closed at
    once, without sending), or, for UDP only, until the port is bound;
    False if it exits first or C{timeout} seconds pass.
    """
    from twisted_caps.check.started_server import accepts, bound

    deadline = time.monotonic() + timeout
    while server.poll() is None and time.monotonic() < deadline:
        if accepts(CHECKED_HOST, port) if "tcp" in transports else bound(port):
            return True
        time.sleep(0.05)
    return False


def read_until_close_notify(client: ssl.SSLSocket, timeout: float = 15) -> bytes:
    """Everything the server sends up to its close_notify (SSLEOFError fails the test)."""
    client.settimeout(timeout)
    received = b""
    while chunk := client.recv(65536):
        received += chunk
    return received


# Counting a daemon's system calls per connection (tests of what a connection costs).


def traced(command: list[str], calls: str, output: str) -> list[str]:
    """C{command} under C{strace -f}, logging the system calls C{calls} to C{output}."""
    strace = require_program("strace")
    return [strace, "-f", "-qq", "-s", "200", "-e", f"trace={calls}", "-o", output, *command]


#: A call in an C{strace -f} log line: C{PID name(...}.
TRACED_CALL = re.compile(rb"^\d+ +(\w+)\(")


def traced_daemon(case: SynchronousTestCase, calls: str, *options: str) -> tuple[Daemon, str]:
    """
    C{twistd caps OPTIONS} on TCP alone under C{strace}, logging the system
    calls C{calls}: the daemon, once serving, and the path of the trace.
    """
    trace = os.path.abspath(case.mktemp())
    command = traced(twistd("-i", HOST, "-p", "0", "--no-udp", *options), calls, trace)
    daemon = start_process(case, command, expect=("TCP",))
    traced_child(case, daemon)
    assert daemon.tcp_port
    return daemon, trace


def traced_calls(trace: str) -> Counter[str]:
    """How many calls of each system call the C{strace} log at C{trace} has so far."""
    with open(trace, "rb") as lines:
        return Counter(
            found.group(1).decode() for line in lines if (found := TRACED_CALL.search(line))
        )


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


def read_to_end(client: socket.socket) -> bytes:
    """Everything C{client} receives until the server's end of stream (a reset raises)."""
    received = b""
    while chunk := client.recv(4096):
        received += chunk
    return received


def receive(client: socket.socket, size: int) -> bytes:
    """Exactly C{size} bytes from C{client}, or fewer if it closes first."""
    received = b""
    while len(received) < size:
        chunk = client.recv(size - len(received))
        if not chunk:
            break
        received += chunk
    return received
