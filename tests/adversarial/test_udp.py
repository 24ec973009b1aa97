"""
Attacks on the installed daemon's UDP listener through real sockets:
datagrams of every size up to the largest, replies too large to send,
empty datagrams, bursts, and forged sources that would set two services
answering each other.
"""

import os
import socket
import struct
import subprocess
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from functools import partial

from twisted.trial.unittest import SkipTest, SynchronousTestCase

from tests.servers import (
    BIN,
    SERVING,
    Daemon,
    metric_total,
    metrics_port_of,
    start_process,
    twistd,
    wait_for,
)
from twisted_caps.core.loop_guard import LOOP_STREAK, LOOP_WINDOW
from twisted_caps.core.transform import capitalize
from twisted_caps.serving.datagram import MAX_UDP_PAYLOAD, RECEIVE_BUFFER

#: A 60,000-byte datagram whose reply would be 180,000 bytes: each "ΐ" (two
#: bytes) upper-cases to three characters of two bytes each.
OVERSIZE_REPLY = "ΐ".encode() * 30_000
#: The largest UDP payload over IPv6, 20 bytes more than over IPv4.
MAX_UDP6_PAYLOAD = 65527
METRICS = ("--metrics", "tcp:0:interface=127.0.0.1")
#: The source port of spoofed floods: above the kernel's ephemeral range.
SPOOFED_PORT = 65432


def sample(size: int) -> bytes:
    """C{size} bytes of lower-case text that differ along their length."""
    alphabet = b"abcdefghijklmnopqrstuvwxyz0123456789 "
    return bytes(alphabet[(i * 7 + i // 37) % len(alphabet)] for i in range(size))


def has_ipv6_loopback() -> bool:
    """Whether this machine can bind a UDP socket to ::1."""
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as probe:
            probe.bind(("::1", 0))
    except OSError:
        return False
    return True


@contextmanager
def udp_client(host: str) -> Iterator[socket.socket]:
    """A UDP socket of C{host}'s family with a ten-second receive timeout."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as client:
        client.settimeout(10)
        yield client


class DatagramSizeTests:
    """
    Every datagram is read whole and answered whole when its reply fits in
    one datagram; a reply that does not is not sent, and is counted and
    logged. Subclasses run this against one daemon layout each.
    """

    #: The address clients send to, and the daemon's --interface unless given.
    host = "127.0.0.1"
    interface = ""
    layout: tuple[str, ...] = ()
    daemon: Daemon
    metrics: int

    def setUp(self) -> None:
        case = self.case()
        self.daemon = start_process(
            case, twistd("-i", self.interface or self.host, "-p", "0", *METRICS, *self.layout)
        )
        self.metrics = metrics_port_of(self.daemon)

    def case(self) -> SynchronousTestCase:
        assert isinstance(self, SynchronousTestCase)
        return self

    @property
    def address(self) -> tuple[str, int]:
        assert self.daemon.udp_port is not None
        return (self.host, self.daemon.udp_port)

    def udp_total(self, name: str, **labels: str) -> float:
        return metric_total(self.metrics, name, **labels)

    def wait_for_udp_total(self, name: str, expected: float, **labels: str) -> None:
        """Poll the metric until it reads C{expected} (workers report once a second)."""
        wait_for(lambda: self.udp_total(name, **labels) == expected, timeout=10)

    def test_datagrams_over_8192_bytes_are_answered_whole(self) -> None:
        """
        Datagrams of 8,193, 32,768 and 65,507 bytes (the largest over IPv4)
        get their whole capitalization back, and the byte counters count
        their real sizes.
        """
        case = self.case()
        sizes = (8193, 32768, MAX_UDP_PAYLOAD)
        with udp_client(self.host) as client:
            for size in sizes:
                datagram = sample(size)
                client.sendto(datagram, self.address)
                reply = client.recv(MAX_UDP6_PAYLOAD + 1)
                case.assertEqual(len(reply), size)
                case.assertEqual(reply, capitalize(datagram))
        self.wait_for_udp_total("caps_udp_datagrams_total", len(sizes), result="answered")
        self.wait_for_udp_total("caps_bytes_received_total", sum(sizes), transport="udp")
        self.wait_for_udp_total("caps_bytes_sent_total", sum(sizes), transport="udp")

    def test_reply_over_65507_bytes_is_dropped_and_counted(self) -> None:
        """
        A 60,000-byte datagram whose reply would be 180,000 bytes gets no
        reply (not a truncated one), is counted as oversize and logged; the
        next datagram from the same socket is answered.
        """
        case = self.case()
        with udp_client(self.host) as client:
            client.sendto(OVERSIZE_REPLY, self.address)
            self.wait_for_udp_total("caps_udp_datagrams_total", 1, result="oversize")
            client.sendto(b"after", self.address)
            # A reply to the oversize datagram would have been queued first.
            case.assertEqual(client.recv(MAX_UDP6_PAYLOAD + 1), b"AFTER")
        self.wait_for_udp_total("caps_bytes_received_total", 60_005, transport="udp")
        self.wait_for_udp_total("caps_bytes_sent_total", 5, transport="udp")
        case.assertIn(b"reply of 180000 bytes exceeds the UDP maximum", self.daemon.output)

    def test_a_burst_of_the_largest_datagrams_is_answered_whole(self) -> None:
        """
        Twenty datagrams of 65,507 bytes sent back to back all get their
        reply: the service's receive buffer holds them, where the kernel's
        default holds three.
        """
        case = self.case()
        with open("/proc/sys/net/core/rmem_max") as limit:
            if int(limit.read()) < RECEIVE_BUFFER:
                raise SkipTest("net.core.rmem_max is below the buffer caps asks for")
        burst = [bytes([ord("a") + n]) * MAX_UDP_PAYLOAD for n in range(20)]
        with udp_client(self.host) as client:
            client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER)
            for datagram in burst:
                client.sendto(datagram, self.address)
            replies = {client.recv(MAX_UDP6_PAYLOAD + 1) for _ in burst}
        case.assertEqual(replies, {datagram.upper() for datagram in burst})

    def test_empty_datagram_gets_an_empty_reply(self) -> None:
        """An empty datagram is a valid request: its reply is an empty datagram."""
        with udp_client(self.host) as client:
            client.sendto(b"", self.address)
            self.case().assertEqual(client.recv(16), b"")


class IPv4DatagramSizeTests(DatagramSizeTests, SynchronousTestCase):
    """Datagram sizes over IPv4, one process."""


class WorkersDatagramSizeTests(DatagramSizeTests, SynchronousTestCase):
    """Datagram sizes over IPv4 with two worker processes sharing the socket."""

    layout = ("--workers", "2")


class DualStackDatagramSizeTests(DatagramSizeTests, SynchronousTestCase):
    """Datagram sizes from IPv4 clients to a dual-stack listener (-i ::)."""

    interface = "::"

    def setUp(self) -> None:
        if not has_ipv6_loopback():
            raise self.skipTest("this machine has no IPv6 loopback (::1)")
        super().setUp()


class IPv6DatagramSizeTests(DatagramSizeTests, SynchronousTestCase):
    """Datagram sizes over IPv6, where a datagram may be 20 bytes longer."""

    host = "::1"

    def setUp(self) -> None:
        if not has_ipv6_loopback():
            raise self.skipTest("this machine has no IPv6 loopback (::1)")
        super().setUp()

    def test_longest_ipv6_datagram_is_read_whole(self) -> None:
        """
        A 65,527-byte IPv6 datagram (the largest) is read whole: its reply,
        65,527 bytes, is over the 65,507 every reply must fit, so it is
        dropped and counted, never cut short; a datagram of the same length
        whose reply is shorter (dotless i upper-cases to one byte) is answered.
        """
        with udp_client(self.host) as client:
            client.sendto(b"a" * MAX_UDP6_PAYLOAD, self.address)
            self.wait_for_udp_total("caps_udp_datagrams_total", 1, result="oversize")
            shrinking = "\N{LATIN SMALL LETTER DOTLESS I}".encode() * (MAX_UDP6_PAYLOAD // 2)
            client.sendto(shrinking, self.address)
            reply = client.recv(MAX_UDP6_PAYLOAD + 1)
        self.assertEqual(reply, b"I" * (MAX_UDP6_PAYLOAD // 2))
        self.wait_for_udp_total(
            "caps_bytes_received_total", 2 * MAX_UDP6_PAYLOAD - 1, transport="udp"
        )
        self.assertIn(b"reply of 65527 bytes exceeds the UDP maximum", self.daemon.output)


def forge_datagram(source_port: int, destination_port: int, payload: bytes) -> None:
    """
    Send one UDP datagram to 127.0.0.1:C{destination_port} that claims to
    come from 127.0.0.1:C{source_port}, a port another process holds.
    """
    forge_datagrams([("127.0.0.1", source_port)], destination_port, payload)


def forge_datagrams(
    sources: Iterable[tuple[str, int]], destination_port: int, payload: bytes
) -> None:
    """
    Send C{payload} to 127.0.0.1:C{destination_port} once from each of
    C{sources}, spoofed: the IPv4 and UDP headers are written by hand on a
    raw socket (which needs CAP_NET_RAW; the test is skipped without it).
    The kernel fills in the IP checksum; a UDP checksum of 0 means none.
    """
    try:
        raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
    except PermissionError as error:
        raise SkipTest(f"forging a datagram needs a raw socket: {error}") from None
    destination = socket.inet_aton("127.0.0.1")
    with raw:
        for host, port in sources:
            udp = struct.pack("!HHHH", port, destination_port, 8 + len(payload), 0) + payload
            ip = struct.pack(
                "!BBHHHBBH4s4s",
                *(0x45, 0, 20 + len(udp), 0, 0, 64, socket.IPPROTO_UDP, 0),
                *(socket.inet_aton(host), destination),
            )
            raw.sendto(ip + udp, ("127.0.0.1", 0))


class LoopTests(SynchronousTestCase):
    """
    Two caps services, each with no rate limit: a datagram forged to one of
    them with the other's port as its source starts them answering each
    other; loop protection must end that within 100 datagrams.
    """

    def start_service(self, *layout: str) -> tuple[Daemon, int]:
        """A daemon on 127.0.0.1 with no UDP rate limit, and its metrics port."""
        daemon = start_process(
            self, twistd("-i", "127.0.0.1", "-p", "0", "--udp-rate", "0", *METRICS, *layout)
        )
        return daemon, metrics_port_of(daemon)

    def assert_one_forged_datagram_dies_out(self, *layout: str) -> None:
        first, first_metrics = self.start_service(*layout)
        second, second_metrics = self.start_service()
        assert first.udp_port and second.udp_port
        metrics = (first_metrics, second_metrics)

        def total(name: str, **labels: str) -> float:
            return sum(metric_total(port, name, **labels) for port in metrics)

        forge_datagram(second.udp_port, first.udp_port, b"forged")
        wait_for(lambda: total("caps_udp_datagrams_total", result="loop") >= 1, timeout=10)
        # The loop is over: a client's datagram to each is answered at once.
        for port in (first.udp_port, second.udp_port):
            with udp_client("127.0.0.1") as client:
                client.sendto(b"after", ("127.0.0.1", port))
                self.assertEqual(client.recv(16), b"AFTER")
        wait_for(lambda: total("caps_udp_datagrams_total", result="answered") >= 2)
        received = total("caps_udp_datagrams_received_total")
        # The forged datagram, at least one bounce each way, the two clients'.
        self.assertGreaterEqual(received, 5)
        self.assertLess(received, 100)
        self.assertIn(
            b"a service answering back could start a reply loop", first.output + second.output
        )

    def test_one_forged_datagram_causes_fewer_than_100(self) -> None:
        """
        A datagram forged from one caps service's port to another's, with
        --udp-rate 0, causes fewer than 100 datagrams in all, then neither
        service refuses a normal client.
        """
        self.assert_one_forged_datagram_dies_out()

    def test_one_forged_datagram_causes_fewer_than_100_with_workers(self) -> None:
        """The same with one of the services run by two worker processes."""
        self.assert_one_forged_datagram_dies_out("--workers", "2")

    def test_one_forged_datagram_between_two_listeners_of_one_service(self) -> None:
        """
        The same between two UDP listeners of one service: loop protection
        is not only about the port that received the datagram.
        """
        daemon = start_process(
            self,
            twistd("--no-tcp", "--udp-rate", "0", *METRICS, *("--udp", "127.0.0.1:0") * 2),
            expect=("UDP",),
        )
        metrics = metrics_port_of(daemon)
        wait_for(lambda: len(SERVING.findall(daemon.output)) == 2)
        first, second = (int(port) for *_, port in SERVING.findall(daemon.output))
        forge_datagram(second, first, b"forged")
        wait_for(lambda: metric_total(metrics, "caps_udp_datagrams_total", result="loop") >= 1)
        self.assertLess(metric_total(metrics, "caps_udp_datagrams_received_total"), 100)

    def test_a_loop_is_stopped_after_a_flood_of_spoofed_sources(self) -> None:
        """
        20,000 upper-case datagrams from as many spoofed sources (more than
        loop protection remembers) leave it working: a forged loop between
        two services still ends within 100 datagrams, and a client is
        answered.
        """
        first, first_metrics = self.start_service()
        second, second_metrics = self.start_service()
        assert first.udp_port and second.udp_port
        # Addresses of 127.0.0.0/8 that nothing listens on, and a port the
        # kernel never hands out, so no other process gets the replies.
        with open("/proc/sys/net/ipv4/ip_local_port_range") as ephemeral:
            if int(ephemeral.read().split()[1]) >= SPOOFED_PORT:
                raise SkipTest(f"port {SPOOFED_PORT} is in the ephemeral range")
        received = partial(metric_total, first_metrics, "caps_udp_datagrams_received_total")
        # A thousand at a time, so that none is lost in a full receive buffer.
        for hundreds in range(100):
            spoofed = [(f"127.77.{hundreds}.{n}", SPOOFED_PORT) for n in range(1, 201)]
            forge_datagrams(spoofed, first.udp_port, b"SPOOFED")
            if hundreds % 5 == 4:
                wait_for(partial(lambda sent: received() == sent, 200 * (hundreds + 1)))
        forge_datagram(second.udp_port, first.udp_port, b"forged")

        def refused_loops() -> float:
            return sum(
                metric_total(port, "caps_udp_datagrams_total", result="loop")
                for port in (first_metrics, second_metrics)
            )

        wait_for(lambda: refused_loops() >= 1)
        self.assertLess(metric_total(second_metrics, "caps_udp_datagrams_received_total"), 50)
        with udp_client("127.0.0.1") as client:
            client.sendto(b"after", ("127.0.0.1", first.udp_port))
            self.assertEqual(client.recv(16), b"AFTER")

    def test_normal_clients_are_answered(self) -> None:
        """
        Lower-case text back to back, and the same upper-case text at a
        person's pace, all from one port, are answered every time.
        """
        daemon, metrics = self.start_service()
        assert daemon.udp_port
        address = ("127.0.0.1", daemon.udp_port)
        with udp_client("127.0.0.1") as client:
            for _ in range(200):
                client.sendto(b"hello", address)
                self.assertEqual(client.recv(16), b"HELLO")
            for _ in range(LOOP_STREAK + 3):
                client.sendto(b"HELLO", address)
                self.assertEqual(client.recv(16), b"HELLO")
                time.sleep(LOOP_WINDOW + 0.1)
        self.assertEqual(metric_total(metrics, "caps_udp_datagrams_total", result="loop"), 0)

    def test_a_client_echoing_its_replies_fast_is_cut_off(self) -> None:
        """
        What a client can see of loop protection: sending the same upper-case
        text from one port back to back, it gets ten replies, then none
        (counted as a loop) until it sends something else.
        """
        daemon, metrics = self.start_service()
        assert daemon.udp_port
        address = ("127.0.0.1", daemon.udp_port)
        with udp_client("127.0.0.1") as client:
            for _ in range(LOOP_STREAK):
                client.sendto(b"ECHO", address)
                self.assertEqual(client.recv(16), b"ECHO")
            client.sendto(b"ECHO", address)
            wait_for(lambda: metric_total(metrics, "caps_udp_datagrams_total", result="loop") == 1)
            client.sendto(b"else", address)
            self.assertEqual(client.recv(16), b"ELSE")


class ClientDatagramTests(SynchronousTestCase):
    """caps-client -u against the daemon, with texts at the edge of a datagram."""

    def test_text_too_long_for_a_datagram_is_one_line_and_status_1(self) -> None:
        """
        A text longer than 65,507 bytes, which the kernel refuses to send as
        one datagram, is one line on stderr and exit status 1: no "Unhandled
        error in Deferred" and no invented "connection refused" after it.
        The largest text that fits is still answered whole.
        """
        daemon = start_process(self, twistd("-i", "127.0.0.1", "-p", "0", "--no-tcp"), ("UDP",))
        client = [os.path.join(BIN, "caps-client"), "-u", "--host", "127.0.0.1"]
        client += ["-p", str(daemon.udp_port)]
        for size in (MAX_UDP_PAYLOAD + 1, 70_000):
            done = subprocess.run(
                [*client, "a" * size], capture_output=True, timeout=30, stdin=subprocess.DEVNULL
            )
            self.assertEqual((done.returncode, done.stdout), (1, b""), done.stderr)
            lines = done.stderr.splitlines()
            self.assertEqual(len(lines), 1, done.stderr)
            self.assertIn(b"too long", lines[0])
        done = subprocess.run(
            [*client, "a" * MAX_UDP_PAYLOAD],
            capture_output=True,
            timeout=30,
            stdin=subprocess.DEVNULL,
        )
        self.assertEqual((done.returncode, done.stderr), (0, b""))
        self.assertEqual(done.stdout, b"A" * MAX_UDP_PAYLOAD + b"\n")
