# -*- test-case-name: tests.unit.test_systemd_sockets,tests.test_systemd -*-
"""
C{systemd:} listeners: sockets inherited through socket activation, found
as C{sd_listen_fds(3)} finds them and served as the kernel says they are.

The protocol: descriptors 3 to 3+C{LISTEN_FDS}-1 are inherited if
C{LISTEN_PID} is this process; C{LISTEN_FDNAMES}, when given, names them
(systemd always gives it, C{systemd-socket-activate} only with
C{--fdname}). C{index=N} finds the N-th socket, with or without names;
C{name=} needs them.

Twisted's own C{systemd:} endpoint finds no socket at all when the names
are missing, and deletes C{LISTEN_PID} and C{LISTEN_FDS} from
C{os.environ} when C{twisted.internet.endpoints} is imported (see
C{docs/twisted.md}), so this module reads the environment the process
started with, once, before a daemonizing fork changes its pid.

The socket is served with the family the kernel reports (C{SO_DOMAIN}),
whatever C{domain=} says: C{systemd-socket-activate -l 1200} and
C{ListenStream=1200} bind C{[::]}, which serves IPv4 clients too (as
C{::ffff:a.b.c.d}); read as C{AF_INET}, its addresses come out scrambled
and every connection looks like a new peer. A socket that is not a
listening stream socket is refused in one line.
"""

import functools
import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from twisted.internet.endpoints import AdoptedStreamServerEndpoint

#: The first inherited descriptor (C{SD_LISTEN_FDS_START}).
LISTEN_FDS_START = 3
#: What a C{systemd:} listener says when this process inherited no socket.
NONE_INHERITED = "no such inherited socket (start the service through systemd socket activation)"
#: The address families a stream listener can serve, by the names C{domain=} uses.
FAMILIES = {socket.AF_INET: "INET", socket.AF_INET6: "INET6", socket.AF_UNIX: "UNIX"}


@dataclass(frozen=True)
class ActivatedSockets:
    """The descriptors passed to this process, and their names if it was given them."""

    descriptors: tuple[int, ...] = ()
    names: tuple[str, ...] = ()

    @classmethod
    def from_environment(cls, environ: Mapping[str, str], pid: int) -> "ActivatedSockets":
        """
        Read C{LISTEN_PID}, C{LISTEN_FDS} and C{LISTEN_FDNAMES} from C{environ}
        as C{sd_listen_fds_with_names(3)} does: none passed unless C{LISTEN_PID}
        is C{pid}; names unknown unless there is one for each descriptor.
        """
        count = environ.get("LISTEN_FDS", "")
        if environ.get("LISTEN_PID") != str(pid) or not (count.isascii() and count.isdigit()):
            return cls()
        descriptors = tuple(range(LISTEN_FDS_START, LISTEN_FDS_START + int(count)))
        passed = environ.get("LISTEN_FDNAMES", "")
        names = tuple(passed.split(":")) if passed else ()
        return cls(descriptors, names if len(names) == len(descriptors) else ())

    def descriptor(self, index: int | None, name: str | None) -> int:
        """
        The descriptor at C{index}, or named C{name}.

        @raise ValueError: in one line, saying what was passed instead.
        """
        if (index is None) == (name is None):
            raise ValueError("systemd: give index= or name=, one of them")
        if not self.descriptors:
            raise ValueError(NONE_INHERITED)
        if index is not None:
            if index >= len(self.descriptors):
                last = len(self.descriptors) - 1
                raise ValueError(
                    f"no inherited socket at index={index}"
                    f" ({len(self.descriptors)} inherited: index=0 to {last})"
                )
            return self.descriptors[index]
        if not self.names:
            raise ValueError(
                f"no inherited socket named {name!r}: they were passed without names"
                " (LISTEN_FDNAMES; systemd-socket-activate --fdname=NAME), use index="
            )
        if name not in self.names:
            raise ValueError(
                f"no inherited socket named {name!r} (inherited: {', '.join(self.names)})"
            )
        return self.descriptors[self.names.index(name)]


def start_environment() -> dict[str, str]:
    """
    The environment this process started with: C{/proc/self/environ} on
    Linux, which no C{del os.environ[...]} changes; C{os.environ} elsewhere.
    """
    try:
        with open("/proc/self/environ", "rb") as environ:
            entries = environ.read().split(b"\0")
    except OSError:
        return dict(os.environ)
    pairs = (entry.partition(b"=") for entry in entries if entry)
    return {os.fsdecode(name): os.fsdecode(value) for name, _, value in pairs}


@functools.cache
def activated_sockets() -> ActivatedSockets:
    """The sockets this process inherited, read once: a daemonizing fork changes its pid."""
    return ActivatedSockets.from_environment(start_environment(), os.getpid())


def listening_stream_family(fd: int) -> int:
    """
    The address family of the inherited listening stream socket C{fd}, as
    the kernel reports it (C{SO_DOMAIN}).

    @raise ValueError: in one line, for a descriptor that is not open, not a
        socket, not a stream socket, not listening or of another family.
    """
    try:
        probe = socket.socket(fileno=os.dup(fd))
    except OSError as error:
        raise ValueError(f"inherited descriptor {fd} is not a socket ({error.strerror})") from None
    with probe:
        family = probe.getsockopt(socket.SOL_SOCKET, socket.SO_DOMAIN)
        kind = probe.getsockopt(socket.SOL_SOCKET, socket.SO_TYPE)
        listening = probe.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN)
    if kind == socket.SOCK_DGRAM:
        raise ValueError(
            f"inherited socket {fd} is a datagram socket: --tcp takes a listening stream"
            " socket (caps binds UDP itself: --udp)"
        )
    if kind != socket.SOCK_STREAM:
        raise ValueError(f"inherited socket {fd} is not a stream socket (SO_TYPE {kind})")
    if family not in FAMILIES:
        raise ValueError(f"inherited socket {fd} is not INET, INET6 or UNIX (family {family})")
    if not listening:
        raise ValueError(
            f"inherited socket {fd} is not listening (a connection, as with"
            " systemd-socket-activate --accept, cannot be served as a listener)"
        )
    return family


def systemd_endpoint(reactor: Any, index: str | None, name: str | None) -> Any:
    """
    The endpoint of a C{systemd:} listener: the inherited socket at
    C{index} or named C{name}, adopted with its own family.

    @raise ValueError: in one line, for a missing or unfit socket.
    """
    fd = activated_sockets().descriptor(None if index is None else int(index), name)
    return AdoptedStreamServerEndpoint(reactor, fd, listening_stream_family(fd))
