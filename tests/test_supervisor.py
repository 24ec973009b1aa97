"""
Tests for L{twisted_caps.operating.supervisor}: C{--workers N} as separate
processes, supervised by the twistd process.
"""

import os
import re
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor

from twisted.trial.unittest import SynchronousTestCase, TestCase

from tests.servers import (
    HOST,
    WORKERS,
    assert_one_line_usage_error,
    course_tcp_client,
    course_udp_client,
    exited,
    kill_at_cleanup,
    metrics_port_of,
    read_to_end,
    running_workers,
    scrape,
    start_process,
    start_unix_workers,
    start_workers,
    traced,
    traced_child,
    twistd,
    unix_exchange,
    wait_for,
)
from twisted_caps.operating.supervisor import WorkersService
from twisted_caps.operating.tap import Options, makeService

CLOSED = re.compile(rb"caps worker (\d+): caps: \S+ closed after")
#: An C{accept4} call's outcome in C{strace -f} output: the pid, and the
#: descriptor accepted or C{EAGAIN} (a call left unfinished is matched where
#: it resumes).
ACCEPT_RESULT = re.compile(rb"^(\d+) .*accept4.*\) += (?:-1 )?(EAGAIN|\d+)", re.MULTILINE)


def exchange_concurrently(port: int, count: int) -> None:
    """Open C{count} connections at once, then each sends a line and closes."""
    clients = [socket.create_connection((HOST, port), timeout=10) for _ in range(count)]
    try:
        for client in clients:
            client.sendall(b"spread\n")
        for client in clients:
            assert client.recv(1024) == b"SPREAD\n"
    finally:
        for client in clients:
            client.close()


class WorkerStatusTests(SynchronousTestCase):
    def test_sigusr2_names_every_worker(self) -> None:
        """The parent's status line says how many workers serve, and which."""
        daemon, workers = start_workers(self)
        os.kill(daemon.process.pid, signal.SIGUSR2)
        pids = " ".join(str(pid) for _, pid in sorted(workers.items()))
        expected = f"caps: status: pid {daemon.process.pid}, 2 workers (pids {pids}), 0 retiring"
        wait_for(lambda: expected.encode() in daemon.output)


class WorkerMetricsTests(SynchronousTestCase):
    def test_one_scrape_sees_every_worker_labelled(self) -> None:
        daemon, _ = start_workers(self, "--metrics", "tcp:0:interface=127.0.0.1")
        metrics_port = metrics_port_of(daemon)
        assert daemon.tcp_port
        exchange_concurrently(daemon.tcp_port, 20)
        course_udp_client(daemon.udp_port or 0, b"dgram")

        def accepted_by_worker() -> dict[str, float]:
            samples = scrape(metrics_port)
            return {
                dict(labels)["worker"]: value
                for (name, labels), value in samples.items()
                if name == "caps_tcp_connections_accepted_total"
            }

        def answered() -> float:
            return sum(
                value
                for (name, labels), value in scrape(metrics_port).items()
                if name == "caps_udp_datagrams_total" and dict(labels)["result"] == "answered"
            )

        # Workers report their counters once a second, each on its own
        # schedule: the one that answered the datagram may not have
        # reported it yet when the other reports the connections.
        wait_for(lambda: sum(accepted_by_worker().values()) == 20 and answered() >= 1)
        self.assertEqual(set(accepted_by_worker()), {"0", "1"})
        self.assertEqual(answered(), 1)


class WorkerProcessTests(TestCase):
    def test_both_workers_answer_tcp_and_udp(self) -> None:
        daemon, workers = start_workers(self)
        assert daemon.tcp_port and daemon.udp_port
        self.assertEqual(course_udp_client(daemon.udp_port, b"hello udp"), b"HELLO UDP")
        self.assertEqual(course_tcp_client(daemon.tcp_port, b"hello tcp"), b"HELLO TCP")

        def both_answered() -> bool:
            exchange_concurrently(daemon.tcp_port or 0, 20)
            answered = {int(pid) for pid in CLOSED.findall(daemon.output)}
            return answered == set(workers.values())

        wait_for(both_answered)
        self.assertNotIn(os.getpid(), workers.values())
        self.assertNotIn(daemon.process.pid, workers.values())

    def test_killed_worker_is_restarted_and_service_continues(self) -> None:
        daemon, workers = start_workers(self)
        assert daemon.tcp_port and daemon.udp_port
        os.kill(workers[0], signal.SIGKILL)
        wait_for(lambda: running_workers(daemon)[0] != workers[0])
        restarted = running_workers(daemon)[0]
        kill_at_cleanup(self, [restarted])
        wait_for(lambda: f"caps worker {restarted}: caps: serving".encode() in daemon.output)
        self.assertIn(b"caps: worker 0 (pid %d) exited" % workers[0], daemon.output)
        self.assertEqual(running_workers(daemon)[1], workers[1])
        for _ in range(10):
            self.assertEqual(course_tcp_client(daemon.tcp_port, b"again"), b"AGAIN")
        self.assertEqual(course_udp_client(daemon.udp_port, b"again"), b"AGAIN")

    def test_sigterm_stops_every_worker_then_the_parent(self) -> None:
        daemon, workers = start_workers(self)
        assert daemon.tcp_port
        held = socket.create_connection((HOST, daemon.tcp_port), timeout=10)
        self.addCleanup(held.close)
        held.sendall(b"held\n")
        self.assertEqual(held.recv(1024), b"HELD\n")
        self.assertEqual(daemon.stop(signal.SIGTERM), -signal.SIGTERM)
        for pid in workers.values():
            self.assertTrue(exited(pid), pid)
        output = daemon.output
        self.assertNotIn(b"Traceback", output)
        self.assertNotIn(b"restarting", output)
        self.assertRegex(output, rb"caps worker \d+: caps: \S+ closed after .*: shutdown")
        self.assertEqual(held.recv(1024), b"")

    def test_workers_exit_when_the_parent_is_killed(self) -> None:
        daemon, workers = start_workers(self)
        daemon.stop(signal.SIGKILL)
        wait_for(lambda: all(exited(pid) for pid in workers.values()))


class InheritedFamilyTests(SynchronousTestCase):
    def test_workers_serve_an_ipv6_socket_as_ipv6(self) -> None:
        """
        The parent hands its sockets over with the family the kernel reports:
        workers name an IPv6 listener and its clients as IPv6, never as
        scrambled IPv4.
        """
        command = twistd("--workers", "2", "--tcp", "tcp6:0:interface=\\:\\:1", "--no-udp")
        daemon = start_process(self, command, expect=("TCP",))
        wait_for(lambda: daemon.output.count(b": caps: ready") == 2)
        kill_at_cleanup(self, list(running_workers(daemon).values()))
        with socket.create_connection(("::1", daemon.tcp_port or 0), timeout=10) as client:
            client.sendall(b"six\n")
            self.assertEqual(client.recv(1024), b"SIX\n")
        wait_for(lambda: re.search(rb"caps worker \d+: caps: ::1 closed after", daemon.output))
        serving = re.findall(rb"caps worker \d+: caps: serving TCP on (\S+)", daemon.output)
        self.assertEqual(serving, [f"[::1]:{daemon.tcp_port}".encode()] * 2)


class UnixListenerTests(SynchronousTestCase):
    """A C{unix:} listener shared by workers: its file is the parent's, from start to end."""

    #: Start and stop cycles, run in this many lanes at once, each with its own socket.
    CYCLES = 20
    LANES = 2

    def socket_path(self) -> str:
        """A path in a fresh folder under /tmp: C{sockaddr_un} holds 107 bytes."""
        folder = tempfile.mkdtemp(prefix="caps-unix-")
        self.addCleanup(shutil.rmtree, folder, ignore_errors=True)
        return os.path.join(folder, "caps.sock")

    def start_and_stop(self, path: str, cycles: int) -> None:
        """Start, exchange once, SIGTERM, and find the folder empty, C{cycles} times."""
        for cycle in range(cycles):
            daemon = start_unix_workers(self, path)
            self.assertEqual(unix_exchange(path, b"cycle %d" % cycle), b"CYCLE %d" % cycle)
            self.assertEqual(daemon.stop(signal.SIGTERM), -signal.SIGTERM, daemon.output)
            left = sorted(os.listdir(os.path.dirname(path)))
            self.assertEqual(left, [], f"cycle {cycle}: {daemon.output.decode(errors='replace')}")
            self.assertNotIn(b"Traceback", daemon.output)

    def test_start_and_stop_cycles_leave_no_socket_file_or_lock(self) -> None:
        """
        SIGTERM stops the parent and both workers; only the parent removes
        the socket file and its C{.lock}, so no stop leaves either behind
        (a worker removing the file made the parent's removal fail before
        it released the lock, and the next start was refused). Two lanes
        at once keep 20 cycles within half a minute on a busy machine;
        every wait in a cycle is bounded.
        """
        paths = [self.socket_path() for _ in range(self.LANES)]
        # trial makes the test's folder at its first mktemp: here, not in two lanes at once.
        self.mktemp()
        with ThreadPoolExecutor(self.LANES) as lanes:
            cycles = self.CYCLES // self.LANES
            for done in [lanes.submit(self.start_and_stop, path, cycles) for path in paths]:
                done.result()

    def test_workers_keep_the_mode_the_listener_asked_for(self) -> None:
        """C{mode=600} stays 600 once workers adopt the socket (Twisted would set 666)."""
        path = self.socket_path()
        daemon = start_unix_workers(self, f"{path}:mode=600")
        self.assertEqual(stat.S_IMODE(os.stat(path).st_mode), 0o600)
        self.assertEqual(unix_exchange(path, b"private"), b"PRIVATE")
        daemon.stop()


class WorkersOptionsTests(SynchronousTestCase):
    def assertUsageError(self, argv: list[str], *fragments: str) -> None:
        assert_one_line_usage_error(self, argv, "caps: --workers", *fragments)

    def test_one_worker_serves_in_this_process(self) -> None:
        options = Options()
        options.parseOptions([])
        self.assertEqual(options.config.workers, 1)
        self.assertNotIsInstance(makeService(options).serving, WorkersService)

    def test_several_workers_are_supervised(self) -> None:
        options = Options()
        options.parseOptions(["--workers", "3", "--tcp", "unix:caps.sock"])
        self.assertEqual(options.config.workers, 3)
        self.assertIsInstance(makeService(options).serving, WorkersService)

    def test_workers_must_be_a_count_of_one_to_256(self) -> None:
        for text in ("0", "abc", "-1", "", "257"):
            self.assertUsageError(["--workers", text], repr(text), "(1-256)")

    def test_endpoints_workers_cannot_share_are_refused(self) -> None:
        for description in (
            "ssl:0:privateKey=k.pem",
            "haproxy:tcp:0",
            "systemd:domain=INET:index=0",
        ):
            self.assertUsageError(["--workers", "2", "--tcp", description], description)

    def test_twistd_reports_a_bad_workers_count_in_one_line(self) -> None:
        done = subprocess.run(
            twistd("--workers", "0"), capture_output=True, timeout=60, stdin=subprocess.DEVNULL
        )
        self.assertEqual(done.returncode, 1)
        self.assertEqual(
            done.stderr.strip().splitlines(),
            [b"caps: --workers: '0' is not a number of processes (1-256) (see --help)"],
        )


class SharedSocketWakeupTests(SynchronousTestCase):
    """How the workers share one listening socket: one wakes per connection, none loses one."""

    def test_a_connection_wakes_one_worker_not_every_worker(self) -> None:
        """
        Each connection wakes about one waiting worker. A woken worker
        accepts until C{accept} finds nothing more (C{EAGAIN}); a worker
        woken for a connection another took finds nothing at once, so its
        C{EAGAIN} comes right after the one that ended its last wake-up.
        Those empty wake-ups stay under one in ten connections, where every
        waiting worker used to wake for every connection.
        """
        trace = os.path.abspath(self.mktemp())
        command = traced(twistd(*WORKERS, "--no-udp"), "accept4", trace)
        daemon = start_process(self, command, expect=("TCP",))
        traced_child(self, daemon)
        wait_for(lambda: daemon.output.count(b"caps: serving TCP") == 3)
        assert daemon.tcp_port
        with open(trace, "rb") as calls:
            before = len(calls.readlines())
        count = 50
        for number in range(1, count + 1):
            self.assertEqual(course_tcp_client(daemon.tcp_port, b"wake"), b"WAKE")
            # The next client comes when the workers wait again, as when idle.
            wait_for(lambda: len(CLOSED.findall(daemon.output)) == number)  # noqa: B023
        with open(trace, "rb") as calls:
            results = ACCEPT_RESULT.findall(b"".join(calls.readlines()[before:]))
        accepted = [pid for pid, outcome in results if outcome != b"EAGAIN"]
        empty_wakeups = []
        last_outcome: dict[bytes, bytes] = {}
        for pid, outcome in results:
            if outcome == b"EAGAIN" and last_outcome.get(pid, b"EAGAIN") == b"EAGAIN":
                empty_wakeups.append(pid)
            last_outcome[pid] = outcome
        self.assertEqual(len(accepted), count)
        self.assertLessEqual(len(empty_wakeups), count // 10, results)

    def test_connections_queued_when_a_worker_dies_are_all_answered(self) -> None:
        """
        Connections the kernel queued while no worker accepted are answered
        by the surviving worker when one is killed: none is reset, none is lost.
        """
        daemon, workers = start_workers(self)
        assert daemon.tcp_port
        for pid in workers.values():
            os.kill(pid, signal.SIGSTOP)
        try:
            clients = [socket.create_connection((HOST, daemon.tcp_port), timeout=10)
                       for _ in range(20)]  # fmt: skip
            for number, client in enumerate(clients):
                self.addCleanup(client.close)
                client.sendall(b"queued %d" % number)
                client.shutdown(socket.SHUT_WR)
            os.kill(workers[0], signal.SIGKILL)
        finally:
            os.kill(workers[1], signal.SIGCONT)
        for number, client in enumerate(clients):
            self.assertEqual(read_to_end(client), b"QUEUED %d" % number)
