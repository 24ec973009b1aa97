"""Tests for L{twisted_caps.serving.listeners}: endpoints built from listeners."""

from twisted.internet.endpoints import TCP4ServerEndpoint, UNIXServerEndpoint
from twisted.internet.testing import MemoryReactor
from twisted.trial.unittest import SynchronousTestCase

from twisted_caps.serving.config import TcpListener
from twisted_caps.serving.listeners import stream_endpoint
from twisted_caps.serving.proxy_protocol import ProxyProtocolReactor


class StreamEndpointTests(SynchronousTestCase):
    def test_plain_listeners_are_twisted_s_endpoints(self) -> None:
        reactor = MemoryReactor()
        tcp = stream_endpoint(TcpListener("tcp:1200:interface=127.0.0.1"), reactor)
        self.assertIsInstance(tcp, TCP4ServerEndpoint)
        unix = stream_endpoint(TcpListener("unix:/tmp/caps.sock"), reactor)
        self.assertIsInstance(unix, UNIXServerEndpoint)

    def test_a_haproxy_listener_reads_the_header_through_its_reactor(self) -> None:
        """The inner endpoint listens through the PROXY-protocol reactor, not the plain one."""
        endpoint = stream_endpoint(TcpListener("haproxy:tcp:1200"), MemoryReactor())
        assert isinstance(endpoint, TCP4ServerEndpoint)
        self.assertIsInstance(endpoint._reactor, ProxyProtocolReactor)

    def test_an_unknown_type_is_one_line(self) -> None:
        error = self.assertRaises(
            ValueError, stream_endpoint, TcpListener("nope:1"), MemoryReactor()
        )
        self.assertNotIn("\n", str(error))
        self.assertIn("nope", str(error))
