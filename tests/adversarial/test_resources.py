"""
Attacks on the installed daemon's resources: more clients at once than it
has file descriptors for.
"""

import re
import socket
from contextlib import ExitStack

from twisted.trial.unittest import SynchronousTestCase

from tests.servers import (
    Daemon,
    metric_total,
    metrics_port_of,
    require_program,
    start_process,
    twistd,
    wait_for,
)

#: The hard (and so soft) open-files limit the daemon runs under.
OPEN_FILES_LIMIT = 64
CLIENTS = 300
FIRST_REFUSAL = re.compile(rb"caps: refused a connection from \S+: open-files reached")
MORE_REFUSALS = re.compile(rb"caps: refused (\d+) more connections in \S+, the last from")


def answered(port: int) -> bool:
    """Whether a new client on C{port} gets its reply (False if it is refused or cut)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as client:
            client.sendall(b"after")
            return client.recv(16) == b"AFTER"
    except OSError:
        return False


def logged_refusals(output: bytes) -> int:
    """The refusals for lack of descriptors that the log accounts for."""
    first = len(FIRST_REFUSAL.findall(output))
    return first + sum(int(count) for count in MORE_REFUSALS.findall(output))


class OpenFilesExhaustionTests(SynchronousTestCase):
    """
    Descriptor exhaustion is survived and summarized: with a hard limit of
    64 open files and 300 clients at once, the clients the daemon cannot
    hold are closed, counted as refused for C{open-files}, and logged in a
    line a second at most, each refusal accounted for; then a new client is
    answered.
    """

    def start(self, *layout: str) -> tuple[Daemon, int]:
        prlimit = require_program("prlimit")
        command = [
            prlimit,
            f"--nofile={OPEN_FILES_LIMIT}:{OPEN_FILES_LIMIT}",
            *twistd("-i", "127.0.0.1", "-p", "0", "--no-udp", "--metrics", "tcp:0", *layout),
        ]
        daemon = start_process(self, command, expect=("TCP",))
        return daemon, metrics_port_of(daemon)

    def assert_exhaustion_is_summarized(self, *layout: str) -> None:
        daemon, metrics = self.start(*layout)
        assert daemon.tcp_port
        with ExitStack() as clients:
            for _ in range(CLIENTS):
                client = socket.create_connection(("127.0.0.1", daemon.tcp_port), timeout=10)
                clients.enter_context(client)
            wait_for(lambda: FIRST_REFUSAL.search(daemon.output), timeout=10)
        wait_for(lambda: answered(daemon.tcp_port or 0), timeout=10)

        def refused() -> float:
            return metric_total(metrics, "caps_tcp_connections_refused_total", reason="open-files")

        def accounted() -> float:
            return refused() + metric_total(metrics, "caps_tcp_connections_accepted_total")

        # Workers report their counts once a second; the line with the
        # refusals held back comes within a second of the first.
        wait_for(lambda: accounted() >= CLIENTS, timeout=5)
        wait_for(lambda: logged_refusals(daemon.output) == refused() > 0, timeout=5)
        output = daemon.output
        self.assertNotIn(b"EMFILE", output)
        self.assertNotIn(b"Traceback", output)
        lines = [line for line in output.splitlines() if b"open-files" in line]
        self.assertLessEqual(len(lines), 5, lines)

    def test_descriptor_exhaustion_is_summarized(self) -> None:
        """One process: at most a line a second, every refusal counted and logged."""
        self.assert_exhaustion_is_summarized()

    def test_descriptor_exhaustion_is_summarized_with_workers(self) -> None:
        """Two workers, sharing the listening socket: the same, per worker."""
        self.assert_exhaustion_is_summarized("--workers", "2")
