"""
Deterministic trial tests of a client on a network that misbehaves, with
no sockets and no waiting: the test moves bytes and time itself.
Run with: python -m twisted.trial examples/test_trial_memory.py
"""

from twisted.internet.error import TimeoutError
from twisted.trial.unittest import SynchronousTestCase

from twisted_caps.client import capitalize_over_tcp, capitalize_over_udp
from twisted_caps.testing import MemoryCapsServer, NetworkConditions


class FlakyNetworkTests(SynchronousTestCase):
    def test_reply_arriving_a_byte_at_a_time(self) -> None:
        server = MemoryCapsServer.start(conditions=NetworkConditions(chunk_size=1))
        reply = capitalize_over_tcp(server.reactor, server.host, server.tcp_port, "straße".encode())
        server.flush()
        self.assertEqual(self.successResultOf(reply), b"STRASSE")

    def test_lost_datagram_is_sent_again(self) -> None:
        server = MemoryCapsServer.start(conditions=NetworkConditions(drop_datagrams=(0,)))
        reply = capitalize_over_udp(server.reactor, server.host, server.udp_port, b"hi", timeout=3)
        server.advance(0.9)  # the first datagram was lost; no reply yet
        self.assertNoResult(reply)
        server.advance(0.1)  # the client sends again after timeout / 3
        self.assertEqual(self.successResultOf(reply), b"HI")

    def test_slow_server_times_out(self) -> None:
        server = MemoryCapsServer.start(conditions=NetworkConditions(delay=10))
        reply = capitalize_over_tcp(server.reactor, server.host, server.tcp_port, b"hi", timeout=5)
        server.advance(5)
        self.failureResultOf(reply, TimeoutError)
