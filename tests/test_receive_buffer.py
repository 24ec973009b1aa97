"""
Tests for L{twisted_caps.serving.datagram.enlarge_receive_buffer}, on real UDP
sockets (the kernel decides what a buffer becomes).
"""

import socket
from types import SimpleNamespace

from twisted.trial.unittest import SynchronousTestCase

from twisted_caps.serving.datagram import RECEIVE_BUFFER, enlarge_receive_buffer

#: Linux's option to set a receive buffer over net.core.rmem_max (root only).
SO_RCVBUFFORCE = 33


class ReceiveBufferTests(SynchronousTestCase):
    def udp_socket(self) -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.addCleanup(sock.close)
        return sock

    def receive_buffer(self, sock: socket.socket) -> int:
        return sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)

    def test_the_buffer_is_enlarged(self) -> None:
        """The kernel gives what it allows: more than its default, up to rmem_max."""
        sock = self.udp_socket()
        before = self.receive_buffer(sock)
        enlarge_receive_buffer(SimpleNamespace(socket=sock))
        with open("/proc/sys/net/core/rmem_max") as limit:
            if int(limit.read()) > before:
                self.assertGreater(self.receive_buffer(sock), before)

    def test_a_larger_buffer_is_left_alone(self) -> None:
        sock = self.udp_socket()
        try:
            sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, 4 * RECEIVE_BUFFER)
        except PermissionError:
            raise self.skipTest("setting a buffer over net.core.rmem_max needs root") from None
        before = self.receive_buffer(sock)
        enlarge_receive_buffer(SimpleNamespace(socket=sock))
        self.assertEqual(self.receive_buffer(sock), before)

    def test_a_transport_without_a_socket_is_left_alone(self) -> None:
        enlarge_receive_buffer(SimpleNamespace())
