"""Tests for L{twisted_caps.client}: the library and the caps-client command."""

import os
import signal
import socket
import subprocess
import sys
import time

from twisted.internet import error, reactor
from twisted.internet.protocol import Protocol
from twisted.internet.task import Clock
from twisted.internet.threads import deferToThread
from twisted.trial.unittest import SynchronousTestCase, TestCase

from tests.certificates import make_server_files
from tests.servers import KeptProtocols, port_of, ready_within, start_in_reactor, wait_for
from twisted_caps.client import (
    PROMPT,
    _DatagramExchange,
    capitalize_over_tcp,
    capitalize_over_udp,
)

HOST = "127.0.0.1"


def unused_port(kind: int) -> int:
    """A port number nothing listens on (bound, read, released)."""
    with socket.socket(socket.AF_INET, kind) as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


class RecordingDatagramTransport:
    def __init__(self) -> None:
        self.sent: list[bytes] = []
        self.stopped = False

    def connect(self, host: str, port: int) -> None:
        self.address = (host, port)

    def write(self, datagram: bytes, addr: object = None) -> None:
        self.sent.append(datagram)

    def stopListening(self) -> None:
        self.stopped = True


class DatagramRetryTests(SynchronousTestCase):
    def exchange(self) -> tuple[_DatagramExchange, RecordingDatagramTransport, Clock]:
        clock = Clock()
        protocol = _DatagramExchange(clock, (HOST, 1200), b"hi", sends=3, interval=1.0)
        transport = RecordingDatagramTransport()
        protocol.makeConnection(transport)  # type: ignore[arg-type]
        protocol.send()
        return protocol, transport, clock

    def test_silence_resends_then_times_out(self) -> None:
        protocol, transport, clock = self.exchange()
        clock.advance(1.0)
        clock.advance(1.0)
        self.assertNoResult(protocol.reply)
        self.assertEqual(transport.sent, [b"hi"] * 3)
        clock.advance(1.0)
        self.failureResultOf(protocol.reply, error.TimeoutError)
        self.assertTrue(transport.stopped)
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_first_reply_wins_and_stops_resending(self) -> None:
        protocol, transport, clock = self.exchange()
        clock.advance(1.0)
        protocol.datagramReceived(b"HI", (HOST, 1200))
        protocol.datagramReceived(b"HI", (HOST, 1200))
        self.assertEqual(self.successResultOf(protocol.reply), b"HI")
        self.assertEqual(clock.getDelayedCalls(), [])
        self.assertEqual(len(transport.sent), 2)

    def test_refusal_fails_at_once(self) -> None:
        protocol, _, clock = self.exchange()
        protocol.connectionRefused()
        self.failureResultOf(protocol.reply, error.ConnectionRefusedError)
        self.assertEqual(clock.getDelayedCalls(), [])


class LibraryTests(TestCase):
    async def test_tcp_round_trip(self) -> None:
        port = port_of(start_in_reactor(self), "TCP")
        reply = await capitalize_over_tcp(reactor, HOST, port, "straße\n".encode())
        self.assertEqual(reply, b"STRASSE\n")

    async def test_udp_round_trip(self) -> None:
        port = port_of(start_in_reactor(self), "UDP")
        self.assertEqual(await capitalize_over_udp(reactor, HOST, port, b"dgram"), b"DGRAM")

    async def test_udp_reply_of_the_largest_size_arrives_whole(self) -> None:
        """A reply of 65,507 bytes, the largest over IPv4, is read whole, not cut to 8,192."""
        port = port_of(start_in_reactor(self), "UDP")
        reply = await capitalize_over_udp(reactor, HOST, port, b"x" * 65507)
        self.assertEqual(reply, b"X" * 65507)

    async def test_tcp_refused(self) -> None:
        with self.assertRaises(error.ConnectionRefusedError):
            await capitalize_over_tcp(reactor, HOST, unused_port(socket.SOCK_STREAM), b"x")

    async def test_udp_refused(self) -> None:
        with self.assertRaises(error.ConnectionRefusedError):
            await capitalize_over_udp(reactor, HOST, unused_port(socket.SOCK_DGRAM), b"x")

    async def test_silent_udp_server_times_out(self) -> None:
        silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.addCleanup(silent.close)
        silent.bind((HOST, 0))
        with self.assertRaises(error.TimeoutError):
            await capitalize_over_udp(reactor, HOST, silent.getsockname()[1], b"x", timeout=0.3)

    async def test_silent_tcp_server_times_out(self) -> None:
        silent = socket.socket()
        self.addCleanup(silent.close)
        silent.bind((HOST, 0))
        silent.listen()
        with self.assertRaises(error.TimeoutError):
            await capitalize_over_tcp(reactor, HOST, silent.getsockname()[1], b"x", timeout=0.3)


class CommandTests(TestCase):
    async def caps_client(self, *argv: str, stdin: bytes = b"") -> tuple[bytes, bytes, int]:
        done = await deferToThread(
            subprocess.run,
            [sys.executable, "-m", "twisted_caps.client", *argv],
            input=stdin,
            capture_output=True,
            timeout=30,
        )
        return done.stdout, done.stderr, done.returncode

    async def test_text_arguments(self) -> None:
        port = port_of(start_in_reactor(self), "TCP")
        out, _, code = await self.caps_client("--host", HOST, "-p", str(port), "hello", "world")
        self.assertEqual((out, code), (b"HELLO WORLD\n", 0))

    async def test_udp_text(self) -> None:
        port = port_of(start_in_reactor(self), "UDP")
        out, _, code = await self.caps_client("--host", HOST, "-p", str(port), "--udp", "привет")
        self.assertEqual((out, code), ("ПРИВЕТ\n".encode(), 0))

    async def test_lines_from_standard_input_without_a_prompt(self) -> None:
        port = port_of(start_in_reactor(self), "TCP")
        out, _, code = await self.caps_client("--host", HOST, "-p", str(port), stdin=b"one\ntwo\n")
        self.assertEqual((out, code), (b"ONE\nTWO\n", 0))

    async def test_refused_is_one_line_and_status_1(self) -> None:
        port = unused_port(socket.SOCK_STREAM)
        out, err, code = await self.caps_client("--host", HOST, "-p", str(port), "x")
        self.assertEqual((out, code), (b"", 1))
        self.assertEqual(err, f"caps-client: connection refused by {HOST}:{port}\n".encode())

    async def test_udp_timeout_is_one_line_and_status_1(self) -> None:
        silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.addCleanup(silent.close)
        silent.bind((HOST, 0))
        port = silent.getsockname()[1]
        out, err, code = await self.caps_client(
            "--host", HOST, "-p", str(port), "-u", "-t", "0.5", "x"
        )
        self.assertEqual((out, code), (b"", 1))
        self.assertEqual(
            err, f"caps-client: no reply from {HOST}:{port} within 0.5 seconds\n".encode()
        )

    async def test_bad_option_is_one_line(self) -> None:
        _, err, code = await self.caps_client("--port", "70000", "x")
        self.assertEqual(code, 1)
        self.assertEqual(err.count(b"\n"), 1)
        self.assertIn(b"--port", err)


class ResetOnData(Protocol):
    """A server that answers any text with a TCP reset."""

    def dataReceived(self, data: bytes) -> None:
        assert self.transport is not None
        self.transport.abortConnection()  # type: ignore[attr-defined]


def caps_client_command(*argv: str) -> list[str]:
    return [sys.executable, "-m", "twisted_caps.client", *argv]


class CommandFailureTests(TestCase):
    """Issue 13: every way the client can fail is one line on stderr and a documented status."""

    async def caps_client(self, *argv: str) -> tuple[bytes, bytes, int]:
        done = await deferToThread(
            subprocess.run, caps_client_command(*argv), capture_output=True, timeout=30
        )
        return done.stdout, done.stderr, done.returncode

    async def test_reset_by_the_server_is_one_line_and_status_1(self) -> None:
        """A reset is 'connection reset by HOST:PORT' and status 1, not a 14-line traceback."""
        factory = KeptProtocols(ResetOnData)
        port = reactor.listenTCP(0, factory, interface=HOST)
        self.addCleanup(port.stopListening)
        number = port.getHost().port  # type: ignore[attr-defined]
        out, err, code = await self.caps_client("--host", HOST, "-p", str(number), "x")
        self.assertEqual(
            (out, err, code),
            (b"", f"caps-client: connection reset by {HOST}:{number}\n".encode(), 1),
        )

    async def test_tls_server_without_tls_is_an_error(self) -> None:
        """A TLS server asked in plain TCP: status 1 and a hint, not a blank line and 0."""
        files = make_server_files(self.mktemp())
        ssl = f"ssl:0:interface={HOST}:privateKey={files.key}:certKey={files.certificate}"
        number = port_of(start_in_reactor(self, "--no-udp", "--tcp", ssl), "TCP")
        out, err, code = await self.caps_client("--host", HOST, "-p", str(number), "hello")
        self.assertEqual((out, code), (b"", 1))
        self.assertEqual(
            err,
            f"caps-client: {HOST}:{number} closed the connection without a reply"
            " (if it serves TLS, use --tls)\n".encode(),
        )

    async def test_bad_numbers_are_one_line_without_python_words(self) -> None:
        """-p abc names the option and its range, not int(); status 1."""
        for argv, message in (
            (("-p", "abc"), "--port: 'abc' is not a port number (1-65535)"),
            (("-p", "0"), "--port: '0' is not a port number (1-65535)"),
            (("-p", "\u00b2"), "--port: '\u00b2' is not a port number (1-65535)"),
            (("-t", "nan"), "--timeout: 'nan' is not a number of seconds"),
            (("-t", "0"), "--timeout: '0' is not a number of seconds"),
        ):
            out, err, code = await self.caps_client(*argv, "x")
            self.assertEqual((out, code), (b"", 1))
            self.assertEqual(err.count(b"\n"), 1, err)
            self.assertTrue(err.startswith(f"caps-client: {message}".encode()), err)

    async def test_one_second_is_singular(self) -> None:
        """A timeout of 1 reads 'within 1 second', not 'within 1 seconds'."""
        silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.addCleanup(silent.close)
        silent.bind((HOST, 0))
        number = silent.getsockname()[1]
        _, err, code = await self.caps_client(
            "--host", HOST, "-p", str(number), "-u", "-t", "1", "x"
        )
        self.assertEqual(
            (err, code),
            (f"caps-client: no reply from {HOST}:{number} within 1 second\n".encode(), 1),
        )


class CommandTerminalTests(SynchronousTestCase):
    """The client at a terminal (a pseudo-terminal here) and in a pipe."""

    def interactive_client(self) -> tuple[subprocess.Popen[bytes], int]:
        """Start the client with a terminal as stdin and stdout; wait for its prompt."""
        main, terminal = os.openpty()
        self.addCleanup(os.close, main)
        process = subprocess.Popen(
            caps_client_command("--host", HOST, "-p", "1"),
            stdin=terminal,
            stdout=terminal,
            stderr=subprocess.PIPE,
        )
        os.close(terminal)
        self.addCleanup(_reap, process)
        shown = b""
        deadline = time.monotonic() + 20
        while PROMPT not in shown and time.monotonic() < deadline:
            if ready_within(main, 1, 0.5):  # POLLIN
                shown += os.read(main, 1024)
        self.assertIn(PROMPT, shown)
        return process, main

    def test_ctrl_c_ends_the_client_by_sigint(self) -> None:
        """Ctrl-C at the prompt ends the client by SIGINT (130 in a shell), silently."""
        process, _ = self.interactive_client()
        process.send_signal(signal.SIGINT)
        self.assertEqual(process.wait(timeout=10), -signal.SIGINT)
        assert process.stderr is not None
        self.assertEqual(process.stderr.read(), b"")

    def test_ctrl_d_ends_the_prompt_line(self) -> None:
        """Ctrl-D at the prompt exits 0 with the cursor on a new line."""
        process, main = self.interactive_client()
        os.write(main, b"\x04")
        self.assertEqual(process.wait(timeout=10), 0)
        shown = b""
        while ready_within(main, 1, 0.2):
            try:
                shown += os.read(main, 1024)
            except OSError:  # the terminal is closed once the client is gone
                break
        self.assertTrue(shown.endswith(b"\n"), shown)

    def test_help_into_a_closed_pipe_is_quiet(self) -> None:
        """caps-client --help | head -2: no BrokenPipeError, status 0."""
        process = subprocess.Popen(
            caps_client_command("--help"), stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        self.addCleanup(_reap, process)
        assert process.stdout is not None and process.stderr is not None
        first = process.stdout.readline()
        process.stdout.close()
        self.assertEqual(process.wait(timeout=20), 0)
        self.assertTrue(first.startswith(b"Usage: caps-client "), first)
        self.assertEqual(process.stderr.read(), b"")

    def test_sigterm_ends_the_client_by_sigterm(self) -> None:
        """SIGTERM while reading standard input ends the client by SIGTERM, not status 0."""
        process = subprocess.Popen(
            caps_client_command("--host", HOST, "-p", "1"),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        self.addCleanup(_reap, process)
        wait_for(lambda: _has_reactor_thread(process.pid))
        process.terminate()
        self.assertEqual(process.wait(timeout=10), -signal.SIGTERM)


def _has_reactor_thread(pid: int) -> bool:
    """The client is reading standard input in a thread: its reactor runs."""
    try:
        return len(os.listdir(f"/proc/{pid}/task")) > 1
    except FileNotFoundError:
        return False


def _reap(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.kill()
    process.wait()
    for pipe in (process.stdout, process.stderr, process.stdin):
        if pipe is not None:
            pipe.close()
