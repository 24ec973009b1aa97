# -*- test-case-name: tests.test_lean_server -*-
"""
Accept TCP connections into a transport that makes its log prefix and its
C{repr} when they are asked for, not at every accept, and reads more at a
time from a client that streams.

C{tcp.Server}'s constructor formats two strings per connection, C{logstr}
(the prefix of old-style log lines about it) and C{repstr} (its C{repr}):
about 165 bytes that every idle connection keeps, an eighth of what one
costs caps in all, and two string formats per accepted connection, for
text read only when something logs an error about the connection or
prints it (and five calls to ask the protocol for its prefix).
L{LeanServer}'s constructor does what Twisted's does but those, and
makes the same text on demand; L{use_lean_server} has a
listening C{tcp.Port} build it (the port's C{transport} attribute is the
class it builds). A connection's prefix after it has closed (Twisted has
removed its protocol by then) names no protocol.

Twisted reads at most C{bufferSize} (64 KiB) per wake-up, which is also
the size of the write buffer at which a producer is paused. A client that
streams (C{cat big.txt | nc host 1200}) then costs a trip round the
reactor, a C{dataReceived} and a C{send} per 64 KiB. L{LeanServer} asks
for L{MAX_READ_SIZE} after a read that filled what it asked for, if the
replies to so large a read (three times its size at most, for the rare
characters whose capitals are longer) would fit in the kernel's send
buffer beside what is still unsent; and for 64 KiB again after a short
read, or when they would not. So a request of a few bytes never
allocates a large buffer, and a client that stops reading gets 64 KiB
reads before its replies pile up here: what a paused connection holds
stays the 64 KiB write buffer plus one 64 KiB read's replies. This
replaces C{Connection.doRead} (and the private C{_dataReceived} it
calls, inlined: a call less per read) and reads its private write
buffer.

Closing a connection, Twisted takes its descriptor out of the epoll set
(an C{epoll_ctl}), then calls C{shutdown(2)} and C{close(2)}. For a
socket no other descriptor refers to, and an accepted one is such a
socket (close-on-exec, never duplicated), C{close(2)} alone does both:
it sends the FIN after what is still queued, and takes the descriptor out
of every epoll set. So L{LeanServer} has the epoll reactor only forget
the descriptor in its tables (C{_selectables}, C{_reads}, C{_writes})
before Twisted's close, and, once its client has closed its side
(nothing more can arrive, so no input is left unread to turn the close
into a reset), skips the C{shutdown(2)}
(C{_SocketCloser._shouldShutdown}): two system calls fewer for every
short connection, eight in all instead of ten. The reactor, though,
unregisters a connection as soon as a read finds its end of input, before
the protocol closes it; L{disconnect_after_read} tells the protocol
first (and calls the reactor's C{_disconnectSelectable} for every other
end of a read).

It reads C{Port._realPortNumber} for the C{repr}, as Twisted does. The
changes to propose upstream: compute C{logstr} and C{repr} lazily in
C{tcp.Server} itself, let a transport's read size adapt, and close an
accepted socket with C{close(2)} alone (no ticket for any yet). A port
that is not exactly a C{tcp.Port} building C{tcp.Server}s keeps Twisted's transport. The
constructor is Twisted 26.10's less the strings (C{tcp.Connection}'s,
then the attributes C{tcp.Server}'s sets, C{_addressType} for IPv6
included): a Twisted whose C{Server} sets more fails
C{tests/test_lean_server.py}, which compares the attributes of both.
"""

import fcntl
import socket
import struct
import termios
from errno import EAGAIN
from typing import Any

from twisted.internet import address, main, tcp
from twisted.internet.epollreactor import EPollReactor
from twisted.internet.interfaces import ILoggingContext, IProtocol, IReactorFDSet
from twisted.python import log
from twisted.python.failure import Failure


def _log_prefix(protocol: object) -> str:
    """What Twisted logs a protocol's events under: its C{logPrefix()}, or its class name."""
    if ILoggingContext.providedBy(protocol):
        prefix: str = protocol.logPrefix()
        return prefix
    return protocol.__class__.__name__


def kernel_unsent(fd: int) -> int | None:
    """
    The bytes in socket C{fd}'s send queue, sent but unacknowledged or not
    sent yet (C{SIOCOUTQ}, Linux; for a UNIX socket, the memory they take);
    None where the kernel cannot tell (not a socket, closed, not Linux).
    """
    try:
        answer = fcntl.ioctl(fd, termios.TIOCOUTQ, b"\0\0\0\0")
    except (OSError, ValueError):
        return None
    unsent: int = struct.unpack("i", answer)[0]
    return unsent


#: What a read asks for at first, and after a short read: Twisted's own size.
READ_SIZE = 65536
#: What a read asks for while the reads before it came back full.
MAX_READ_SIZE = 262144


class LeanServer(tcp.Server):
    """
    A C{tcp.Server} whose C{logstr} and C{repstr} are made when read, and
    whose reads grow to L{MAX_READ_SIZE} while the client streams.
    """

    #: What the next read asks for (an instance attribute only once it grew).
    read_size = READ_SIZE

    def __init__(
        self,
        sock: socket.socket,
        protocol: IProtocol,
        client: tuple[Any, ...],
        server: tcp.Port,
        sessionno: int,
        reactor: IReactorFDSet,
    ) -> None:
        """
        C{tcp.Server.__init__} less the two strings: Twisted's asks the
        protocol for its log prefix (five calls) and formats both, for every
        connection accepted.
        """
        tcp.Connection.__init__(self, sock, protocol, reactor)
        if len(client) != 2:
            self._addressType = address.IPv6Address
        self.server = server
        self.client = client
        self.sessionno = sessionno
        self.hostname = client[0]
        self.start_reading_when_accepted()
        self.connected = 1

    def start_reading_when_accepted(self) -> None:
        """Watch for input from the start, as Twisted's transport does."""
        self.startReading()

    def doRead(self) -> Any:
        """
        C{Connection.doRead} and its C{_dataReceived} in one method (one
        call less per read), with a read size that follows the client.
        """
        asked = self.read_size
        try:
            data = self.socket.recv(asked)
        except OSError as error:
            if error.args[0] == EAGAIN:
                return None
            return main.CONNECTION_LOST
        if not data:
            # The client has closed its side: the close needs no shutdown(2).
            self._shouldShutdown = False
            return main.CONNECTION_DONE
        self.protocol.dataReceived(data)
        self.follow_the_client(len(data), asked)
        return None

    def follow_the_client(self, received: int, asked: int) -> None:
        """
        Size the next read after one of C{received} bytes that asked for
        C{asked}: larger after a full read whose replies have room, 64 KiB
        again after a short one.
        """
        if received == asked and self.connected:
            self.read_size = MAX_READ_SIZE if self._room_for_a_large_reply() else READ_SIZE
        elif received < READ_SIZE and asked != READ_SIZE:
            self.read_size = READ_SIZE

    def connectionLost(self, reason: Failure) -> None:
        """
        Twisted's close, less the C{epoll_ctl}: the epoll reactor forgets
        the descriptor, and the C{close(2)} that follows takes it out of
        the epoll set.
        """
        if "socket" in vars(self):
            _forget_before_close(self.reactor, self)
        super().connectionLost(reason)

    def _room_for_a_large_reply(self) -> bool:
        """
        Whether the replies to a read of L{MAX_READ_SIZE} (three times its
        size at most) would fit in the kernel's send buffer beside what is
        still unsent: so a large read is never queued here for a client
        that has stopped reading.
        """
        if self._tempDataLen or self.offset < len(self.dataBuffer):
            return False
        unsent = kernel_unsent(self.socket.fileno())
        if unsent is None:
            return False
        try:
            capacity = self.socket.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF) // 2
        except OSError:
            return False
        return bool(unsent + 3 * MAX_READ_SIZE <= capacity)

    @property
    def logstr(self) -> str:
        """C{PROTOCOL,SESSION,HOST}, as Twisted's constructor would have made it."""
        protocol = vars(self).get("protocol")
        prefix = "-" if protocol is None else _log_prefix(protocol)
        return f"{prefix},{self.sessionno},{self.hostname}"

    @logstr.setter
    def logstr(self, value: str) -> None:
        """The constructor's value is dropped: it is made when read."""

    @property
    def repstr(self) -> str:
        """C{<PROTOCOL #SESSION on PORT>}, as Twisted's constructor would have made it."""
        protocol = vars(self).get("protocol")
        name = "closed" if protocol is None else protocol.__class__.__name__
        return f"<{name} #{self.sessionno} on {self.server._realPortNumber}>"

    @repstr.setter
    def repstr(self, value: str) -> None:
        """The constructor's value is dropped: it is made when read."""


#: The reason given for the end of input, made once as the reactor makes its own.
_INPUT_ENDED = Failure(main.CONNECTION_DONE)


def disconnect_after_read(reactor: Any, selectable: Any, why: object, from_read: bool) -> None:
    """
    End C{selectable} after a read that returned or raised C{why}, as the
    reactor's C{_disconnectSelectable} does, with the context of
    C{log.callWithLogger} only if that raises. A lean connection's end of
    input reaches its protocol first, and the reactor stops reading it
    only if it is still open: the reactor's order unregisters it from
    epoll (an C{epoll_ctl}) just before a protocol that closes at once
    closes it, which takes it out of the epoll set anyway.
    """
    try:
        if why is main.CONNECTION_DONE and isinstance(selectable, LeanServer):
            selectable.readConnectionLost(_INPUT_ENDED)
            if not selectable.disconnected:
                reactor.removeReader(selectable)
        else:
            reactor._disconnectSelectable(selectable, why, from_read)
    except KeyboardInterrupt:
        raise  # as callWithLogger does
    except BaseException:
        log.callWithLogger(selectable, log.err)


def _forget_before_close(reactor: Any, transport: LeanServer) -> None:
    """
    Take C{transport} out of an epoll reactor's tables, not out of its epoll
    set: its socket is about to be closed, which does that. Any other
    reactor (or an epoll reactor that does not hold it) is left to
    Twisted's close.
    """
    if type(reactor) is not EPollReactor:
        return
    fd = transport.socket.fileno()
    selectables = reactor._selectables
    if selectables.get(fd) is transport:
        del selectables[fd]
        reactor._reads.discard(fd)
        reactor._writes.discard(fd)


def use_lean_server(port: Any) -> bool:
    """
    Have the listening C{port} build L{LeanServer}s for its connections if
    it is a C{tcp.Port} building C{tcp.Server}s; return whether it does.
    """
    if type(port) is not tcp.Port or port.transport is not tcp.Server:
        return False
    port.transport = LeanServer
    return True
