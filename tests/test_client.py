"""Tests for L{twisted_caps.client}: the library and the caps-client command."""

import socket
import subprocess
import sys

from twisted.internet import error, reactor
from twisted.internet.task import Clock
from twisted.internet.threads import deferToThread
from twisted.trial.unittest import SynchronousTestCase, TestCase

from tests.servers import port_of, start_in_reactor
from twisted_caps.client import _DatagramExchange, capitalize_over_tcp, capitalize_over_udp

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
