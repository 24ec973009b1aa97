"""
Attacks on a C{haproxy:} listener of the installed daemon, through real
sockets: header slowloris, malformed headers, headers in pieces, oversized
version 2 lengths, resets mid-header; and every header form the PROXY
protocol specification accepts.
"""

import re
import socket
import ssl
import struct
import time

from twisted.trial.unittest import SynchronousTestCase

from tests.certificates import make_server_files, ssl_endpoint
from tests.proxy_headers import ACCEPTED, REFUSED
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
from twisted_caps.core.proxy_header import V2_SIGNATURE

HOST = "127.0.0.1"
V1_HEADER = b"PROXY TCP4 192.0.2.7 127.0.0.1 40000 1200\r\n"


def still_open(client: socket.socket) -> bool:
    """Whether the server has not closed C{client} (nothing to read, no end, no reset)."""
    client.setblocking(False)
    try:
        return client.recv(1) != b""
    except BlockingIOError:
        return True
    except ConnectionResetError:
        return False


def ask(port: int, data: bytes) -> bytes:
    """Send C{data}, half-close, and read the whole answer."""
    with socket.create_connection((HOST, port), timeout=10) as client:
        client.sendall(data)
        client.shutdown(socket.SHUT_WR)
        return closed_within(client, 10)


def reset(client: socket.socket) -> None:
    """Close with RST instead of FIN, as a crashed client's kernel does."""
    client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    client.close()


class ProxyListenerTests(SynchronousTestCase):
    def serve(self, *argv: str) -> tuple[Daemon, int]:
        """The daemon behind haproxy:tcp on loopback, with its metrics port."""
        command = twistd(
            "--tcp",
            f"haproxy:tcp:0:interface={HOST}",
            "--no-udp",
            "--metrics",
            f"tcp:0:interface={HOST}",
            *argv,
        )
        daemon = start_process(self, command, ("TCP",))
        assert daemon.tcp_port
        return daemon, metrics_port_of(daemon)

    def refused(self, metrics: int) -> dict[str, float]:
        samples = scrape(metrics)
        return {
            dict(labels)["reason"]: value
            for (name, labels), value in samples.items()
            if name == "caps_tcp_connections_refused_total"
        }

    def test_header_slowloris_is_bounded_in_number_and_in_time(self) -> None:
        """
        60 connections that send nothing or half a header, against
        --max-connections 10 and --idle-timeout 2: ten wait for their header
        (each holding a slot), the fifty others are closed at once; the ten
        are closed by the header deadline (here the idle timeout, 2 s); the
        refusals are counted by reason; a client with a valid header is
        served afterwards.
        """
        daemon, metrics = self.serve("--max-connections", "10", "--idle-timeout", "2")
        assert daemon.tcp_port
        clients: list[tuple[socket.socket, float]] = []
        for n in range(60):
            client = socket.create_connection((HOST, daemon.tcp_port))
            client.sendall(V1_HEADER[:20] if n % 2 else b"")
            clients.append((client, time.monotonic()))
        try:
            wait_for(lambda: sum(still_open(c) for c, _ in clients) == 10, timeout=5)
            waiting = [(c, opened) for c, opened in clients if still_open(c)]
            for client, opened in waiting:
                closed_within(client, opened + 4 - time.monotonic())
                self.assertGreater(time.monotonic() - opened, 1.9)
        finally:
            for client, _ in clients:
                client.close()
        self.assertEqual(ask(daemon.tcp_port, V1_HEADER + b"hello"), b"HELLO")
        refused = self.refused(metrics)
        self.assertEqual(refused["max-connections"], 50)
        self.assertEqual(refused["proxy-header-timeout"], 10)
        # A refusal line a second at most, not one per connection.
        self.assertLessEqual(daemon.output.count(b"refused a connection"), 6)
        assert_clean_log(self, daemon)

    def test_malformed_headers_are_closed_counted_and_logged_in_summary(self) -> None:
        """
        Every malformed header (version 1 and 2, as a fuzzer would try) is a
        closed connection, counted as refused "proxy-header", logged in a
        throttled one-line summary, never a traceback; the slots they held
        are free again.
        """
        daemon, metrics = self.serve("--max-connections", "5")
        assert daemon.tcp_port
        for header in REFUSED:
            with socket.create_connection((HOST, daemon.tcp_port)) as client:
                client.sendall(header + b"hello")
                self.assertEqual(closed_within(client, 10), b"", header)
        self.assertEqual(self.refused(metrics)["proxy-header"], len(REFUSED))
        self.assertLessEqual(daemon.output.count(b"refused a connection"), 4)
        self.assertIn(b"refused a connection from 127.0.0.1: ", daemon.output)
        self.assertEqual(ask(daemon.tcp_port, V1_HEADER + b"hello"), b"HELLO")
        self.assertEqual(scrape(metrics)[("caps_tcp_connections_open", ())], 0)
        assert_clean_log(self, daemon)

    def test_every_accepted_form_is_served_whole_and_byte_by_byte(self) -> None:
        """
        Each header form the specification (and HAProxy) sends starts the
        caps protocol with the header's client, or with the real connection's
        address when the header names none; a header arriving a byte at a
        time is read as well.
        """
        daemon, _ = self.serve()
        assert daemon.tcp_port
        for header in ACCEPTED:
            self.assertEqual(ask(daemon.tcp_port, header + b"hello"), b"HELLO", header)
        with socket.create_connection((HOST, daemon.tcp_port)) as client:
            client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            for byte in V1_HEADER:
                client.sendall(bytes([byte]))
                time.sleep(0.002)
            client.sendall(b"one byte at a time")
            client.shutdown(socket.SHUT_WR)
            self.assertEqual(closed_within(client, 10), b"ONE BYTE AT A TIME")
        wait_for(lambda: daemon.output.count(b"closed after") == len(ACCEPTED) + 1)
        peers = re.findall(rb"caps: (\S+) closed after", daemon.output)
        self.assertIn(b"192.0.2.7", peers)
        self.assertIn(b"2001:db8::7", peers)
        self.assertIn(b"127.0.0.1", peers)  # LOCAL, UNKNOWN, AF_UNSPEC
        self.assertIn(b"local", peers)  # AF_UNIX clients have no address
        assert_clean_log(self, daemon)

    def test_oversized_lengths_resets_and_half_headers_leave_nothing_behind(self) -> None:
        """
        A version 2 header announcing 65,535 bytes is refused at once; a
        header cut by a reset, a header then a reset, and a version 2 header
        that stops halfway (closed at the header deadline) leave no
        connection counted open and no traceback.
        """
        daemon, metrics = self.serve("--idle-timeout", "1")
        assert daemon.tcp_port
        with socket.create_connection((HOST, daemon.tcp_port)) as client:
            client.sendall(V2_SIGNATURE + b"\x21\x11\xff\xff" + b"x" * 1000)
            self.assertEqual(closed_within(client, 5), b"")
        for data in (V1_HEADER[:10], V1_HEADER, V1_HEADER + b"hello", V2_SIGNATURE[:7]):
            client = socket.create_connection((HOST, daemon.tcp_port))
            client.sendall(data)
            reset(client)
        with socket.create_connection((HOST, daemon.tcp_port)) as client:
            client.sendall(V2_SIGNATURE + b"\x21\x11\x00\x0c" + b"\x7f\x00")
            started = time.monotonic()
            self.assertEqual(closed_within(client, 5), b"")
            self.assertGreater(time.monotonic() - started, 0.5)
        wait_for(lambda: scrape(metrics)[("caps_tcp_connections_open", ())] == 0)
        refused = self.refused(metrics)
        self.assertEqual((refused["proxy-header"], refused["proxy-header-timeout"]), (1, 1))
        assert_clean_log(self, daemon)

    def test_ssl_listener_reads_the_header_before_tls(self) -> None:
        """
        On C{haproxy:ssl:} the header comes first, in clear, then TLS, as
        HAProxy sends it; the idle timeout still ends the TLS session with
        close_notify; a header sent inside TLS is not a header.
        """
        files = make_server_files(self.mktemp())
        command = twistd(
            "--tcp", f"haproxy:{ssl_endpoint(files)}", "--no-udp", "--idle-timeout", "1"
        )
        daemon = start_process(self, command, ("TCP",))
        assert daemon.tcp_port
        context = ssl.create_default_context(cafile=files.ca)
        raw = socket.create_connection((HOST, daemon.tcp_port), timeout=10)
        raw.sendall(V1_HEADER)
        with context.wrap_socket(
            raw, server_hostname="localhost", suppress_ragged_eofs=False
        ) as client:
            client.sendall(b"hello")
            self.assertEqual(read_until_close_notify(client), b"HELLO")
        raw = socket.create_connection((HOST, daemon.tcp_port), timeout=10)
        with (
            self.assertRaises((ssl.SSLError, OSError)),
            context.wrap_socket(raw, server_hostname="localhost") as client,
        ):
            client.sendall(V1_HEADER + b"hello")
            client.recv(10)
        wait_for(lambda: b"192.0.2.7 closed after" in daemon.output)
        self.assertIn(b"not a PROXY protocol header", daemon.output)
        assert_clean_log(self, daemon)
