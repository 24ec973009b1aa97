"""The installed plugin under twistd and twist, as separate processes."""

import os
import signal
import socket
import subprocess

from twisted.trial.unittest import TestCase

from tests.servers import (
    BIN,
    SERVING,
    course_tcp_client,
    course_udp_client,
    start_process,
    twistd,
    wait_for,
)

LOOPBACK = ("-i", "127.0.0.1", "-p", "0")


def run(command: list[str]) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(command, capture_output=True, timeout=60, stdin=subprocess.DEVNULL)


class ForegroundTests(TestCase):
    def test_twistd_lists_caps(self) -> None:
        done = run([os.path.join(BIN, "twistd"), "--help"])
        self.assertIn(b"caps ", done.stdout)

    def test_twistd_n_serves_tcp_and_udp(self) -> None:
        daemon = start_process(self, twistd(*LOOPBACK))
        assert daemon.tcp_port and daemon.udp_port
        self.assertEqual(course_tcp_client(daemon.tcp_port, b"hello world"), b"HELLO WORLD")
        self.assertEqual(course_udp_client(daemon.udp_port, b"hello world"), b"HELLO WORLD")
        # twistd ends a signalled process with the same signal, as a shell expects.
        self.assertEqual(daemon.stop(signal.SIGTERM), -signal.SIGTERM)

    def test_twist_serves(self) -> None:
        daemon = start_process(
            self, [os.path.join(BIN, "twist"), "--log-format", "text", "caps", *LOOPBACK]
        )
        assert daemon.tcp_port
        self.assertEqual(course_tcp_client(daemon.tcp_port, b"twist"), b"TWIST")

    def test_bad_option_is_one_line_and_status_1(self) -> None:
        for command in (twistd("--port", "x"), [os.path.join(BIN, "twist"), "caps", "--port", "x"]):
            done = run(command)
            self.assertEqual(done.returncode, 1)
            self.assertEqual(
                done.stderr.strip().splitlines(),
                [b"caps: --port: 'x' is not a port number (0-65535) (see --help)"],
            )


class PortInUseTests(TestCase):
    def setUp(self) -> None:
        taken = socket.socket()
        self.addCleanup(taken.close)
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        self.port = str(taken.getsockname()[1])

    def assertNamesThePort(self, text: bytes) -> None:
        self.assertIn(f"127.0.0.1:{self.port}".encode(), text)
        self.assertIn(b"Address already in use", text)
        self.assertNotIn(b"Traceback", text)

    def test_twistd_n_exits_with_one_line(self) -> None:
        done = run(twistd("-i", "127.0.0.1", "-p", self.port))
        self.assertEqual(done.returncode, 1)
        self.assertNamesThePort(done.stdout + done.stderr)

    def test_twist_exits_with_one_line(self) -> None:
        done = run([os.path.join(BIN, "twist"), "caps", "-i", "127.0.0.1", "-p", self.port])
        self.assertEqual(done.returncode, 1)
        self.assertNamesThePort(done.stderr)

    def test_daemon_parent_reports_and_exits(self) -> None:
        logfile = self.mktemp()
        done = run(
            [
                os.path.join(BIN, "twistd"),
                "--pidfile",
                self.mktemp(),
                "--logfile",
                logfile,
                "caps",
                "-i",
                "127.0.0.1",
                "-p",
                self.port,
            ]
        )
        self.assertEqual(done.returncode, 1)
        line = f"caps: TCP 127.0.0.1:{self.port}: Address already in use"
        self.assertEqual(done.stderr, line.encode() + b"\n")

        def logged() -> bytes:
            with open(logfile, "rb") as log:
                return log.read()

        # The daemon writes its line just after reporting to the parent.
        wait_for(lambda: b"Address already in use" in logged())
        self.assertNamesThePort(logged())


class DaemonTests(TestCase):
    def test_daemon_with_pidfile_and_logfile_stops_on_sigterm(self) -> None:
        pidfile, logfile = os.path.abspath(self.mktemp()), os.path.abspath(self.mktemp())
        done = run(
            [
                os.path.join(BIN, "twistd"),
                "--pidfile",
                pidfile,
                "--logfile",
                logfile,
                "caps",
                *LOOPBACK,
            ]
        )
        self.assertEqual(done.returncode, 0, done.stderr)
        wait_for(lambda: os.path.exists(pidfile))
        with open(pidfile) as f:
            pid = int(f.read())
        self.addCleanup(_kill_quietly, pid)

        def logged_ports() -> dict[str, int]:
            with open(logfile, "rb") as log:
                return {m.group(1).decode(): int(m.group(4)) for m in SERVING.finditer(log.read())}

        wait_for(lambda: len(logged_ports()) == 2)
        ports = logged_ports()
        self.assertEqual(course_tcp_client(ports["TCP"], b"daemon"), b"DAEMON")
        self.assertEqual(course_udp_client(ports["UDP"], b"daemon"), b"DAEMON")
        os.kill(pid, signal.SIGTERM)
        wait_for(lambda: not os.path.exists(pidfile))
        wait_for(lambda: not _alive(pid))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _kill_quietly(pid: int) -> None:
    if _alive(pid):
        os.kill(pid, signal.SIGKILL)
