# -*- test-case-name: tests.unit.test_proxy_header,tests.adversarial.test_proxy -*-
"""
Read the PROXY protocol header (HAProxy's C{doc/proxy-protocol.txt},
versions 1 and 2) at the start of a connection; no I/O.

Every form the specification asks a receiver to accept is accepted, and
HAProxy's own output first: C{PROXY TCP4}, C{PROXY TCP6} (also with an
IPv4-mapped address, which HAProxy writes when the two ends' families
differ, and which is read as the IPv4 address it maps), C{PROXY UNKNOWN}
with or without the rest of the line (what HAProxy sends from a
UNIX-socket frontend), and version 2 with the LOCAL command (health
checks) or PROXY over AF_INET, AF_INET6, AF_UNIX or AF_UNSPEC, with any
TLVs, which are skipped. A header may arrive in pieces, down to a byte at
a time.

Anything else is refused with L{MalformedHeaderError} and a one-line reason, as
the specification requires ("any sequence which does not exactly match the
protocol must be discarded"): a version 1 line over 107 bytes or not ended
by CRLF, an address not of its family or with leading zeros, a port
outside 0-65535 or with a leading zero, a version 2 header with another
version, command, family or transport, an address block too short for its
family, or longer than L{MAX_V2_LENGTH}.
"""

import ipaddress
import re
from dataclasses import dataclass
from typing import Literal

from twisted.internet.address import IPv4Address, IPv6Address, UNIXAddress

V1_PREFIX = b"PROXY "
V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
#: The longest version 1 line, CRLF included (the specification's worst case).
V1_MAX_LENGTH = 107
#: The longest version 2 address block accepted (TLVs included): far more
#: than HAProxy sends (216 bytes of AF_UNIX addresses plus a few short TLVs),
#: and it bounds what a connection may make the server hold before its header
#: is complete.
MAX_V2_LENGTH = 4096

_PORT = re.compile(rb"0|[1-9][0-9]{0,4}")
_V2_LOCAL, _V2_PROXY = 0x0, 0x1
_AF_UNSPEC, _AF_INET, _AF_INET6, _AF_UNIX = 0x0, 0x1, 0x2, 0x3
_UNSPEC, _STREAM, _DGRAM = 0x0, 0x1, 0x2

Address = IPv4Address | IPv6Address | UNIXAddress


class MalformedHeaderError(ValueError):
    """The connection does not start with a valid PROXY header; the message says why."""


@dataclass(frozen=True)
class ProxyHeader:
    """
    What a PROXY header says about the connection it starts.

    @ivar source: the client's address; None when the header gives none
        (LOCAL, UNKNOWN, AF_UNSPEC): the connection's own peer then stands.
    @ivar destination: the address the client connected to, or None.
    """

    source: Address | None = None
    destination: Address | None = None


class HeaderReader:
    """
    Collect the first bytes of a connection until they make a whole header.

    L{feed} returns None while the header is incomplete, then the header and
    the bytes that followed it; it raises L{MalformedHeaderError} as soon as the
    bytes cannot start a valid header.
    """

    def __init__(self) -> None:
        self._buffer = b""

    def feed(self, data: bytes) -> tuple[ProxyHeader, bytes] | None:
        """Add C{data}; return the header and what follows once it is complete."""
        buffer = self._buffer = self._buffer + data
        if buffer[:12] == V2_SIGNATURE[: len(buffer)]:
            return _read_v2(buffer)
        if buffer[:6] == V1_PREFIX[: len(buffer)]:
            return _read_v1(buffer)
        raise MalformedHeaderError("not a PROXY protocol header")


def _read_v1(buffer: bytes) -> tuple[ProxyHeader, bytes] | None:
    end = buffer.find(b"\r\n")
    line_feed = buffer.find(b"\n")
    if line_feed >= 0 and line_feed != end + 1:
        raise MalformedHeaderError("v1: line ends without CRLF")
    if end < 0 or end + 2 > V1_MAX_LENGTH:
        if len(buffer) >= V1_MAX_LENGTH:
            raise MalformedHeaderError(f"v1: line longer than {V1_MAX_LENGTH} bytes")
        return None
    return _parse_v1(buffer[:end]), buffer[end + 2 :]


def _parse_v1(line: bytes) -> ProxyHeader:
    fields = line.split(b" ")
    family = fields[1]
    if family == b"UNKNOWN":
        return ProxyHeader()  # the rest of the line is to be ignored
    if family not in (b"TCP4", b"TCP6"):
        raise MalformedHeaderError("v1: protocol is not TCP4, TCP6 or UNKNOWN")
    if len(fields) != 6:
        raise MalformedHeaderError("v1: not two addresses and two ports, one space apart")
    _, _, source, destination, source_port, destination_port = fields
    if family == b"TCP4":
        return ProxyHeader(
            IPv4Address("TCP", _v1_ipv4(source), _v1_port(source_port)),
            IPv4Address("TCP", _v1_ipv4(destination), _v1_port(destination_port)),
        )
    return ProxyHeader(
        _inet6("TCP", _v1_ipv6(source), _v1_port(source_port)),
        _inet6("TCP", _v1_ipv6(destination), _v1_port(destination_port)),
    )


def _v1_ipv4(text: bytes) -> str:
    try:
        return str(ipaddress.IPv4Address(text.decode("ascii")))
    except ValueError:  # UnicodeDecodeError is one
        raise MalformedHeaderError("v1: an address is not an IPv4 address") from None


def _v1_ipv6(text: bytes) -> ipaddress.IPv6Address:
    try:
        address = ipaddress.IPv6Address(text.decode("ascii"))
    except ValueError:
        raise MalformedHeaderError("v1: an address is not an IPv6 address") from None
    if address.scope_id is not None:
        raise MalformedHeaderError("v1: an IPv6 address has a scope")
    return address


def _inet6(
    kind: Literal["TCP", "UDP"], address: ipaddress.IPv6Address, port: int
) -> IPv4Address | IPv6Address:
    """
    An IPv6 address, or the IPv4 address it maps (C{::ffff:a.b.c.d}, which
    HAProxy writes when the two ends' families differ): one client is one
    address to --max-per-peer and in the logs, whichever frontend it used.
    """
    if address.ipv4_mapped is not None:
        return IPv4Address(kind, str(address.ipv4_mapped), port)
    return IPv6Address(kind, str(address), port)


def _v1_port(text: bytes) -> int:
    if _PORT.fullmatch(text) is None or int(text) > 65535:
        raise MalformedHeaderError("v1: a port is not a number from 0 to 65535")
    return int(text)


def _read_v2(buffer: bytes) -> tuple[ProxyHeader, bytes] | None:
    if len(buffer) < 16:
        return None
    version, command = buffer[12] >> 4, buffer[12] & 0xF
    if version != 2:
        raise MalformedHeaderError("v2: version is not 2")
    if command not in (_V2_LOCAL, _V2_PROXY):
        raise MalformedHeaderError("v2: command is not LOCAL or PROXY")
    length = int.from_bytes(buffer[14:16], "big")
    if length > MAX_V2_LENGTH:
        raise MalformedHeaderError(f"v2: header longer than {16 + MAX_V2_LENGTH} bytes")
    if len(buffer) < 16 + length:
        return None
    block, rest = buffer[16 : 16 + length], buffer[16 + length :]
    if command == _V2_LOCAL:
        return ProxyHeader(), rest  # the proxy's own connection: its family is ignored
    return _parse_v2_addresses(buffer[13], block), rest


def _parse_v2_addresses(family_and_transport: int, block: bytes) -> ProxyHeader:
    family, transport = family_and_transport >> 4, family_and_transport & 0xF
    if family > _AF_UNIX or transport > _DGRAM:
        raise MalformedHeaderError("v2: unknown address family or transport protocol")
    if family == _AF_UNSPEC or transport == _UNSPEC:
        return ProxyHeader()
    kind: Literal["TCP", "UDP"] = "TCP" if transport == _STREAM else "UDP"
    if family == _AF_INET:
        _need(block, 12)
        return ProxyHeader(
            IPv4Address(kind, str(ipaddress.IPv4Address(block[0:4])), _v2_port(block[8:10])),
            IPv4Address(kind, str(ipaddress.IPv4Address(block[4:8])), _v2_port(block[10:12])),
        )
    if family == _AF_INET6:
        _need(block, 36)
        return ProxyHeader(
            _inet6(kind, ipaddress.IPv6Address(block[0:16]), _v2_port(block[32:34])),
            _inet6(kind, ipaddress.IPv6Address(block[16:32]), _v2_port(block[34:36])),
        )
    _need(block, 216)
    return ProxyHeader(
        UNIXAddress(block[0:108].rstrip(b"\0")), UNIXAddress(block[108:216].rstrip(b"\0"))
    )


def _need(block: bytes, size: int) -> None:
    if len(block) < size:
        raise MalformedHeaderError("v2: address block too short for its family")


def _v2_port(two_bytes: bytes) -> int:
    return int.from_bytes(two_bytes, "big")
