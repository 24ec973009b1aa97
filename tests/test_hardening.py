"""
Hostile and heavy clients against a real server on loopback: backpressure,
10,000 concurrent connections, resets while paused, graceful SIGTERM.
"""

import select
import signal
import socket
import struct

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.internet.threads import deferToThread
from twisted.trial.unittest import SynchronousTestCase, TestCase

from tests.servers import (
    eventually,
    port_of,
    ready_within,
    start_in_reactor,
    start_process,
    twistd,
)
from twisted_caps.core.transform import capitalize
from twisted_caps.serving.open_files import raise_open_files_limit
from twisted_caps.serving.stream import CapsStreamFactory

HOST = "127.0.0.1"
MiB = 1024 * 1024
BLOCK = ("hello straße ﬁ привет 0123456789 " * 2048).encode()
REPLY_BLOCK = capitalize(BLOCK)


def memory_kib(pid: int, field: str) -> int:
    """A memory figure (VmRSS, VmHWM) of process C{pid}, in KiB."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise LookupError(field)


def expected_reply(offset: int, length: int) -> bytes:
    """Bytes C{offset} to C{offset + length} of the reply to BLOCK repeated."""
    start = offset % len(REPLY_BLOCK)
    repeats = (start + length) // len(REPLY_BLOCK) + 1
    return (REPLY_BLOCK * repeats)[start : start + length]


def stuff_until_blocked(client: socket.socket, quiet: float = 1.0) -> int:
    """Send BLOCKs without reading until the socket stays unwritable; return bytes sent."""
    sent = 0
    while ready_within(client.fileno(), select.POLLOUT, quiet):
        try:
            sent += client.send(BLOCK)
        except BlockingIOError:
            continue
    return sent


def finish_exchange(client: socket.socket, total: int, already_sent: int) -> int:
    """Send the rest of C{total} bytes while reading every reply; return bytes checked."""
    sent, received = already_sent, 0
    expected_total = len(REPLY_BLOCK) * (total // len(BLOCK))
    while received < expected_total:
        poller = select.poll()
        poller.register(client, select.POLLIN | (select.POLLOUT if sent < total else 0))
        events = poller.poll(30_000)
        if not events:
            raise AssertionError(f"stalled after {received} of {expected_total} bytes")
        writable = sent < total and events[0][1] & select.POLLOUT
        readable = events[0][1] & (select.POLLIN | select.POLLHUP | select.POLLERR)
        if writable:
            chunk = BLOCK[sent % len(BLOCK) :]
            sent += client.send(chunk[: total - sent])
        if readable:
            data = client.recv(4 * MiB)
            if not data:
                raise AssertionError(f"server closed after {received} bytes")
            if data != expected_reply(received, len(data)):
                raise AssertionError(f"wrong reply at byte {received}")
            received += len(data)
    return received


class BackpressureTests(SynchronousTestCase):
    def test_client_that_does_not_read_cannot_grow_server_memory(self) -> None:
        daemon = start_process(self, twistd("-i", HOST, "-p", "0", "--no-udp"), expect=("TCP",))
        assert daemon.tcp_port
        pid = daemon.process.pid
        rss_before = memory_kib(pid, "VmRSS")
        total = (256 * MiB // len(BLOCK)) * len(BLOCK)
        with socket.create_connection((HOST, daemon.tcp_port)) as client:
            client.setblocking(False)
            stuffed = stuff_until_blocked(client)
            # The server stopped reading: only socket buffers hold the rest.
            self.assertLess(stuffed, 64 * MiB)
            self.assertEqual(
                finish_exchange(client, total, stuffed), len(REPLY_BLOCK) * (total // len(BLOCK))
            )
        growth_kib = memory_kib(pid, "VmHWM") - rss_before
        self.assertLess(growth_kib, 64 * 1024)


def open_idle_connections(port: int, count: int, sources: int) -> list[socket.socket]:
    """Open C{count} connections from C{sources} loopback addresses; check each answers."""
    clients = []
    for n in range(count):
        client = socket.socket()
        client.bind((f"127.0.0.{n % sources + 1}", 0))
        client.setblocking(False)
        client.connect_ex((HOST, port))
        clients.append(client)
    pending = {c.fileno(): c for c in clients}
    connecting, poller = select.poll(), select.poll()
    for fd in pending:
        connecting.register(fd, select.POLLOUT)
    while pending:
        events = connecting.poll(30_000)
        if not events:
            raise AssertionError(f"{len(pending)} connections never completed")
        for fd, _ in events:
            client = pending.pop(fd)
            connecting.unregister(fd)
            if client.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR):
                raise AssertionError("a connection failed")
            client.send(b"ping")
            poller.register(fd, select.POLLIN)
    answered = 0
    while answered < count:
        events = poller.poll(30_000)
        if not events:
            raise AssertionError(f"only {answered} of {count} connections answered")
        for fd, _ in events:
            poller.unregister(fd)
            answered += 1
    for client in clients:
        client.setblocking(True)
        if client.recv(16) != b"PING":
            raise AssertionError("wrong answer")
    return clients


class ManyConnectionsTests(SynchronousTestCase):
    def test_ten_thousand_concurrent_connections_with_default_limits(self) -> None:
        raise_open_files_limit()
        count = 10_000
        daemon = start_process(self, twistd("-i", HOST, "-p", "0", "--no-udp"), expect=("TCP",))
        assert daemon.tcp_port
        pid = daemon.process.pid
        rss_before = memory_kib(pid, "VmRSS")
        # Twenty client addresses: the default --max-per-peer is 1000.
        clients = open_idle_connections(daemon.tcp_port, count, sources=20)
        try:
            per_connection_kib = (memory_kib(pid, "VmRSS") - rss_before) / count
            self.assertLess(per_connection_kib, 10)
            print(f"\nresident memory per idle connection: {per_connection_kib:.2f} KiB")
        finally:
            for client in clients:
                client.close()


def reset(client: socket.socket) -> None:
    """Close with RST instead of FIN, as a crashed client's kernel does."""
    client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    client.close()


def vanish_while_paused(port: int, clients: int) -> None:
    """Clients stuff the server until it pauses them, then reset."""
    for _ in range(clients):
        client = socket.create_connection((HOST, port))
        client.setblocking(False)
        stuff_until_blocked(client, quiet=0.2)
        reset(client)


def garbage_then_reset(port: int) -> None:
    client = socket.create_connection((HOST, port))
    client.sendall(bytes(range(256)) * 64 + b"\xff\xfe\xc3")
    reset(client)


class VanishingClientTests(TestCase):
    async def test_resets_while_paused_leave_no_connection_counted(self) -> None:
        service = start_in_reactor(self, "--no-udp")
        port = port_of(service, "TCP")
        await deferToThread(vanish_while_paused, port, 5)
        await deferToThread(garbage_then_reset, port)
        factory = service.stream_factory
        await eventually(lambda: factory.limits.open == 0 and not factory.connections)
        self.assertEqual(service.stream_factory.accepted, 6)


class GracefulShutdownTests(SynchronousTestCase):
    def test_sigterm_writes_queued_replies_then_closes_and_exits(self) -> None:
        daemon = start_process(self, twistd("-i", HOST, "-p", "0", "--no-udp"), expect=("TCP",))
        assert daemon.tcp_port
        with socket.create_connection((HOST, daemon.tcp_port)) as client:
            client.setblocking(False)
            stuffed = stuff_until_blocked(client)
            daemon.process.send_signal(signal.SIGTERM)
            client.setblocking(True)
            client.settimeout(30)
            received = b""
            while chunk := client.recv(4 * MiB):
                received += chunk
        self.assertGreater(len(received), 0)
        self.assertLessEqual(len(received), len(REPLY_BLOCK) * (stuffed // len(BLOCK) + 1))
        self.assertEqual(received, expected_reply(0, len(received)))
        self.assertEqual(daemon.process.wait(timeout=30), -signal.SIGTERM)
        self.assertNotIn(b"Traceback", daemon.output)
        self.assertIn(b"closed after", daemon.output)
        self.assertIn(b": shutdown", daemon.output)


class SignalTests(SynchronousTestCase):
    def test_sigint_stops_like_sigterm(self) -> None:
        daemon = start_process(self, twistd("-i", HOST, "-p", "0", "--no-udp"), expect=("TCP",))
        self.assertEqual(daemon.stop(signal.SIGINT), -signal.SIGINT)
        self.assertNotIn(b"Traceback", daemon.output)


class StreamFuzzTests(SynchronousTestCase):
    @settings(max_examples=300)
    @given(
        st.lists(
            st.one_of(
                st.binary(max_size=64),
                st.sampled_from(["pause", "resume"]),
            ),
            max_size=40,
        ),
        st.booleans(),
    )
    def test_random_chunks_pauses_and_half_close_give_the_whole_answer(
        self, events: list[bytes | str], half_close: bool
    ) -> None:
        protocol = CapsStreamFactory(Clock()).buildProtocol(None)
        transport = StringTransport()
        protocol.makeConnection(transport)
        sent = b""
        for event in events:
            if event == "pause":
                transport.pauseProducing()
            elif event == "resume":
                transport.resumeProducing()
            else:
                assert isinstance(event, bytes)
                protocol.dataReceived(event)
                sent += event
        if half_close:
            protocol.readConnectionLost()
            self.assertEqual(transport.value(), capitalize(sent))
            self.assertTrue(transport.disconnecting)
        else:
            self.assertEqual(capitalize(sent).startswith(transport.value()), True)
