# -*- test-case-name: tests.test_check_listening -*-
"""
The ports a process and the processes of its session listen on, read from
C{/proc} (Linux), so that a server that ignores the port it was given can
be told which one it took instead. Elsewhere nothing is found.
"""

import os
from contextlib import suppress

#: The tables of sockets, with the state a listening socket has in each
#: (TCP C{LISTEN}; an unconnected UDP socket is C{CLOSE}).
SOCKET_TABLES = {
    "/proc/net/tcp": ("TCP", "0A"),
    "/proc/net/tcp6": ("TCP", "0A"),
    "/proc/net/udp": ("UDP", "07"),
    "/proc/net/udp6": ("UDP", "07"),
}


def session_processes(leader: int) -> list[int]:
    """The processes of the session C{leader} leads (itself included, while it lives)."""
    found = []
    with suppress(OSError):
        for name in os.listdir("/proc"):
            if not name.isdigit():
                continue
            with suppress(OSError, ValueError, IndexError):
                with open(f"/proc/{name}/stat", encoding="ascii", errors="replace") as stat:
                    # pid (comm) state ppid pgrp session ...: comm may hold spaces.
                    fields = stat.read().rsplit(")", 1)[1].split()
                if int(fields[3]) == leader:
                    found.append(int(name))
    return found


def socket_inodes(pid: int) -> set[int]:
    """The inodes of the sockets process C{pid} holds open."""
    inodes = set()
    with suppress(OSError):
        for descriptor in os.listdir(f"/proc/{pid}/fd"):
            with suppress(OSError):
                target = os.readlink(f"/proc/{pid}/fd/{descriptor}")
                if target.startswith("socket:["):
                    inodes.add(int(target[len("socket:[") : -1]))
    return inodes


def listening_ports(pids: list[int]) -> set[tuple[str, int]]:
    """C{("TCP", port)} and C{("UDP", port)} for each port the processes C{pids} listen on."""
    inodes = set().union(*(socket_inodes(pid) for pid in pids)) if pids else set()
    ports = set()
    for path, (transport, listening_state) in SOCKET_TABLES.items():
        with suppress(OSError), open(path, encoding="ascii") as table:
            next(table, None)  # the heading
            for row in table:
                columns = row.split()
                listens = len(columns) > 9 and columns[3] == listening_state
                if listens and int(columns[9]) in inodes:
                    ports.add((transport, int(columns[1].rsplit(":", 1)[1], 16)))
    return ports
