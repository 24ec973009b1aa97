"""
The workloads every server gets, and how each is driven and measured.

Throughput workloads run the C load generator (C{loadgen.c}) on the load
core; the idle-connection workload opens sockets from this process and reads
the server's resident memory from C{/proc}. Expected replies are computed
here with the reference transform, so the generator checks every byte.
"""

import json
import resource
import socket
import subprocess
import time
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

from bench.servers import RunningServer, pinned, tree_cpu_split, tree_rss_kib
from twisted_caps.core.transform import capitalize

#: A 64-byte request, the size of a short line of text.
MESSAGE = b"hello world, the quick brown fox jumps over the lazy dog 0123456\n"
#: One 64 KiB write of the bulk and saturating streams.
BULK = (b"the quick brown fox jumps over the lazy dog. " * 1500)[:65536]
#: Writes each connection of the saturating stream keeps in flight: 4 MiB,
#: more than the socket buffers and caps' write buffer hold together, as
#: C{cat big.txt | nc host 1200} keeps, so the server's flow control runs.
SATURATING_WINDOW = 64
CPU_FIELDS = ("ru_utime", "ru_stime")


@dataclass(frozen=True)
class Workload:
    """
    One load pattern.

    @ivar mode: the load generator's mode (tcp, churn, udp), or idle.
    @ivar count: connections, concurrent connections, or UDP sockets.
    @ivar window: requests each connection or socket keeps in flight.
    """

    name: str
    title: str
    mode: str
    count: int
    window: int
    payload: bytes


def workloads(idle_connections: int) -> tuple[Workload, ...]:
    """Every workload, in the order they run; idle first, on a fresh server."""
    return (
        Workload("idle", f"RSS per idle conn, KiB ({idle_connections})", "idle",
                 idle_connections, 1, b"x"),
        Workload("rr1", "req/resp, 1 conn", "tcp", 1, 1, MESSAGE),
        Workload("rr100", "req/resp, 100 conns", "tcp", 100, 1, MESSAGE),
        Workload("bulk", "bulk, 10 conns", "tcp", 10, 4, BULK),
        Workload("stream", "saturating stream, 10 conns", "tcp", 10, SATURATING_WINDOW, BULK),
        Workload("churn", "churn, conn per request", "churn", 16, 1, MESSAGE),
        Workload("udp", "UDP, 64-byte datagrams", "udp", 8, 16, MESSAGE),
    )  # fmt: skip


def run(
    workload: Workload,
    server: RunningServer,
    build: Path,
    seconds: float,
    cores: Collection[int] | None,
) -> dict[str, float]:
    """Drive C{server} with C{workload}; return the counts measured."""
    if workload.mode == "idle":
        return idle_memory(server, workload.count)
    return run_loadgen(workload, server, build, seconds, cores, capitalize(workload.payload))


def run_loadgen(
    workload: Workload,
    server: RunningServer,
    build: Path,
    seconds: float,
    cores: Collection[int] | None,
    expected: bytes,
) -> dict[str, float]:
    """Run the load generator, which compares every reply with C{expected}."""
    request = build / f"{workload.name}.request"
    expect = build / f"{workload.name}.expect"
    request.write_bytes(workload.payload)
    expect.write_bytes(expected)
    port = server.udp_port if workload.mode == "udp" else server.tcp_port
    window = [] if workload.mode == "churn" else [str(workload.window)]
    command = [str(build / "loadgen"), workload.mode, str(port), str(workload.count)]
    command += [*window, str(seconds), str(request), str(expect)]
    user_before, system_before = tree_cpu_split(server.process.pid)
    load_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    finished = subprocess.run(
        pinned(command, cores), capture_output=True, check=True, timeout=seconds + 30
    )
    load_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    counts: dict[str, float] = json.loads(finished.stdout)
    # Busy fractions show which side was the bottleneck: a load generator
    # well under 1.0 while the server is near 1.0 means the server was.
    load_cpu = sum(getattr(load_after, f) - getattr(load_before, f) for f in CPU_FIELDS)
    counts["load_busy"] = load_cpu / counts["seconds"]
    user_after, system_after = tree_cpu_split(server.process.pid)
    counts["server_user"] = (user_after - user_before) / counts["seconds"]
    counts["server_system"] = (system_after - system_before) / counts["seconds"]
    counts["server_busy"] = counts["server_user"] + counts["server_system"]
    counts["rate"] = counts["ops"] / counts["seconds"]
    counts["mb_per_s"] = counts["bytes"] / counts["seconds"] / 1e6
    return counts


def idle_memory(server: RunningServer, connections: int) -> dict[str, float]:
    """
    Open idle connections, each answered once so the server has surely built
    its protocol, and return the server's resident memory growth per
    connection. Stops early, and says so, if the server stops accepting.
    """
    pid = server.process.pid
    time.sleep(0.2)
    before = tree_rss_kib(pid)
    sockets: list[socket.socket] = []
    bad = 0
    try:
        for _ in range(connections):
            sock = socket.create_connection(("127.0.0.1", server.tcp_port), timeout=5)
            sockets.append(sock)
            sock.sendall(b"x")
            if sock.recv(16) != capitalize(b"x"):
                bad += 1
    except OSError as error:
        # The server stopped accepting (often EMFILE): measure what it holds.
        print(f"bench: {server.spec.title} held {len(sockets)} connections: {error}")
        if sockets:
            sockets.pop().close()
    time.sleep(0.5)
    after = tree_rss_kib(pid)
    for sock in sockets:
        sock.close()
    opened = len(sockets)
    return {
        "ops": opened,
        "seconds": 0,
        "bad": bad,
        "errors": 0,
        "lost": 0,
        "short_of": connections - opened,
        "rss_before_kib": before,
        "rss_after_kib": after,
        "kib_per_conn": (after - before) / max(opened, 1),
    }
