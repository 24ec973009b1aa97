"""
Attacks on the TCP byte stream of the installed daemon, through real
sockets: slow readers, readers that stop, and clients that half-close and
then stop reading. Idle means no progress in either direction.
"""

import os
import re
import selectors
import shutil
import socket
import tempfile
import threading
import time

from twisted.internet import reactor
from twisted.trial.unittest import SynchronousTestCase, TestCase

from tests.servers import (
    Daemon,
    assert_clean_log,
    closed_within,
    eventually,
    port_of,
    start_in_reactor,
    start_process,
    twistd,
    wait_for,
)
from twisted_caps.core.transform import capitalize

HOST = "127.0.0.1"
KiB = 1024
MiB = 1024 * KiB
#: Four MiB of text whose capitals are almost twice as long (ΐ, 2 bytes, is
#: 6 bytes in capitals), so the replies back up into the server's buffers.
UPLOAD = "ΐΐ abcd".encode() * (4 * MiB // 9)


def small_buffered_client(port: int) -> socket.socket:
    """
    A client with small socket buffers, so the server's replies back up
    into the server (and flow control pauses it) instead of the client's
    kernel taking them all.
    """
    client = socket.socket()
    client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * KiB)
    client.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 64 * KiB)
    client.connect((HOST, port))
    return client


class Upload(threading.Thread):
    """Send C{data} on C{client}, then half-close; keep any error."""

    def __init__(self, client: socket.socket, data: bytes) -> None:
        super().__init__(daemon=True)
        self.client, self.data = client, data
        self.error: OSError | None = None

    def run(self) -> None:
        try:
            self.client.sendall(self.data)
            self.client.shutdown(socket.SHUT_WR)
        except OSError as error:
            self.error = error


def close_durations(daemon: Daemon) -> list[tuple[float, bytes]]:
    """Each closed connection's duration and reason, from the daemon's close lines."""
    return [
        (float(seconds), reason)
        for seconds, reason in re.findall(
            rb"closed after ([0-9.]+)s, .*: ([a-z ]+)\n", daemon.output
        )
    ]


class SlowReaderTests(SynchronousTestCase):
    def serve(self, *argv: str) -> Daemon:
        daemon = start_process(self, twistd("-i", HOST, "-p", "0", "--no-udp", *argv), ("TCP",))
        assert daemon.tcp_port
        return daemon

    def test_slow_steady_reader_gets_every_byte(self) -> None:
        """
        A client that uploads 4 MiB, half-closes, then reads 64 KiB every
        50 ms is never idle (its replies are progressing), though the
        server, paused by flow control, reads nothing from it for longer
        than --idle-timeout: it gets every byte of the answer (7.6 MiB), in
        order, and the server logs a client close, not an idle timeout.
        """
        daemon = self.serve("--idle-timeout", "1")
        assert daemon.tcp_port
        expected = capitalize(UPLOAD)
        with socket.create_connection((HOST, daemon.tcp_port)) as client:
            upload = Upload(client, UPLOAD)
            upload.start()
            upload.join(10)
            client.settimeout(10)
            received = bytearray()
            deadline = time.monotonic() + 60
            while chunk := client.recv(64 * KiB):
                received += chunk
                self.assertLess(time.monotonic(), deadline, "took too long")
                time.sleep(0.05)
        self.assertIsNone(upload.error)
        self.assertEqual(len(received), len(expected))
        self.assertEqual(bytes(received), expected)
        wait_for(lambda: close_durations(daemon))
        self.assertEqual([reason for _, reason in close_durations(daemon)], [b"client closed"])
        assert_clean_log(self, daemon)

    def test_reader_that_stops_is_closed_after_timeout_and_grace(self) -> None:
        """
        A client that uploads and never reads makes no progress: it is
        closed after --idle-timeout (1 to 1.2 of them, as the sweep sees
        output progress a tenth of a timeout apart), then --shutdown-timeout
        of grace.
        """
        daemon = self.serve("--idle-timeout", "1", "--shutdown-timeout", "1")
        assert daemon.tcp_port
        with small_buffered_client(daemon.tcp_port) as client:
            upload = Upload(client, UPLOAD)
            upload.start()
            wait_for(lambda: close_durations(daemon), timeout=15)
            closed_within(client, 10)  # what it did not read is lost, then the reset
            upload.join(10)
        [(duration, reason)] = close_durations(daemon)
        self.assertEqual(reason, b"idle timeout")
        self.assertLess(2 - 0.1, duration)
        self.assertLess(duration, 1.2 * 1 + 1 + 3)  # 1.2 timeouts, the grace, slack
        assert_clean_log(self, daemon)

    def test_half_closed_client_that_stops_reading_is_aborted(self) -> None:
        """
        A client that sends its text, half-closes and never reads the
        answer does not hold its connection for ever once its replies stop
        moving: it is aborted after 1 to 1.2 --idle-timeout periods
        (here over a UNIX socket, whose small kernel buffers leave replies
        waiting in the server once the client has half-closed).
        """
        scratch = tempfile.mkdtemp(prefix="caps-")
        self.addCleanup(shutil.rmtree, scratch, True)
        path = os.path.join(scratch, "caps.sock")
        command = twistd("--tcp", f"unix:{path}", "--no-udp", "--idle-timeout", "1")
        daemon = start_process(self, command, expect=())
        wait_for(lambda: f"serving TCP on {path}".encode() in daemon.output)
        with socket.socket(socket.AF_UNIX) as client:
            client.connect(path)
            client.sendall("ΐ".encode() * 20_000)  # 120,000 bytes of answer
            client.shutdown(socket.SHUT_WR)
            half_closed = time.monotonic()
            wait_for(lambda: close_durations(daemon), timeout=10)
            elapsed = time.monotonic() - half_closed
            closed_within(client, 10)
        [(_, reason)] = close_durations(daemon)
        self.assertEqual(reason, b"idle timeout")
        self.assertLess(elapsed, 1.2 * 1 + 2)  # 1.2 timeouts, slack
        assert_clean_log(self, daemon)


def read_until_all_close(clients: list[socket.socket], timeout: float) -> list[bytes]:
    """
    Read every client until the server ends its stream, closing each then;
    return what each received; fail if any is still open after C{timeout}.
    """
    received = {client: b"" for client in clients}
    with selectors.DefaultSelector() as selector:
        for client in clients:
            client.setblocking(False)
            selector.register(client, selectors.EVENT_READ)
        deadline = time.monotonic() + timeout
        while selector.get_map():
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"{len(selector.get_map())} clients still open")
            for key, _ in selector.select(left):
                ready = clients[clients.index(key.fileobj)]  # type: ignore[arg-type]
                try:
                    chunk = ready.recv(65536)
                except ConnectionResetError:
                    chunk = b""
                received[ready] += chunk
                if not chunk:
                    selector.unregister(ready)
                    ready.close()
    return [received[client] for client in clients]


class IdleSweepTests(SynchronousTestCase):
    """
    The idle timeout is one sweep per server, a tenth of the timeout apart,
    that looks at every connection: it closes them all, none early, none
    more than a tenth of a timeout late (plus the time a loaded machine
    takes to run the sweep).
    """

    def test_many_idle_connections_are_all_closed_within_the_bound(self) -> None:
        """
        200 clients each send a line, read its answer and fall silent: the
        server closes every one of them for idle timeout after 1 to 1.2
        seconds of silence (--idle-timeout 1), each client reading its
        answer and then a clean end of stream; 200 close lines, each with
        reason idle timeout.
        """
        count = 200
        daemon = start_process(
            self, twistd("-i", HOST, "-p", "0", "--no-udp", "--idle-timeout", "1"), ("TCP",)
        )
        assert daemon.tcp_port
        clients = []
        for _ in range(count):
            client = socket.create_connection((HOST, daemon.tcp_port), timeout=10)
            self.addCleanup(client.close)
            client.sendall(b"zzz\n")
            self.assertEqual(client.recv(16), b"ZZZ\n")
            clients.append(client)
        self.assertEqual(read_until_all_close(clients, 15), [b""] * count)
        wait_for(lambda: len(close_durations(daemon)) == count)
        durations = close_durations(daemon)
        self.assertEqual({reason for _, reason in durations}, {b"idle timeout"})
        self.assertGreaterEqual(min(seconds for seconds, _ in durations), 1.0)
        # The first connection may wait its whole life for the sweep: 1.2 s,
        # plus the time to open the 199 others and for the clients to close.
        self.assertLess(max(seconds for seconds, _ in durations), 1.2 + 1.5)
        assert_clean_log(self, daemon)


class IdleTimerCostTests(TestCase):
    """
    Through real sockets, in the test's reactor: idle connections cost the
    reactor no timer each, only the one sweep of the service.
    """

    async def test_idle_connections_add_no_timer_each(self) -> None:
        """
        With one idle connection open (default --idle-timeout 300), 99 more
        add no call to the reactor's timers, where a timer per connection
        would add 99; and every one of them is answered.
        """
        service = start_in_reactor(self, "--no-udp")
        port = port_of(service, "TCP")
        factory = service.stream_factory
        clients: list[socket.socket] = []

        async def open_idle(count: int) -> int:
            """Open C{count} more clients, each answered once; return the timers then."""
            for _ in range(count):
                client = socket.create_connection((HOST, port), timeout=10)
                self.addCleanup(client.close)
                client.sendall(b"idle")
                clients.append(client)
            await eventually(lambda: factory.byte_totals()[1] == 4 * len(clients))
            return len(reactor.getDelayedCalls())

        timers_with_one = await open_idle(1)
        timers_with_hundred = await open_idle(99)
        self.assertEqual(len(factory.connections), 100)
        self.assertEqual(timers_with_hundred, timers_with_one)
        self.assertEqual([client.recv(16) for client in clients], [b"IDLE"] * 100)
