"""
The least a Python server can run per message: one C{select.epoll} loop
that reads each ready socket once and writes C{bytes.upper()} of what it
read, over TCP and UDP on 127.0.0.1, with no framework, no Unicode, no
limits, no logs and no flow control.

It is not a server to deploy (a client that stops reading blocks it); it
measures what any Python event loop pays before it adds anything: an
iteration of a Python loop, a read, an upper-casing and a write per
message, and an accept, a registration and a close per connection. What
twisted-caps costs above it is Twisted's transports and caps' own
accounting; what uvloop costs above or below it is its C loop against
this Python one. Logs C{serving TCP on 127.0.0.1:PORT} and the same for
UDP, like C{twistd caps}, and exits with status 0 on SIGTERM (so a run
under cProfile writes its figures).
"""

import os
import select
import signal
import socket
import sys
from types import FrameType


def listen() -> tuple[socket.socket, socket.socket]:
    """A listening TCP socket and a UDP socket on free ports of 127.0.0.1."""
    stream = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    stream.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    stream.bind(("127.0.0.1", 0))
    stream.listen(4096)
    stream.setblocking(False)
    datagrams = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    datagrams.bind(("127.0.0.1", 0))
    datagrams.setblocking(False)
    for kind, sock in (("TCP", stream), ("UDP", datagrams)):
        print(f"python-floor: serving {kind} on 127.0.0.1:{sock.getsockname()[1]}", flush=True)
    return stream, datagrams


def serve(stream: socket.socket, datagrams: socket.socket) -> None:
    """
    Serve until killed. Accepted sockets stay blocking: each is read only
    when epoll says it is readable, and a reply is written whole.
    """
    poller = select.epoll()
    listening, udp = stream.fileno(), datagrams.fileno()
    poller.register(listening, select.EPOLLIN)
    poller.register(udp, select.EPOLLIN)
    accept, register, poll = stream._accept, poller.register, poller.poll  # type: ignore[attr-defined]
    read, write, close = os.read, os.write, os.close
    while True:
        for fd, _ in poll():
            if fd == listening:
                while True:
                    try:
                        client, _address = accept()
                    except BlockingIOError:
                        break
                    register(client, select.EPOLLIN)
            elif fd == udp:
                try:
                    message, sender = datagrams.recvfrom(65535)
                    datagrams.sendto(message.upper(), sender)
                except OSError:
                    pass
            else:
                try:
                    data = read(fd, 65536)
                    if data:
                        reply = data.upper()
                        sent = write(fd, reply)
                        while sent < len(reply):
                            sent += write(fd, reply[sent:])
                        continue
                except OSError:
                    pass
                # End of input, or an error: close(2) takes it out of epoll.
                close(fd)


def stop(number: int, frame: FrameType | None) -> None:
    """Exit with status 0: SIGTERM is how the benchmark stops every server."""
    sys.exit(0)


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, stop)
    serve(*listen())
