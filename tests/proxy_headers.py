"""
PROXY protocol headers for the tests: every form a receiver must accept,
with what it says, and the malformed ones a fuzzer would try first.
"""

import socket
import struct

from twisted.internet.address import IPv4Address, IPv6Address, UNIXAddress

from twisted_caps.core.proxy_header import MAX_V2_LENGTH, V2_SIGNATURE, ProxyHeader


def v2(command: int, family: int, block: bytes = b"") -> bytes:
    """A version 2 header: command (0 LOCAL, 1 PROXY), family/transport byte, address block."""
    return V2_SIGNATURE + bytes([0x20 | command, family]) + struct.pack("!H", len(block)) + block


def inet(source: str, destination: str, ports: tuple[int, int] = (40000, 1200)) -> bytes:
    return socket.inet_aton(source) + socket.inet_aton(destination) + struct.pack("!HH", *ports)


def inet6(source: str, destination: str, ports: tuple[int, int] = (40000, 1200)) -> bytes:
    packed = [socket.inet_pton(socket.AF_INET6, a) for a in (source, destination)]
    return packed[0] + packed[1] + struct.pack("!HH", *ports)


def unix(source: bytes, destination: bytes) -> bytes:
    return source.ljust(108, b"\0") + destination.ljust(108, b"\0")


#: A TLV as HAProxy appends them (PP2_TYPE_AUTHORITY, then a NOOP pad).
TLVS = b"\x02\x00\x0bexample.com" + b"\x04\x00\x03\x00\x00\x00"

#: Every form the specification (and HAProxy's output) asks a receiver to
#: accept, with what it says.
ACCEPTED: dict[bytes, ProxyHeader] = {
    b"PROXY TCP4 192.0.2.7 198.51.100.1 40000 1200\r\n": ProxyHeader(
        IPv4Address("TCP", "192.0.2.7", 40000), IPv4Address("TCP", "198.51.100.1", 1200)
    ),
    b"PROXY TCP4 255.255.255.255 0.0.0.0 65535 0\r\n": ProxyHeader(
        IPv4Address("TCP", "255.255.255.255", 65535), IPv4Address("TCP", "0.0.0.0", 0)
    ),
    b"PROXY TCP6 2001:db8::7 2001:db8::1 40000 1200\r\n": ProxyHeader(
        IPv6Address("TCP", "2001:db8::7", 40000), IPv6Address("TCP", "2001:db8::1", 1200)
    ),
    # HAProxy, when the client and server families differ.
    b"PROXY TCP6 ::ffff:192.0.2.7 2001:DB8:0:0:0:0:0:1 40000 1200\r\n": ProxyHeader(
        IPv4Address("TCP", "192.0.2.7", 40000), IPv6Address("TCP", "2001:db8::1", 1200)
    ),
    # HAProxy from a UNIX-socket frontend, and the long form.
    b"PROXY UNKNOWN\r\n": ProxyHeader(),
    b"PROXY UNKNOWN ffff::1 ffff::2 65535 65535\r\n": ProxyHeader(),
    v2(0, 0x00): ProxyHeader(),  # LOCAL: HAProxy's health checks
    v2(0, 0x11, inet("10.0.0.1", "10.0.0.2")): ProxyHeader(),  # LOCAL ignores addresses
    v2(1, 0x00): ProxyHeader(),  # PROXY, AF_UNSPEC: HAProxy from a UNIX-socket frontend
    v2(1, 0x11, inet("192.0.2.7", "198.51.100.1")): ProxyHeader(
        IPv4Address("TCP", "192.0.2.7", 40000), IPv4Address("TCP", "198.51.100.1", 1200)
    ),
    v2(1, 0x11, inet("192.0.2.7", "198.51.100.1") + TLVS): ProxyHeader(
        IPv4Address("TCP", "192.0.2.7", 40000), IPv4Address("TCP", "198.51.100.1", 1200)
    ),
    v2(1, 0x12, inet("192.0.2.7", "198.51.100.1")): ProxyHeader(
        IPv4Address("UDP", "192.0.2.7", 40000), IPv4Address("UDP", "198.51.100.1", 1200)
    ),
    v2(1, 0x21, inet6("::ffff:192.0.2.7", "2001:db8::1")): ProxyHeader(
        IPv4Address("TCP", "192.0.2.7", 40000), IPv6Address("TCP", "2001:db8::1", 1200)
    ),
    v2(1, 0x21, inet6("2001:db8::7", "2001:db8::1") + TLVS): ProxyHeader(
        IPv6Address("TCP", "2001:db8::7", 40000), IPv6Address("TCP", "2001:db8::1", 1200)
    ),
    v2(1, 0x31, unix(b"/run/client.sock", b"/run/caps.sock")): ProxyHeader(
        UNIXAddress(b"/run/client.sock"), UNIXAddress(b"/run/caps.sock")
    ),
    v2(1, 0x32, unix(b"/run/a", b"/run/b")): ProxyHeader(
        UNIXAddress(b"/run/a"), UNIXAddress(b"/run/b")
    ),
    v2(1, 0x10, b"ignored"): ProxyHeader(),  # AF_INET, UNSPEC transport
}

#: Malformed headers a fuzzer would try first, with the reason given.
REFUSED: dict[bytes, str] = {
    b"GET / HTTP/1.0\r\n": "not a PROXY protocol header",
    b"PROXY\r\n": "not a PROXY protocol header",
    b"proxy TCP4 1.2.3.4 5.6.7.8 1 2\r\n": "not a PROXY protocol header",
    b"PROXY TCP4 192.0.2.7 127.0.0.1 x 1200\r\n": "v1: a port is not a number from 0 to 65535",
    b"PROXY TCP4 192.0.2.7 127.0.0.1 -1 1200\r\n": "v1: a port is not a number from 0 to 65535",
    b"PROXY TCP4 192.0.2.7 127.0.0.1 65536 1200\r\n": "v1: a port is not a number from 0 to 65535",
    b"PROXY TCP4 192.0.2.7 127.0.0.1 0400 1200\r\n": "v1: a port is not a number from 0 to 65535",
    b"PROXY TCP4 192.0.2.7 127.0.0.1 +1 1200\r\n": "v1: a port is not a number from 0 to 65535",
    b"PROXY TCP4 192.0.2.\xff 127.0.0.1 1 2\r\n": "v1: an address is not an IPv4 address",
    b"PROXY TCP4 192.0.2.07 127.0.0.1 1 2\r\n": "v1: an address is not an IPv4 address",
    b"PROXY TCP4 2001:db8::1 127.0.0.1 1 2\r\n": "v1: an address is not an IPv4 address",
    b"PROXY TCP6 192.0.2.7 ::1 1 2\r\n": "v1: an address is not an IPv6 address",
    b"PROXY TCP6 fe80::1%eth0 ::1 1 2\r\n": "v1: an IPv6 address has a scope",
    b"PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n": "v1: protocol is not TCP4, TCP6 or UNKNOWN",
    b"PROXY  TCP4 1.2.3.4 5.6.7.8 1 2\r\n": "v1: protocol is not TCP4, TCP6 or UNKNOWN",
    b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n": (
        "v1: not two addresses and two ports, one space apart"
    ),
    b"PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n": "v1: not two addresses and two ports, one space apart",
    b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n": "v1: line ends without CRLF",
    b"PROXY UNKNOWN" + b" " * 100 + b"\r\n": "v1: line longer than 107 bytes",
    b"PROXY TCP4 " + b"1" * 200: "v1: line longer than 107 bytes",
    V2_SIGNATURE + b"\x10\x11\x00\x00": "v2: version is not 2",
    V2_SIGNATURE + b"\x22\x11\x00\x00": "v2: command is not LOCAL or PROXY",
    v2(1, 0x41, b"x" * 12): "v2: unknown address family or transport protocol",
    v2(1, 0x13, b"x" * 12): "v2: unknown address family or transport protocol",
    v2(1, 0x11, b"x" * 11): "v2: address block too short for its family",
    v2(1, 0x21, b"x" * 35): "v2: address block too short for its family",
    v2(1, 0x31, b"x" * 215): "v2: address block too short for its family",
    V2_SIGNATURE + b"\x21\x11\xff\xff": f"v2: header longer than {16 + MAX_V2_LENGTH} bytes",
}
