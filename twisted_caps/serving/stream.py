# -*- test-case-name: tests.unit.test_stream,tests.adversarial.test_tcp_stream -*-
"""
The TCP capitalization protocol: every byte received is answered, in order,
with its capitalized form as soon as it arrives; and its factory, which holds
the policy (limits, idle timeout, graceful shutdown).
"""

from collections.abc import Callable
from time import time
from typing import Any
from typing import Protocol as TypingProtocol

from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.defer import Deferred, succeed
from twisted.internet.error import ConnectionDone
from twisted.internet.interfaces import (
    IAddress,
    IConsumer,
    IDelayedCall,
    IHalfCloseableProtocol,
    IPushProducer,
    IReactorTime,
    ITransport,
)
from twisted.internet.protocol import Factory, Protocol, connectionDone
from twisted.internet.task import LoopingCall
from twisted.logger import Logger, LogLevel
from twisted.python.failure import Failure
from zope.interface import implementer

from twisted_caps._twisted.immediate import (
    SERVERS,
    lose_connection_now,
    send_at_once,
    supports_immediate_send,
    unsent_bytes,
)
from twisted_caps.core.limits import OPEN_FILES, REFUSALS, ConnectionLimits
from twisted_caps.core.log_throttle import LogThrottle
from twisted_caps.core.transform import StreamCapitalizer, capitalize

#: Why a connection closed, as its close log line says.
CLIENT_CLOSED = "client closed"
IDLE_TIMEOUT = "idle timeout"
SHUTDOWN = "shutdown"
ANSWERED_ONCE = "answered once"
ERROR = "error"
#: The event logged when an admitted connection closes (its text is made
#: with the same f-string in L{CapsStreamFactory.release}).
CLOSE_FORMAT = (
    "caps: {peer} closed after {duration:.3f}s,"
    " {bytes_in} bytes in, {bytes_out} bytes out: {reason}"
)

#: The longest a connection behind a PROXY-protocol listener may take to
#: send its header (less if --idle-timeout is shorter). HAProxy sends the
#: header at once, in the connection's first segment; a few seconds cover a
#: loaded network, and a connection still without one is a misconfigured
#: sender or a slowloris holding a slot.
HEADER_TIMEOUT = 5.0

#: How many times per idle timeout the factory's sweep looks at every
#: connection: a connection is closed at most a fifth of a timeout after it
#: becomes due (progress is seen at a look, up to a tenth late), and a
#: sweep of 10,000 connections every 30 seconds (--idle-timeout 300) costs
#: a few milliseconds.
SWEEPS_PER_TIMEOUT = 10


class OpenConnection(TypingProtocol):
    """What the factory reads and asks of each connection it admitted."""

    peer: str | None
    opened_at: float
    last_progress_at: float
    bytes_in: int
    #: Bytes of replies sent or queued.
    bytes_out: int
    close_reason: str | None
    #: The replies unsent at the idle sweep's last look (None: not looked
    #: at yet, or unknown).
    unsent: int | None

    @property
    def input_seen(self) -> bool:
        """Whether input arrived since the idle sweep's last look."""

    @property
    def bytes_uncounted(self) -> int:
        """Bytes in (and as many out) not yet in the factory's totals."""

    def check_idle(self, now: float, idle_timeout: float) -> None:
        """The idle sweep's look: close if no progress for C{idle_timeout}."""

    def close(self, grace: float = ..., reason: str = ...) -> None:
        """Write what is queued, then close (within C{grace} seconds, if given)."""


@implementer(IHalfCloseableProtocol, IPushProducer)
class CapsStreamProtocol(Protocol):
    """
    Answer a byte stream with its capitalization, with no framing.

    The protocol is registered as the producer of its transport's writes,
    and passes pause and resume on to the transport's reading: when a client
    sends faster than it reads and the outgoing buffer fills, Twisted stops
    reading from that client until the buffer drains, so memory stays
    bounded and nothing is dropped. On a plain TCP connection, where replies
    go to the kernel at once, it registers at the first reply the kernel
    does not take whole (before handing the rest to the buffer): a
    connection whose replies never wait has nothing to register and
    unregister. When the client half-closes, the remaining replies are
    written and then the connection is closed.
    """

    transport: ITransport
    #: It counts every chunk in the factory's totals as it goes.
    bytes_uncounted = 0
    # Slots: an idle connection is a few dozen bytes smaller without a dict.
    __slots__ = (
        "_abort_call",
        "_admitted",
        "_capitalizer",
        "_discarding",
        "_immediate",
        "_producing",
        "bytes_in",
        "bytes_out",
        "close_reason",
        "factory",
        "input_seen",
        "last_progress_at",
        "opened_at",
        "peer",
        "unsent",
    )

    def __init__(self, factory: "CapsStreamFactory") -> None:
        self.factory = factory
        self.peer: str | None = None
        self._admitted = False
        self._abort_call: IDelayedCall | None = None
        self._discarding = False
        self._immediate = False
        self._producing = False
        # Made at the first non-ASCII chunk: an ASCII stream never needs one,
        # and an idle connection is smaller without it.
        self._capitalizer: StreamCapitalizer | None = None
        self.opened_at = 0.0
        # When the idle sweep last saw progress; input between two looks is
        # a flag, not a clock read (and a float kept) per chunk.
        self.last_progress_at = 0.0
        self.input_seen = False
        self.unsent: int | None = None
        self.bytes_in = 0
        self.bytes_out = 0
        self.close_reason: str | None = None

    def connectionMade(self) -> None:
        # The peer is read here, not in buildProtocol: behind a haproxy:
        # endpoint it is the PROXY header's client, known only by now.
        self.peer = client_host(self.transport)
        if not self.factory.admit(self):
            self.transport.loseConnection()
            return
        self._admitted = True
        self._immediate = supports_immediate_send(self.transport)
        self.opened_at = self.last_progress_at = self.factory.clock.seconds()
        if not self._immediate:
            self._produce()

    def _produce(self) -> None:
        """Register as the transport's producer, so a full buffer pauses reading."""
        IConsumer(self.transport).registerProducer(self, True)
        self._producing = True

    def pauseProducing(self) -> None:
        """The transport's write buffer is full: count it and stop reading."""
        self.factory.pauses += 1
        IPushProducer(self.transport).pauseProducing()

    def resumeProducing(self) -> None:
        """The write buffer has drained: read from the client again."""
        IPushProducer(self.transport).resumeProducing()

    def stopProducing(self) -> None:
        """The transport is going away: stop it reading."""
        IPushProducer(self.transport).stopProducing()

    def dataReceived(self, data: bytes) -> None:
        if self._discarding:
            return
        factory = self.factory
        self.input_seen = True
        size = len(data)
        self.bytes_in += size
        factory.bytes_received += size
        if factory.once:
            self._send(capitalize(data))
            self.close(reason=ANSWERED_ONCE)
            return
        capitalizer = self._capitalizer
        if capitalizer is None and data.isascii():
            # Nothing is held back before the first non-ASCII byte.
            reply = data.upper()
        else:
            if capitalizer is None:
                capitalizer = self._capitalizer = StreamCapitalizer()
            reply = capitalizer.feed(data)
        if reply:
            self._send(reply)

    def _send(self, reply: bytes) -> None:
        size = len(reply)
        self.bytes_out += size
        self.factory.bytes_sent += size
        if self._immediate:
            reply = send_at_once(self.transport, reply)
            if reply:
                self.queue_unsent(reply)
            return
        self.transport.write(reply)

    def queue_unsent(self, rest: bytes) -> None:
        """
        Queue the part of a counted reply the kernel did not take, with
        flow control: registered as the producer first, as the write's
        flow control looks for one (never again once closing, which
        unregistered it).
        """
        if not self._producing and self.close_reason is None:
            self._produce()
        self.transport.write(rest)

    def carry_on(self, served: "OpenConnection", transport: ITransport) -> None:
        """
        Take over a connection admitted and served so far by C{served} (a
        compact connection), on C{transport}: its counts, its clock and
        its place among the factory's connections; as C{makeConnection}
        would, without admitting it again.
        """
        self.peer = served.peer
        self.opened_at = served.opened_at
        self.last_progress_at = served.last_progress_at
        self.bytes_in = served.bytes_in
        self.bytes_out = served.bytes_out
        self.input_seen = served.input_seen
        self.unsent = served.unsent
        self._admitted = True
        self.connected = 1
        self.transport = transport
        self._immediate = supports_immediate_send(transport)
        factory = self.factory
        factory.count_bytes(served)
        connections = factory.connections
        connections.discard(served)
        connections.add(self)

    def readConnectionLost(self) -> None:
        """The client sent its last byte: flush, answer, then close."""
        if self._discarding:
            self.transport.loseConnection()
            return
        tail = self._capitalizer.flush() if self._capitalizer is not None else b""
        if tail:
            self._send(tail)
        self.close()

    def writeConnectionLost(self) -> None:
        """
        Replies can no longer be delivered, so stop reading too; unless this
        is the half-close of L{close}, which drains input until the client
        closes.
        """
        if not self._discarding:
            self.close()

    def check_idle(self, now: float, idle_timeout: float) -> None:
        """
        Close the connection if it has made no progress for C{idle_timeout}
        seconds: no byte read from the client, and no byte of reply taken
        on its way to the client (a client that reads slowly, while its
        connection is paused by flow control, is not idle). The factory's
        sweep calls this for every connection, a few times per timeout.

        Progress costs nothing per chunk but a flag: it is seen here, at
        each look, as input having arrived since the last look, or as
        replies still unsent (L{unsent_bytes}) having shrunk since then
        (between looks no reply is written without input, so a drop is
        progress; at the first look, replies still unsent count as
        progress). So a connection is closed between one timeout and one
        timeout plus two sweep periods after its last progress.

        A connection whose input has ended (a half-closed client) and whose
        replies make no progress is aborted: the client has stopped reading
        them, and nothing else would ever close it. A connection already
        closing with a grace period is left to that period's abort.
        """
        if self._abort_call is not None:
            return
        unsent = unsent_bytes(self.transport)
        moved = self.input_seen or replies_moved(unsent, self.unsent)
        self.input_seen = False
        self.unsent = unsent
        if moved:
            self.last_progress_at = now
            return
        if now - self.last_progress_at < idle_timeout:
            return
        self.factory.idle_timeouts += 1
        if self.close_reason is not None:
            self.close_reason = IDLE_TIMEOUT
            self.transport.abortConnection()  # type: ignore[attr-defined]
            return
        self.close(grace=self.factory.shutdown_timeout, reason=IDLE_TIMEOUT)

    def close(self, grace: float = 0.0, reason: str = CLIENT_CLOSED) -> None:
        """
        Write what is queued, then close.

        With C{grace} (shutdown, idle timeout), the client may still be
        sending: closing a socket with unread input makes the kernel send a
        reset, which destroys replies the client has not read yet. So this
        half-closes instead (FIN after the queued replies), reads and drops
        input until the client closes, and aborts after C{grace} seconds.
        """
        if self.close_reason is None:
            self.close_reason = reason
        # A transport with a paused producer registered never closes, so
        # unregister it before asking for the close.
        if self._producing:
            IConsumer(self.transport).unregisterProducer()
            self._producing = False
        if not grace:
            if self._immediate:
                lose_connection_now(self.transport)
            else:
                self.transport.loseConnection()
            return
        lose_write_connection = own_half_close(self.transport)
        if lose_write_connection is None:
            self.transport.loseConnection()
        elif not self._discarding:
            self._discarding = True
            lose_write_connection()
            IPushProducer(self.transport).resumeProducing()
        if self._abort_call is None:
            # The grace period bounds this close; without one, the idle
            # sweep goes on watching the replies' progress.
            self._abort_call = self.factory.clock.callLater(
                grace,
                self.transport.abortConnection,  # type: ignore[attr-defined]
            )

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        if self._abort_call is not None and self._abort_call.active():
            self._abort_call.cancel()
        if self._admitted:
            self._admitted = False
            if self.close_reason is None:
                done = isinstance(reason.value, ConnectionDone)
                self.close_reason = CLIENT_CLOSED if done else ERROR
            self.factory.release(self)


class CapsStreamFactory(Factory):
    """
    Build L{CapsStreamProtocol}s and apply the service's policy to them.

    The idle timeout is one sweep per factory, not a timer per connection
    (a timer is a heap push and a cancel per connection, and a
    C{DelayedCall} kept by each idle one): a C{LoopingCall} on the
    factory's clock, every C{idle_timeout / SWEEPS_PER_TIMEOUT} seconds,
    asks every connection whether it has made progress. It starts with the
    first connection admitted; while the factory listens it stops at its
    first round with no connection left, so that connections opened one
    after another do not start and stop it each time; once the factory
    no longer listens, or L{close_all} has closed everything, it stops
    with the last connection.

    @ivar once: answer only the first chunk received, then close (the
        course's server behaviour, for clients that read until it closes).
    @ivar idle_timeout: seconds without progress (no input read, no reply
        taken by the kernel) before a connection is closed; 0 for never.
    @ivar shutdown_timeout: seconds a closing connection may take to write
        what is queued before it is aborted.
    @ivar bytes_received: bytes read from clients, less those of open
        connections that count theirs when they end (L{byte_totals} has
        them all).
    @ivar bytes_sent: the same, for replies.
    """

    noisy = False
    log = Logger()

    def __init__(
        self,
        clock: IReactorTime,
        once: bool = False,
        limits: ConnectionLimits | None = None,
        idle_timeout: float = 0,
        shutdown_timeout: float = 5.0,
    ) -> None:
        self.clock = clock
        self.once = once
        self.limits = limits or ConnectionLimits()
        self.idle_timeout = idle_timeout
        self.shutdown_timeout = shutdown_timeout
        self.connections: set[OpenConnection] = set()
        self.accepted = 0
        self.refused: dict[str, int] = {}
        self.idle_timeouts = 0
        self.pauses = 0
        self.bytes_received = 0
        self.bytes_sent = 0
        self._refusal_logs = {reason: LogThrottle(clock) for reason in REFUSALS}
        self._drained: Deferred[None] | None = None
        self._idle_sweep = LoopingCall(self._sweep_idle)
        self._idle_sweep.clock = clock
        # One Logger: the class attribute makes a new one at every access.
        self.log = self.log

    def buildProtocol(self, addr: IAddress | None) -> CapsStreamProtocol:
        return CapsStreamProtocol(self)

    def admit(self, protocol: OpenConnection) -> bool:
        """Admit a new connection, or count and log its refusal."""
        refusal = self.limits.admit(protocol.peer)
        if refusal is not None:
            self._refused(refusal, f"{refusal} reached", protocol.peer or "local")
            return False
        self.accepted += 1
        self.connections.add(protocol)
        if self.idle_timeout and not self._idle_sweep.running:
            self._idle_sweep.start(self.idle_timeout / SWEEPS_PER_TIMEOUT, now=False)
        return True

    def _sweep_idle(self) -> None:
        """Give every connection its look for progress, or stop if none is left."""
        if not self.connections:
            self._idle_sweep.stop()
            return
        now = self.clock.seconds()
        idle_timeout = self.idle_timeout
        # A copy: a connection closed at once leaves the set during the loop.
        for protocol in list(self.connections):
            protocol.check_idle(now, idle_timeout)

    def _stop_idle_sweep(self) -> None:
        """Stop the sweep, if it runs: no connection is left to look at."""
        if self._idle_sweep.running:
            self._idle_sweep.stop()

    def stopFactory(self) -> None:
        """The last listener has stopped: stop the sweep if no connection is left."""
        if not self.connections:
            self._stop_idle_sweep()

    @property
    def header_timeout(self) -> float:
        """Seconds a PROXY-protocol connection has to send its header (L{HEADER_TIMEOUT})."""
        return min(self.idle_timeout or HEADER_TIMEOUT, HEADER_TIMEOUT)

    def admit_pending(self, peer: IAddress) -> bool:
        """
        Take a slot of --max-connections for a connection whose PROXY header
        has not come yet (its client, and so --max-per-peer, is not known
        yet), or count and log its refusal.
        """
        refusal = self.limits.admit(None)
        if refusal is not None:
            self._refused(refusal, f"{refusal} reached", peer_host(peer) or "local")
            return False
        return True

    def release_pending(self) -> None:
        """Give back the slot of a connection whose header is read or refused."""
        self.limits.release(None)

    def refuse_header(self, reason: str, detail: str, peer: IAddress) -> None:
        """Count and log a connection closed for its PROXY header."""
        self._refused(reason, detail, peer_host(peer) or "local")

    def count_lack_of_files(self) -> None:
        """
        Count a client the listening port accepted and closed at once for
        lack of file descriptors; the port's accept-error summary logs it.
        """
        self.refused[OPEN_FILES] = self.refused.get(OPEN_FILES, 0) + 1

    def _refused(self, reason: str, detail: str, peer: str) -> None:
        self.refused[reason] = self.refused.get(reason, 0) + 1
        self._refusal_logs[reason].warn(
            self.log,
            "caps: refused a connection from {peer}: {detail}"
            " ({suppressed} more refusals not logged)",
            peer=peer,
            detail=detail,
            limit=reason,
        )

    def count_bytes(self, connection: OpenConnection) -> None:
        """Add the bytes C{connection} has not counted yet to the totals."""
        uncounted = connection.bytes_uncounted
        self.bytes_received += uncounted
        self.bytes_sent += uncounted

    def byte_totals(self) -> tuple[int, int]:
        """Bytes received and sent so far, with those open connections have not counted yet."""
        uncounted = sum(connection.bytes_uncounted for connection in self.connections)
        return self.bytes_received + uncounted, self.bytes_sent + uncounted

    def release(self, protocol: OpenConnection) -> None:
        """Forget a closed connection that L{admit} let in, and log its close."""
        peer = protocol.peer or "local"
        duration = self.clock.seconds() - protocol.opened_at
        bytes_in, bytes_out, reason = protocol.bytes_in, protocol.bytes_out, protocol.close_reason
        log = self.log
        # The event emit_text would make, as one literal: this runs for every
        # connection, and a dict grown key by key behind a call costs 1,300
        # instructions more. Its text is made here, once: formatting the
        # fields through the format string costs twice as much.
        log.observer(
            {
                "peer": peer,
                "duration": duration,
                "bytes_in": bytes_in,
                "bytes_out": bytes_out,
                "reason": reason,
                "log_logger": log,
                "log_level": LogLevel.info,
                "log_namespace": log.namespace,
                "log_source": log.source,
                "log_format": CLOSE_FORMAT,
                "log_text": f"caps: {peer} closed after {duration:.3f}s,"
                f" {bytes_in} bytes in, {bytes_out} bytes out: {reason}",
                "log_time": time(),
            }
        )
        self.count_bytes(protocol)
        self.connections.discard(protocol)
        self.limits.release(protocol.peer)
        if self.connections:
            return
        if not self.numPorts or self._drained is not None:
            self._stop_idle_sweep()
        if self._drained is not None:
            drained, self._drained = self._drained, None
            drained.callback(None)

    def close_all(self) -> "Deferred[None]":
        """
        Close every connection gracefully (queued replies are written, for
        at most C{shutdown_timeout} seconds); fire when all are gone.
        """
        if not self.connections:
            return succeed(None)
        # Kept here: a connection with nothing queued and no grace closes at
        # once, and the last one fires the Deferred and forgets it.
        drained = self._drained = Deferred()
        for protocol in list(self.connections):
            protocol.close(grace=self.shutdown_timeout, reason=SHUTDOWN)
        return drained


def replies_moved(unsent: int | None, unsent_before: int | None) -> bool:
    """
    Whether replies made progress between two looks of the idle sweep:
    some are still unsent (C{unsent}, None where unknown) and fewer than
    at the last look (C{unsent_before}; at the first look, any count).
    """
    return bool(unsent and (unsent_before is None or unsent < unsent_before))


def own_half_close(transport: object) -> Callable[[], None] | None:
    """
    The transport's own C{loseWriteConnection}, or None if its class has none.

    It is looked up on the class, not the instance: a wrapping transport
    (TLS, PROXY protocol) passes names it does not define to the transport
    it wraps, through C{__getattr__}, and the inner transport's half-close
    would end the stream under the wrapper (a TCP FIN under a TLS session,
    with no close_notify). A transport without its own half-close is closed
    whole instead.
    """
    if getattr(type(transport), "loseWriteConnection", None) is None:
        return None
    half_close: Callable[[], None] = transport.loseWriteConnection  # type: ignore[attr-defined]
    return half_close


def client_host(transport: object) -> str | None:
    """
    The client's IP address on C{transport}: an accepted TCP connection's
    own C{client} tuple, with no address object built for it, or
    L{peer_host} of C{getPeer()} for any other transport (a PROXY-protocol
    wrapper's is the header's client).
    """
    if type(transport) in SERVERS:
        host: str = transport.client[0]  # type: ignore[attr-defined]
        return host
    return peer_host(transport.getPeer())  # type: ignore[attr-defined]


def peer_host(address: Any) -> str | None:
    """The client's IP address; None for a client that has none (UNIX)."""
    if isinstance(address, (IPv4Address, IPv6Address)):
        return address.host
    return None
