# -*- test-case-name: tests.test_immediate -*-
"""
Send on a TCP transport at once when nothing is queued, as asyncio does, and
close it at once when nothing is queued; send UDP replies without
re-checking the address the kernel gave; measure the replies a connection
has not sent yet (its idle timer's view of output).

Twisted's C{transport.write} always buffers: the bytes go out on the next
reactor iteration, after one C{epoll_ctl} to watch for writability and
before another to stop. For a request/response exchange that is two extra
system calls and a second trip round the reactor per message. When the
transport's buffer is empty, sending straight away is equivalent and
cheaper; whatever the kernel does not take is handed to C{write} as usual,
so ordering, flow control and error handling stay Twisted's.

This reads C{twisted.internet.tcp.Connection}'s buffer attributes, which
are not public; it applies only to that exact class (TLS, PROXY-protocol
and test transports keep the plain C{write}), and is the change to
propose upstream: C{FileDescriptor.write} could try C{writeSomeData} when
its buffer is empty.
"""

from collections.abc import Callable
from typing import Any

from twisted.internet import abstract, main, tcp, udp
from twisted.python.failure import Failure

from twisted_caps._twisted.eager_read import EagerServer
from twisted_caps._twisted.lean_server import LeanServer, kernel_unsent

#: The transport's parts L{send_at_once} reads that its class has, looked up
#: once (it also reads C{socket} and C{_tempDataLen}, which each instance gets).
_USED_FROM_CLASS = ("dataBuffer", "offset", "_writeDisconnecting")
_SERVER_HAS_THEM = all(hasattr(tcp.Server, name) for name in _USED_FROM_CLASS)
#: The transports of accepted TCP connections, Twisted's and the lean ones.
SERVERS = (tcp.Server, LeanServer, EagerServer)
#: The reason given for a close, made once as Twisted's reactor makes its own.
_CONNECTION_DONE = Failure(main.CONNECTION_DONE)


def supports_immediate_send(transport: object) -> bool:
    """
    Whether L{send_at_once} may be used on C{transport}: a C{tcp.Server}
    (or L{LeanServer}) with the attributes it reads (a Twisted without them
    keeps the plain C{write}).
    """
    if type(transport) not in SERVERS or not _SERVER_HAS_THEM:
        return False
    instance = vars(transport)
    return "socket" in instance and "_tempDataLen" in instance


def _nothing_queued(transport: Any) -> bool:
    """Whether C{transport} is open and holds no bytes waiting to be sent."""
    return bool(
        transport.offset == len(transport.dataBuffer)
        and not transport._tempDataLen
        and transport.connected
        and not transport.disconnecting
        and not transport._writeDisconnecting
    )


def lose_connection_now(transport: Any) -> None:
    """
    Close a C{tcp.Server} at once if nothing is queued, else as Twisted does.

    C{loseConnection} always waits for the socket to be writable to send
    what is queued, even when nothing is: an C{epoll_ctl} to watch for
    writability, one more reactor turn, a zero-length C{send} and an
    C{epoll_ctl} to stop, for every connection of a churning client. With
    nothing queued, this closes at once, as C{loseConnection} itself does
    after a write half-close. Call it only outside a read (from
    C{readConnectionLost}, a timer), or after the whole reply was sent.
    """
    if _nothing_queued(transport):
        # Which stops reading and writing first, as the reactor's close does.
        transport.connectionLost(_CONNECTION_DONE)
    else:
        transport.loseConnection()


def send_at_once(transport: Any, data: bytes) -> bytes:
    """
    Send as much of C{data} on a C{tcp.Server} as the kernel takes now, if
    nothing is queued; return the rest, for the caller to hand to the
    transport's C{write}.

    Any error from C{send} (a full socket buffer, a reset, a closed pipe)
    leaves the bytes to C{write}, whose own attempt meets the same
    condition and handles it as Twisted always does.
    """
    # _nothing_queued, inlined: this runs once per reply.
    if (
        transport.offset != len(transport.dataBuffer)
        or transport._tempDataLen
        or not transport.connected
        or transport.disconnecting
        or transport._writeDisconnecting
    ):
        return data
    try:
        sent: int = transport.socket.send(data)
    except OSError:
        return data
    return data[sent:]


def unsent_bytes(transport: object) -> int | None:
    """
    How many reply bytes are still on their way out of this host: queued in
    the Twisted transport under any wrappers (TLS, PROXY protocol), plus
    those in the kernel's send queue not yet acknowledged by the client
    (C{SIOCOUTQ}, Linux; for a UNIX socket, the memory they take, which
    shrinks as they go just the same; 0 where the kernel cannot tell).
    None for a transport that is not a file descriptor (or a Twisted
    without these attributes): no progress can be seen there.

    Called once per idle-timer expiry, never per chunk. It reads
    C{FileDescriptor}'s write buffer, which Twisted does not publish (no
    Twisted ticket yet; the change to propose: a transport method for the
    bytes it has queued, as WebSocket's C{bufferedAmount}).
    """
    while not isinstance(transport, abstract.FileDescriptor):
        transport = getattr(transport, "transport", None)
        if transport is None:
            return None
    queued: bytes | None = getattr(transport, "dataBuffer", None)
    offset: int | None = getattr(transport, "offset", None)
    temporary: int | None = getattr(transport, "_tempDataLen", None)
    if queued is None or offset is None or temporary is None:
        return None
    return len(queued) - offset + temporary + (kernel_unsent(transport.fileno()) or 0)


def datagram_sender(transport: object) -> Callable[[bytes, tuple[str, int]], object] | None:
    """
    The socket's own C{sendto} for a C{udp.Port}, or None for other transports.

    C{udp.Port.write} checks that the address is an IP address, three calls
    per datagram; a reply goes to the address C{recvfrom} just gave, so the
    check can only pass. Errors are raised as C{OSError} (a full buffer, a
    reply the kernel will not take), for the caller to count.
    """
    if type(transport) is not udp.Port:
        return None
    sendto: Callable[[bytes, tuple[str, int]], object] = transport.socket.sendto
    return sendto
