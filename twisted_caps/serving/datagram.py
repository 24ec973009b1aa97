# -*- test-case-name: tests.unit.test_datagram,tests.adversarial.test_udp -*-
"""
The UDP capitalization protocol: one reply datagram per datagram received.
"""

import socket
from collections.abc import Callable
from dataclasses import dataclass

from twisted.internet.error import MessageLengthError
from twisted.internet.interfaces import IReactorTime, IUDPTransport
from twisted.internet.protocol import DatagramProtocol
from twisted.logger import Logger

from twisted_caps._twisted.immediate import datagram_sender
from twisted_caps.core.limits import DatagramRateLimit
from twisted_caps.core.log_throttle import LogThrottle
from twisted_caps.core.loop_guard import LOOP_STREAK, LOOP_WINDOW, LoopGuard
from twisted_caps.core.transform import capitalize

#: The largest UDP payload: 65535 minus the 8-byte UDP header and the 20-byte
#: IPv4 header (IPv6 allows 20 bytes more, but a reply must fit either).
MAX_UDP_PAYLOAD = 65507


#: The receive buffer asked of the kernel for each UDP socket: room for
#: dozens of datagrams of the largest size, where Linux's default (212,992
#: bytes) holds three and drops the rest of a burst unseen. The kernel caps what it gives
#: at net.core.rmem_max.
RECEIVE_BUFFER = 4 * 1024 * 1024

#: Source ports below this belong to system services (echo, chargen, daytime,
#: ...); answering them lets two services bounce datagrams forever.
FIRST_UNPRIVILEGED_PORT = 1024


#: Why a source that keeps sending its reply back gets none.
ANSWERING_SERVICE = (
    f"the same upper-case text more than {LOOP_STREAK} times in a row,"
    f" each within {LOOP_WINDOW:g}s: a service answering back could start a reply loop"
)


@dataclass
class DatagramCounters:
    """Plain integer counts of what happened to the datagrams received."""

    received: int = 0
    bytes_received: int = 0
    bytes_sent: int = 0
    answered: int = 0
    refused_loop: int = 0
    dropped_rate_limit: int = 0
    dropped_oversize: int = 0
    dropped_send_error: int = 0


class CapsDatagramProtocol(DatagramProtocol):
    """
    Answer each datagram with its capitalization, sent to its source.

    An empty datagram gets an empty reply. No reply goes to a source port
    below 1024 or equal to the port that received it: two echo-style services
    answering each other would loop forever (CVE-1999-0103). Nor does one go
    to a source that sends the same upper-case text back again and again, as
    fast as replies reach it: another service answering (see
    L{twisted_caps.core.loop_guard}). A source over its rate limit gets no reply.
    A reply longer than the largest UDP payload, or one the kernel refuses,
    is dropped, counted and logged (at most one line a second for each kind
    of drop).
    """

    log = Logger()
    noisy = False
    transport: IUDPTransport

    def __init__(self, clock: IReactorTime, rate_limit: DatagramRateLimit | None = None) -> None:
        self.counters = DatagramCounters()
        self._rate_limit = rate_limit
        self._loop_guard = LoopGuard(clock)
        self._clock = clock
        self._drop_logs: dict[str, LogThrottle] = {}
        self._own_port = -1
        self._send: Callable[[bytes, tuple[str, int]], object] = self._write

    def startProtocol(self) -> None:
        self._own_port = self.transport.getHost().port
        enlarge_receive_buffer(self.transport)
        self._send = datagram_sender(self.transport) or self._write

    def _write(self, reply: bytes, addr: tuple[str, int]) -> None:
        self.transport.write(reply, addr)

    def datagramReceived(self, datagram: bytes, addr: tuple[str, int]) -> None:
        counters = self.counters
        counters.received += 1
        counters.bytes_received += len(datagram)
        port = addr[1]
        if port < FIRST_UNPRIVILEGED_PORT or port == self._own_port:
            counters.refused_loop += 1
            self._drop(addr, "loop", f"source port {port} could start a reply loop")
            return
        if self._rate_limit is not None and not self._rate_limit.allow(addr[0]):
            counters.dropped_rate_limit += 1
            self._drop(addr, "rate-limit", "over the per-source rate limit")
            return
        reply = capitalize(datagram)
        if reply != datagram:
            if self._loop_guard.streaks:
                self._loop_guard.reset(addr)
        elif not self._loop_guard.allow(addr, datagram):
            counters.refused_loop += 1
            self._drop(addr, "loop", ANSWERING_SERVICE)
            return
        if len(reply) > MAX_UDP_PAYLOAD:
            counters.dropped_oversize += 1
            self._drop(addr, "oversize", f"reply of {len(reply)} bytes exceeds the UDP maximum")
            return
        try:
            self._send(reply, addr)
        except (OSError, MessageLengthError) as error:
            counters.dropped_send_error += 1
            self._drop(addr, "send-error", f"send failed: {error}")
            return
        counters.answered += 1
        counters.bytes_sent += len(reply)

    def _drop(self, addr: tuple[str, int], kind: str, reason: str) -> None:
        throttle = self._drop_logs.get(kind)
        if throttle is None:
            throttle = self._drop_logs[kind] = LogThrottle(self._clock)
        throttle.warn(
            self.log,
            "No UDP reply to {peer}: {reason} ({suppressed} similar not logged)",
            peer=f"{addr[0]}:{addr[1]}",
            reason=reason,
        )


def enlarge_receive_buffer(transport: object) -> None:
    """
    Ask for a receive buffer of L{RECEIVE_BUFFER} bytes on C{transport}'s
    socket, unless it has one as large already (an operator's setting) or
    no socket (a test transport); a refusal leaves it as it was.
    """
    sock = getattr(transport, "socket", None)
    if not isinstance(sock, socket.socket):
        return
    try:
        if sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF) < RECEIVE_BUFFER:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER)
    except OSError:
        pass
