"""Tests for L{twisted_caps.core.addresses}: addresses as users write them."""

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from twisted_caps.core.addresses import host_port


class HostPortTests(SynchronousTestCase):
    def test_ipv4_and_names_are_plain(self) -> None:
        self.assertEqual(host_port("127.0.0.1", 1200), "127.0.0.1:1200")
        self.assertEqual(host_port("localhost", 80), "localhost:80")

    def test_ipv6_is_bracketed(self) -> None:
        self.assertEqual(host_port("::1", 1200), "[::1]:1200")
        self.assertEqual(host_port("fe80::1%eth0", 7), "[fe80::1%eth0]:7")

    @given(st.ip_addresses(v=6), st.integers(0, 65535))
    def test_the_port_is_what_follows_the_last_colon(self, address: object, port: int) -> None:
        """Whatever the host, splitting at the last colon gives the port back."""
        written = host_port(str(address), port)
        host, _, number = written.rpartition(":")
        self.assertEqual((host, int(number)), (f"[{address}]", port))
