# -*- test-case-name: tests.test_check -*-
"""
The UDP checks, through a connected UDP socket: one datagram out, one
back, from the server's port, or a L{CheckError} saying what went wrong.
"""

from twisted_caps.check.feedback import (
    FIX_UNICODE,
    CheckError,
    NoReplyError,
    RefusedError,
    describe_reply,
    seconds,
    show,
    upper_cased_as_bytes,
)
from twisted_caps.check.probes import DatagramProbe, open_datagram
from twisted_caps.check.stream_checks import (
    FIX_NOT_UTF8,
    NOT_UTF8,
    UNICODE_SENTENCE,
    stream_payload,
)
from twisted_caps.check.target import Target
from twisted_caps.core.transform import capitalize

#: Bytes of the datagram of C{udp-large}.
LARGE_DATAGRAM = 60_000
#: What to do when a large datagram's reply is cut short.
FIX_WHOLE_DATAGRAMS = (
    "read whole datagrams: recvfrom(65535); a socketserver.UDPServer reads at most "
    "max_packet_size bytes, 8192 unless the server class sets max_packet_size = 65535"
)


def datagram_socket(target: Target) -> DatagramProbe:
    """A fresh UDP socket connected to the server."""
    probe = open_datagram(target.reactor, target.address, target.port)
    target.opened.append(probe)
    return probe


async def datagram_exchange(
    target: Target, datagram: bytes, fix: str, only_when_cut_short: bool = False
) -> None:
    """
    Send one datagram; fail unless one reply datagram, its capitalization,
    comes back. A wrong reply gets C{fix} (C{only_when_cut_short}: only a
    reply that is the start of the right one), or the Unicode hint when it
    is what C{bytes.upper()} gives; silence gets no hint, being no evidence.
    """
    probe = datagram_socket(target)
    try:
        expected = capitalize(datagram)
        probe.send(datagram)
        if not await probe.until_received(1, target.timeout):
            if probe.refused:
                raise RefusedError(f"connection refused by {target.server}", first_contact=True)
            raise NoReplyError(
                f"sent {show(datagram)} in one datagram; no reply within "
                f"{seconds(target.timeout)}; expected {show(expected)}"
            )
        sent = f"{show(datagram)} in one datagram"
        got = probe.received[0]
        detail = describe_reply(sent, got, expected, None, target.timeout, whole=True)
        if detail is not None:
            if upper_cased_as_bytes(datagram, got, expected):
                fix = FIX_UNICODE
            elif only_when_cut_short and not expected.startswith(got):
                fix = ""
            raise CheckError(f"{detail} ({fix})" if fix else detail)
    finally:
        probe.close()


async def udp_reply(target: Target) -> None:
    """One datagram C{hello world}, one reply C{HELLO WORLD}."""
    await datagram_exchange(
        target,
        b"hello world",
        "answer each datagram with its bytes upper-cased, from the socket that received it, "
        "to the address recvfrom() returned",
    )


async def udp_independent(target: Target) -> None:
    """
    Two sockets send two datagrams each, interleaved: each socket gets
    the replies to its own, each the capitalization of one datagram alone.
    """
    sockets = {name: datagram_socket(target) for name in "ab"}
    sent = {name: [f"one from {name}".encode(), f"TWO from {name}!".encode()] for name in "ab"}
    try:
        for number in range(2):
            for name, probe in sockets.items():
                probe.send(sent[name][number])
        for name, probe in sockets.items():
            await probe.until_received(2, target.timeout)
            if probe.refused:
                raise RefusedError(f"connection refused by {target.server}", first_contact=True)
            expected = sorted(capitalize(datagram) for datagram in sent[name])
            if sorted(probe.received) != expected:
                got = ", ".join(show(reply) for reply in probe.received[:3]) or "nothing"
                if len(probe.received) > 3:
                    got += f" and {len(probe.received) - 3} more"
                raise CheckError(
                    f"socket {name} sent {', '.join(show(d) for d in sent[name])} while "
                    f"another socket sent its own; it got {got} within "
                    f"{seconds(target.timeout)}; expected {', '.join(show(e) for e in expected)} "
                    "(answer each datagram alone, to the address recvfrom() returned with it)"
                )
    finally:
        for probe in sockets.values():
            probe.close()


async def udp_empty(target: Target) -> None:
    """An empty datagram gets an empty reply."""
    await datagram_exchange(
        target, b"", "an empty datagram is a datagram too: answer it with an empty one"
    )


async def udp_large(target: Target) -> None:
    """A L{LARGE_DATAGRAM}-byte datagram is answered whole."""
    datagram = stream_payload()[:LARGE_DATAGRAM]
    await datagram_exchange(target, datagram, FIX_WHOLE_DATAGRAMS, only_when_cut_short=True)


async def udp_unicode(target: Target) -> None:
    """C{unicode} over UDP: Unicode's full upper-case mapping, in one datagram."""
    await datagram_exchange(
        target,
        UNICODE_SENTENCE,
        "decode the datagram as UTF-8 and upper-case the text with str.upper(): "
        "bytes.upper() changes ASCII letters only",
    )


async def udp_invalid_utf8(target: Target) -> None:
    """C{invalid-utf8} over UDP: bytes that are not UTF-8 come back unchanged."""
    await datagram_exchange(target, NOT_UTF8, FIX_NOT_UTF8)
