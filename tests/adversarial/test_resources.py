"""
Attacks on the installed daemon's resources: more clients at once than it
has file descriptors for, or than --max-connections admits across workers.
"""

import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from contextlib import ExitStack

from twisted.trial.unittest import SynchronousTestCase

from tests.servers import (
    WORKERS,
    Daemon,
    logged_ports,
    metric_total,
    metrics_port_of,
    require_program,
    start_process,
    start_workers,
    twistd,
    wait_for,
)

#: The hard (and so soft) open-files limit the daemon runs under.
OPEN_FILES_LIMIT = 64
CLIENTS = 300
FIRST_REFUSAL = re.compile(rb"caps: refused a connection from \S+: open-files reached")
MORE_REFUSALS = re.compile(rb"caps: refused (\d+) more connections in \S+, the last from")


def answered(connect: Callable[[], socket.socket]) -> bool:
    """Whether a new client gets its reply (False if it is refused or cut)."""
    try:
        with connect() as client:
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

    def start(self, *argv: str) -> tuple[Daemon, int]:
        """Start the daemon with C{argv} under the limit; return it and its metrics port."""
        prlimit = require_program("prlimit")
        command = [
            prlimit,
            f"--nofile={OPEN_FILES_LIMIT}:{OPEN_FILES_LIMIT}",
            *twistd("--no-udp", "--metrics", "tcp:0:interface=127.0.0.1", *argv),
        ]
        daemon = start_process(self, command, expect=())
        wait_for(lambda: b"caps: serving TCP on" in daemon.output)
        return daemon, metrics_port_of(daemon)

    def assert_exhaustion_is_summarized(
        self, daemon: Daemon, metrics: int, connect: Callable[[], socket.socket]
    ) -> None:
        """Connect 300 clients at once with C{connect}, then check the promise."""
        with ExitStack() as clients:
            for _ in range(CLIENTS):
                clients.enter_context(connect())
            wait_for(lambda: FIRST_REFUSAL.search(daemon.output), timeout=10)
        wait_for(lambda: answered(connect), timeout=10)

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

    def assert_tcp_exhaustion_is_summarized(self, *layout: str) -> None:
        daemon, metrics = self.start("-i", "127.0.0.1", "-p", "0", *layout)
        port = logged_ports(daemon.output)["TCP"]
        self.assert_exhaustion_is_summarized(
            daemon, metrics, lambda: socket.create_connection(("127.0.0.1", port), timeout=10)
        )

    def test_descriptor_exhaustion_is_summarized(self) -> None:
        """One process: at most a line a second, every refusal counted and logged."""
        self.assert_tcp_exhaustion_is_summarized()

    def test_descriptor_exhaustion_is_summarized_with_workers(self) -> None:
        """Two workers, sharing the listening socket: the same, per worker."""
        self.assert_tcp_exhaustion_is_summarized("--workers", "2")

    def test_descriptor_exhaustion_on_a_unix_socket_is_summarized(self) -> None:
        """A UNIX listener runs out the same way, and is summarized the same way."""
        # A short directory: a UNIX socket's path is limited to 107 bytes.
        directory = tempfile.mkdtemp(prefix="caps-")
        self.addCleanup(shutil.rmtree, directory)
        path = os.path.join(directory, "caps.sock")

        def connect() -> socket.socket:
            client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            client.settimeout(10)
            client.connect(path)
            return client

        daemon, metrics = self.start("--tcp", f"unix:{path}:backlog=1024")
        self.assert_exhaustion_is_summarized(daemon, metrics, connect)


class SharedConnectionLimitTests(SynchronousTestCase):
    """--max-connections counts the whole service, whatever --workers is."""

    def test_workers_never_hold_more_than_max_connections_in_all(self) -> None:
        """
        With --workers 2 and --max-connections 3, eight clients at once get
        at most three replies in all (each worker's share is rounded down);
        a limit below the number of workers, which cannot be shared out
        without a worker having no limit or more than its share, is one
        usage line and exit status 1.
        """
        refused = subprocess.run(
            twistd(*WORKERS, "--no-udp", "--max-connections", "1"),
            capture_output=True,
            timeout=30,
            stdin=subprocess.DEVNULL,
        )
        self.assertEqual(refused.returncode, 1, refused.stderr)
        self.assertEqual(
            refused.stderr.splitlines(),
            [
                b"caps: --max-connections 1 is fewer than --workers 2 (each worker serves"
                b" a share of at least one connection) (see --help)"
            ],
        )
        daemon, _ = start_workers(self, "--max-connections", "3")
        assert daemon.tcp_port is not None
        with ExitStack() as clients:
            connected = []
            for _ in range(8):
                client = clients.enter_context(
                    socket.create_connection(("127.0.0.1", daemon.tcp_port), timeout=5)
                )
                connected.append(client)
                time.sleep(0.05)  # let each worker take its turn at the queue
            replies = 0
            for client in connected:
                try:
                    client.sendall(b"x")
                    replies += client.recv(1) == b"X"
                except OSError:
                    pass
        self.assertGreaterEqual(replies, 1)
        self.assertLessEqual(replies, 3)
