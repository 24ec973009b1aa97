# -*- test-case-name: tests.unit.test_limits -*-
"""
Fair-use limits: open TCP connections (in all and per client address) and
UDP replies per source address, and the size of the buffer a datagram is
read into. Plain bookkeeping, no I/O.
"""

from twisted.internet.interfaces import IReactorTime

#: Why a connection was refused, as counters and log lines name it.
MAX_CONNECTIONS = "max-connections"
MAX_PER_PEER = "max-per-peer"
#: The process had no file descriptor left for the connection (see
#: L{twisted_caps._twisted.accept_errors}).
OPEN_FILES = "open-files"
#: Behind a PROXY-protocol listener: a header that is malformed, or not
#: complete within the header deadline.
PROXY_HEADER = "proxy-header"
PROXY_HEADER_TIMEOUT = "proxy-header-timeout"
#: Every reason a connection is refused, as the metrics list them.
REFUSALS = (MAX_CONNECTIONS, MAX_PER_PEER, OPEN_FILES, PROXY_HEADER, PROXY_HEADER_TIMEOUT)

#: The buffer one datagram is read into (C{maxPacketSize} of Twisted's UDP
#: ports): more than the largest UDP payload of any family (65,527 bytes over
#: IPv6), so no datagram is cut short. Twisted's default of 8,192 truncates
#: larger datagrams silently: the kernel drops the rest and says nothing.
DATAGRAM_READ_SIZE = 65536


class ConnectionLimits:
    """
    Count open connections in all and per client address; 0 means no limit.

    L{admit} takes a slot or names the limit that refuses one; every
    admitted connection must be L{release}d exactly once. A peer of None
    (a UNIX socket client, which has no address) counts only in the total.
    """

    def __init__(self, max_connections: int = 0, max_per_peer: int = 0) -> None:
        self.max_connections = max_connections
        self.max_per_peer = max_per_peer
        self.open = 0
        self.per_peer: dict[str, int] = {}

    def admit(self, peer: str | None) -> str | None:
        """Take a slot for C{peer}; return None, or the limit that refused."""
        if self.max_connections and self.open >= self.max_connections:
            return MAX_CONNECTIONS
        if peer is None:
            self.open += 1
            return None
        held = self.per_peer.get(peer, 0)
        if self.max_per_peer and held >= self.max_per_peer:
            return MAX_PER_PEER
        self.open += 1
        self.per_peer[peer] = held + 1
        return None

    def release(self, peer: str | None) -> None:
        """Give back the slot an admitted connection from C{peer} held."""
        self.open -= 1
        if peer is None:
            return
        held = self.per_peer[peer] - 1
        if held:
            self.per_peer[peer] = held
        else:
            del self.per_peer[peer]


class DatagramRateLimit:
    """
    A token bucket per source address: C{rate} datagrams a second, with a
    burst of the same size.

    The table of sources holds at most C{max_sources} entries. When it is
    full, sources whose bucket has refilled are forgotten (a full bucket is
    the same as no entry); if that is not enough (a flood of spoofed
    sources), the oldest half goes. So its size is bounded whatever arrives.
    """

    def __init__(self, rate: int, clock: IReactorTime, max_sources: int = 65536) -> None:
        self._rate = float(rate)
        self._burst = float(rate)
        self._clock = clock
        self._max_sources = max_sources
        self._buckets: dict[str, tuple[float, float]] = {}

    def allow(self, source: str) -> bool:
        """Spend a token of C{source}'s bucket; False if it has none."""
        now = self._clock.seconds()
        bucket = self._buckets.get(source)
        if bucket is None:
            if len(self._buckets) >= self._max_sources:
                self._forget(now)
            tokens = self._burst
        else:
            tokens = min(self._burst, bucket[0] + (now - bucket[1]) * self._rate)
        if tokens < 1.0:
            self._buckets[source] = (tokens, now)
            return False
        self._buckets[source] = (tokens - 1.0, now)
        return True

    def __len__(self) -> int:
        return len(self._buckets)

    def _forget(self, now: float) -> None:
        refill_time = self._burst / self._rate
        for source in [s for s, (_, seen) in self._buckets.items() if now - seen >= refill_time]:
            del self._buckets[source]
        if len(self._buckets) >= self._max_sources:
            for source in list(self._buckets)[: len(self._buckets) // 2 + 1]:
                del self._buckets[source]
