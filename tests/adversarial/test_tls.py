"""
Attacks on an C{ssl:} listener of the installed daemon, through real sockets:
its closes are TLS closes (every reply, then close_notify), and clients that
break off mid-handshake, send no TLS at all or never answer close_notify
are closed without a traceback.
"""

import contextlib
import re
import signal
import socket
import ssl
import struct
import time

from twisted.trial.unittest import SynchronousTestCase

from tests.certificates import ServerFiles, make_server_files, ssl_endpoint
from tests.servers import (
    Daemon,
    assert_clean_log,
    closed_within,
    metrics_port_of,
    read_until_close_notify,
    scrape,
    start_process,
    twistd,
    wait_for,
)
from twisted_caps.core.transform import capitalize

HOST = "127.0.0.1"
KiB = 1024


def tls_client(files: ServerFiles, port: int) -> ssl.SSLSocket:
    """
    A TLS client that tells a clean end (close_notify, C{recv} gives b"")
    from a truncation (a bare FIN raises C{SSLEOFError}).
    """
    context = ssl.create_default_context(cafile=files.ca)
    raw = socket.create_connection((HOST, port), timeout=10)
    return context.wrap_socket(raw, server_hostname="localhost", suppress_ragged_eofs=False)


class TLSCloseTests(SynchronousTestCase):
    def serve(self, *argv: str) -> tuple[ServerFiles, Daemon]:
        files = make_server_files(self.mktemp())
        command = twistd("--tcp", ssl_endpoint(files), "--no-udp", *argv)
        return files, start_process(self, command, ("TCP",))

    def test_idle_timeout_sends_replies_then_close_notify(self) -> None:
        """
        An idle timeout on a TLS connection ends the TLS session: the client
        reads its reply, then a close_notify (no SSLEOFError), and the
        daemon logs the close without a traceback.
        """
        files, daemon = self.serve("--idle-timeout", "1")
        assert daemon.tcp_port
        started = time.monotonic()
        with tls_client(files, daemon.tcp_port) as client:
            client.sendall(b"hello world")
            self.assertEqual(read_until_close_notify(client), b"HELLO WORLD")
        self.assertGreater(time.monotonic() - started, 0.9)
        wait_for(lambda: b": idle timeout" in daemon.output)
        assert_clean_log(self, daemon)

    def test_sigterm_sends_queued_replies_then_close_notify(self) -> None:
        """
        SIGTERM with a TLS client connected that has not read its replies:
        the client gets every reply to what the server read, in order, then
        close_notify; the daemon exits on the signal, without a traceback.
        """
        files, daemon = self.serve()
        assert daemon.tcp_port
        data = "grüße aus köln\n".encode() * 20_000  # 340 KB, more than one TLS buffer
        with tls_client(files, daemon.tcp_port) as client:
            client.sendall(data)
            client.settimeout(10)
            first = client.recv(16 * KiB)  # the server is answering
            daemon.process.send_signal(signal.SIGTERM)
            received = first + read_until_close_notify(client)
        self.assertGreaterEqual(len(received), 16 * KiB)
        self.assertEqual(received, capitalize(data)[: len(received)])
        self.assertEqual(daemon.process.wait(timeout=30), -signal.SIGTERM)
        self.assertIn(b": shutdown", daemon.output)
        assert_clean_log(self, daemon)

    def test_client_that_never_answers_close_notify_is_aborted_after_grace(self) -> None:
        """
        A client that gets the server's close_notify but neither answers nor
        closes is cut off after --shutdown-timeout seconds, not held open:
        idle timeout (1 s) plus grace (1 s).
        """
        files, daemon = self.serve("--idle-timeout", "1", "--shutdown-timeout", "1")
        assert daemon.tcp_port
        with tls_client(files, daemon.tcp_port) as client:
            client.sendall(b"x")
            client.settimeout(10)
            self.assertEqual(client.recv(10), b"X")
            wait_for(lambda: b"closed after" in daemon.output, timeout=10)
        self.assertLess(1.9, close_duration(daemon), 4)
        self.assertIn(b": idle timeout", daemon.output)
        assert_clean_log(self, daemon)

    def test_truncating_client_is_closed_without_traceback(self) -> None:
        """
        A client that ends with a bare FIN (no close_notify: a truncation
        attack) gets its replies and the connection closes cleanly.
        """
        files, daemon = self.serve()
        assert daemon.tcp_port
        with tls_client(files, daemon.tcp_port) as client:
            client.sendall(b"hello")
            client.settimeout(10)
            self.assertEqual(client.recv(10), b"HELLO")
            client.shutdown(socket.SHUT_WR)  # TCP FIN under the TLS session
            wait_for(lambda: b"closed after" in daemon.output, timeout=10)
        assert_clean_log(self, daemon)


def client_hello() -> bytes:
    """The first flight of a real TLS client: a ClientHello record."""
    bio_in, bio_out = ssl.MemoryBIO(), ssl.MemoryBIO()
    session = ssl.create_default_context().wrap_bio(bio_in, bio_out, server_hostname="localhost")
    with contextlib.suppress(ssl.SSLWantReadError):
        session.do_handshake()
    return bio_out.read()


def reset(client: socket.socket) -> None:
    """Close with RST instead of FIN, as a crashed client's kernel does."""
    client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    client.close()


def close_duration(daemon: Daemon) -> float:
    """How long the first closed connection lasted, from the daemon's close line."""
    match = re.search(rb"closed after ([0-9.]+)s", daemon.output)
    assert match is not None, daemon.output
    return float(match.group(1))


class TLSHandshakeAttackTests(SynchronousTestCase):
    def test_handshake_abandoned_halfway_is_closed_at_idle_timeout(self) -> None:
        """
        Half a ClientHello, then silence: the connection is closed after
        --idle-timeout (it cannot get a close_notify: there is no session),
        and counted as an idle timeout.
        """
        files = make_server_files(self.mktemp())
        command = twistd("--tcp", ssl_endpoint(files), "--no-udp", "--idle-timeout", "1")
        daemon = start_process(self, command, ("TCP",))
        assert daemon.tcp_port
        hello = client_hello()
        with socket.create_connection((HOST, daemon.tcp_port)) as client:
            client.sendall(hello[: len(hello) // 2])
            started = time.monotonic()
            closed_within(client, 5)
        self.assertLess(0.9, time.monotonic() - started)
        wait_for(lambda: b": idle timeout" in daemon.output)
        assert_clean_log(self, daemon)

    def test_resets_and_plain_text_mid_handshake_leave_no_trace(self) -> None:
        """
        Resets after part of a ClientHello, a plain-text client and bytes that
        are not TLS: each is closed, nothing is logged as an error, and a real
        client is still served afterwards.
        """
        files = make_server_files(self.mktemp())
        daemon = start_process(self, twistd("--tcp", ssl_endpoint(files), "--no-udp"), ("TCP",))
        assert daemon.tcp_port
        hello = client_hello()
        for cut in (0, 1, 5, len(hello) // 2, len(hello)):
            client = socket.create_connection((HOST, daemon.tcp_port))
            client.sendall(hello[:cut])
            reset(client)
        for junk in (
            b"hello world\r\n",
            bytes(range(256)) * 4,
            b"\x16\x03\x01\xff\xff" + b"A" * 64,
        ):
            with socket.create_connection((HOST, daemon.tcp_port)) as client:
                client.sendall(junk)
                closed_within(client, 10)
        with tls_client(files, daemon.tcp_port) as client:
            client.sendall(b"still here")
            client.settimeout(10)
            self.assertEqual(client.recv(64), b"STILL HERE")
        # Every connection that sent a byte is logged; the one reset before
        # sending any never left the kernel (its accept was deferred).
        wait_for(lambda: daemon.output.count(b"closed after") >= 8)
        assert_clean_log(self, daemon)

    def test_sigterm_during_a_handshake_exits_at_once(self) -> None:
        """
        SIGTERM with a client halfway through its handshake: there is no
        session to close, so the connection is closed at once, and the
        daemon exits on the signal without waiting out --shutdown-timeout.
        """
        files = make_server_files(self.mktemp())
        metrics = f"tcp:0:interface={HOST}"
        command = twistd("--tcp", ssl_endpoint(files), "--no-udp", "--shutdown-timeout", "20")
        daemon = start_process(self, [*command, "--metrics", metrics], ("TCP",))
        assert daemon.tcp_port
        metrics_port = metrics_port_of(daemon)
        hello = client_hello()
        with socket.create_connection((HOST, daemon.tcp_port)) as client:
            client.sendall(hello[: len(hello) // 2])
            open_now = ("caps_tcp_connections_open", ())
            wait_for(lambda: scrape(metrics_port)[open_now] == 1)
            started = time.monotonic()
            daemon.process.send_signal(signal.SIGTERM)
            closed_within(client, 10)
            self.assertEqual(daemon.process.wait(timeout=10), -signal.SIGTERM)
        self.assertLess(time.monotonic() - started, 10)
        self.assertIn(b": shutdown", daemon.output)
        assert_clean_log(self, daemon)
