# -*- test-case-name: tests.test_compact_stream -*-
"""
The course's TCP traffic, answered without a Twisted transport or protocol
until a connection needs one.

Most connections a course makes are a sentence, its answer and a close.
L{CompactCapsConnection} serves those as one small object (see
L{twisted_caps._twisted.compact}): it is admitted, counted and logged
like any connection, answers each ASCII chunk with C{bytes.upper()} sent
whole at once, and closes with the client. The moment a connection
needs more, it becomes a L{CapsStreamProtocol} on a lean transport that
carries on from where it was, with its counts, its clock and its place
among the factory's connections: at a chunk with a non-ASCII byte
(Unicode's case mapping), a read longer than L{LONGEST_CHUNK} (a client
that streams), a reply the kernel does not take whole (flow control), a
graceful close (shutdown, an idle timeout) and an idle sweep's look at a
connection that is due. The bytes on the wire, the log lines, the
limits and the counters are the same either way.
"""

from contextlib import suppress
from os import read, write
from socket import MSG_DONTWAIT, SHUT_RDWR

from twisted.internet.error import ConnectionDone
from twisted.python.failure import Failure

from twisted_caps._twisted.compact import CompactConnection
from twisted_caps._twisted.lean_server import READ_SIZE, LeanServer, kernel_unsent
from twisted_caps.serving.stream import (
    CLIENT_CLOSED,
    ERROR,
    CapsStreamFactory,
    CapsStreamProtocol,
    replies_moved,
)

#: The longest read a compact connection answers itself: a longer one is a
#: client that streams, which the lean transport serves with reads that
#: grow to 256 KiB and with flow control. A sentence is far shorter.
LONGEST_CHUNK = 16384
#: What a compact connection reads after a short read: the most whose
#: C{bytes} (its 33-byte header included) CPython takes from its small-object
#: pool, 512 bytes. A 64 KiB read costs a C{malloc} and a C{realloc} that
#: shrinks it: a seventh of the instructions Python runs for a sentence.
#: A read that fills it is followed by one of L{READ_SIZE}.
SHORT_READ = 479


class CompactCapsConnection(CompactConnection):
    """
    An admitted connection answered by C{bytes.upper()} while its traffic
    is ASCII chunks of at most L{LONGEST_CHUNK} bytes; a
    L{CapsStreamProtocol} from the first chunk that is not.
    """

    __slots__ = (
        "bytes_at_look",
        "bytes_in",
        "bytes_out",
        "close_reason",
        "factory",
        "last_progress_at",
        "opened_at",
        "peer",
        "read_size",
        "steady",
        "unsent",
    )

    factory: CapsStreamFactory

    def __init__(self, sock: object, fd: int, address: tuple[str, int], port: object) -> None:
        """
        Admit the connection as the protocol's C{connectionMade} does, or
        close it. Sets the base class's attributes itself: one call less
        for every connection.
        """
        self.socket = sock
        self.fd = fd
        self.address = address
        self.port = port  # type: ignore[assignment]
        self.factory = factory = port.factory  # type: ignore[attr-defined]
        self.peer: str | None = address[0]
        # bytes_out is always bytes_in here, but a slot: the close line
        # reads it once per connection, a property would cost a call.
        self.bytes_in = self.bytes_out = self.bytes_at_look = 0
        self.steady = False
        self.read_size = SHORT_READ
        self.close_reason: str | None = None
        self.unsent: int | None = None
        self.opened_at = self.last_progress_at = factory.clock.seconds()
        if not factory.admit(self):
            # Refused as Twisted's transport closes: shutdown(2) sends the
            # FIN before close(2) resets for the bytes left unread, so the
            # client reads the end of the stream, not an error.
            with suppress(OSError):
                sock.shutdown(SHUT_RDWR)  # type: ignore[attr-defined]
            self.close_now()

    @property
    def input_seen(self) -> bool:
        """Whether input arrived since the idle sweep's last look."""
        return self.bytes_in != self.bytes_at_look

    @property
    def bytes_uncounted(self) -> int:
        """
        Its bytes in (and as many out), left out of the factory's totals
        until it ends or carries on: a message costs one count, not three.
        """
        return self.bytes_in

    def doRead(self) -> None:
        """
        Answer a chunk, or close at the end of input, or carry on as a
        protocol. Counts only its own bytes: this runs for every message.

        Reads are L{SHORT_READ} bytes after a read shorter than that, and
        L{READ_SIZE} after one that filled what it asked for. The accepted
        socket stays blocking, read and written with C{MSG_DONTWAIT}, until
        the connection has answered two messages: then it stays, and is
        made non-blocking (one C{ioctl}) and read and written with
        C{os.read} and C{os.write}, whose arguments Python parses for far
        less than C{recv}'s and C{send}'s with flags. A connection of one
        sentence never pays the C{ioctl}.
        """
        fd = self.fd
        steady = self.steady
        asked = self.read_size
        try:
            data = read(fd, asked) if steady else self.socket.recv(asked, MSG_DONTWAIT)
        except BlockingIOError:
            return
        except OSError:
            self._end(ERROR)
            return
        size = len(data)
        if not size:
            self._end(CLIENT_CLOSED)
            return
        if size > LONGEST_CHUNK or not data.isascii():
            self._read_other(data, asked)
            return
        if size == asked:
            self.read_size = READ_SIZE
        elif asked != SHORT_READ and size < SHORT_READ:
            self.read_size = SHORT_READ
        bytes_in = self.bytes_in = self.bytes_in + size
        self.bytes_out += size
        reply = data.upper()
        try:
            sent = write(fd, reply) if steady else self.socket.send(reply, MSG_DONTWAIT)
        except OSError:
            # The transport's write meets the same condition and handles it.
            sent = 0
        if sent < size:
            self._carry_on()[0].queue_unsent(reply[sent:])
        elif not steady and bytes_in != size:
            self.socket.setblocking(False)
            self.steady = True

    def _read_other(self, data: bytes, asked: int) -> None:
        """A chunk (read asking for C{asked}) only the protocol answers."""
        protocol, transport = self._carry_on()
        protocol.dataReceived(data)
        if asked == READ_SIZE:
            # The transport sizes its next read as after a read of its own.
            transport.follow_the_client(len(data), asked)

    def check_idle(self, now: float, idle_timeout: float) -> None:
        """
        The idle sweep's look, as the protocol's: input since the last look
        is progress, and so are replies leaving the kernel's send queue
        (every reply is in it or sent). A connection due carries on as the
        protocol, which closes it gracefully.
        """
        unsent = kernel_unsent(self.fd)
        moved = self.input_seen or replies_moved(unsent, self.unsent)
        self.bytes_at_look = self.bytes_in
        self.unsent = unsent
        if moved:
            self.last_progress_at = now
        elif now - self.last_progress_at >= idle_timeout:
            self._carry_on()[0].check_idle(now, idle_timeout)

    def close(self, grace: float = 0.0, reason: str = CLIENT_CLOSED) -> None:
        """Close as the protocol does (with a grace period, a half-close first)."""
        self._carry_on()[0].close(grace, reason)

    def connectionLost(self, reason: Failure) -> None:
        """The reactor ends the connection: it stops, or the socket failed."""
        self._end(CLIENT_CLOSED if isinstance(reason.value, ConnectionDone) else ERROR)

    def _end(self, reason: str) -> None:
        """Close now and give the connection back to the factory, once."""
        if self.fd == -1:
            return
        self.close_reason = reason
        self.close_now()
        self.factory.release(self)

    def _carry_on(self) -> tuple[CapsStreamProtocol, LeanServer]:
        """The protocol, on a lean transport, that serves this connection from now on."""
        protocol = CapsStreamProtocol(self.factory)
        transport = self.hand_over(protocol)
        protocol.carry_on(self, transport)
        return protocol, transport
