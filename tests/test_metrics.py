"""Tests for L{twisted_caps.serving.metrics}: scrape /metrics over real HTTP."""

import socket

from twisted.internet.threads import deferToThread
from twisted.trial.unittest import TestCase

from tests.servers import (
    HOST,
    course_tcp_client,
    course_udp_client,
    eventually,
    port_of,
    scrape,
    start_in_reactor,
)
from twisted_caps.serving.service import CapsService


def traffic(tcp_port: int, udp_port: int) -> None:
    course_tcp_client(tcp_port, "straße".encode())
    course_udp_client(udp_port, b"hello")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as privileged:
        # Source port 1023 is refused by loop protection; binding it needs
        # root, so the test sends from it only where it can.
        try:
            privileged.bind((HOST, 1023))
        except PermissionError:
            return
        privileged.sendto(b"loop", (HOST, udp_port))


class MetricsTests(TestCase):
    def metrics_port(self, service: CapsService) -> int:
        assert service.metrics_port is not None
        return int(service.metrics_port.getHost().port)  # type: ignore[attr-defined]

    async def test_numbers_move_with_tcp_and_udp_traffic(self) -> None:
        service = start_in_reactor(self, "--metrics", "tcp:0:interface=127.0.0.1")
        port = self.metrics_port(service)
        before = await deferToThread(scrape, port)
        self.assertEqual(before[("caps_tcp_connections_accepted_total", ())], 0)
        await deferToThread(traffic, port_of(service, "TCP"), port_of(service, "UDP"))
        await eventually(lambda: not service.stream_factory.connections)
        after = await deferToThread(scrape, port)
        self.assertEqual(after[("caps_tcp_connections_accepted_total", ())], 1)
        self.assertEqual(after[("caps_tcp_connections_open", ())], 0)
        self.assertEqual(after[("caps_bytes_received_total", (("transport", "tcp"),))], 7)
        self.assertEqual(after[("caps_bytes_sent_total", (("transport", "tcp"),))], 7)
        self.assertEqual(after[("caps_bytes_received_total", (("transport", "udp"),))] >= 5, True)
        self.assertEqual(after[("caps_udp_datagrams_total", (("result", "answered"),))], 1)
        loop = after[("caps_udp_datagrams_total", (("result", "loop"),))]
        self.assertEqual(after[("caps_udp_datagrams_received_total", ())], 1 + loop)
        self.assertIn(("process_resident_memory_bytes", ()), after)

    async def test_refusals_are_counted_by_limit(self) -> None:
        service = start_in_reactor(
            self, "--metrics", "tcp:0:interface=127.0.0.1", "--max-connections", "1"
        )
        tcp_port = port_of(service, "TCP")
        first = socket.create_connection((HOST, tcp_port))
        self.addCleanup(first.close)
        # Answered, so accepted and holding the one slot: a client that has
        # sent nothing is accepted only when the kernel's deferral ends.
        first.sendall(b"a")
        self.assertEqual(await deferToThread(first.recv, 1), b"A")
        await deferToThread(course_tcp_client, tcp_port, b"x")
        after = await deferToThread(scrape, self.metrics_port(service))
        refused = after[("caps_tcp_connections_refused_total", (("reason", "max-connections"),))]
        self.assertEqual(refused, 1)
        self.assertEqual(after[("caps_tcp_connections_open", ())], 1)
