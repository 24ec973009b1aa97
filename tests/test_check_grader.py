"""
grade_server, the autograder helper: it starts a student's server, grades
it through real sockets, and stops it every time, whatever the server does.
"""

import socket
import sys
import time
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from twisted_caps.check import grade_server
from twisted_caps.check.started_server import STOP_TIMEOUT, free_port

PROJECT = Path(__file__).resolve().parent.parent
LECTURE_SERVER = str(PROJECT / "examples" / "grading" / "lecture_server.py")
STUDENT_SERVERS = Path(__file__).resolve().parent / "student_servers"


def refused(port: int) -> bool:
    """Whether a TCP connection to loopback C{port} is refused (nobody listens)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5):
            return False
    except ConnectionRefusedError:
        return True


class GradeServerTests(SynchronousTestCase):
    def test_grades_and_stops_the_lecture_server(self) -> None:
        """
        The report asserts by id, carries the server's output, and the
        server is stopped when grade_server returns.
        """
        report = grade_server(
            [sys.executable, LECTURE_SERVER, "{port}"], transports=("tcp",), timeout=2
        )
        self.assertTrue(report.passed("tcp-reply"))
        self.assertFalse(report.passed("tcp-concurrent"))
        self.assertIn("The server is ready to receive", report.server_output)
        self.assertTrue(report.server.startswith("127.0.0.1:"))
        server_port = int(report.server.rsplit(":", 1)[1])
        self.assertTrue(refused(server_port))

    def test_a_server_that_ignores_sigterm_is_killed(self) -> None:
        """A server deaf to SIGTERM is killed after the grace period; the port is free again."""
        port = free_port()
        started = time.monotonic()
        report = grade_server(
            [sys.executable, str(STUDENT_SERVERS / "ignores_sigterm.py"), str(port)],
            transports=("tcp",),
            timeout=2,
            port=port,
        )
        self.assertTrue(report.passed("tcp-concurrent"), report.text())
        self.assertTrue(refused(port))
        self.assertGreaterEqual(time.monotonic() - started, STOP_TIMEOUT)

    def test_a_server_that_does_not_start_grades_nothing_and_says_why(self) -> None:
        """
        A crash at start: no check is graded, the report says once why (the
        exception's last line), and keeps the server's traceback.
        """
        report = grade_server(
            [sys.executable, str(STUDENT_SERVERS / "crashes_at_start.py"), "{port}"],
            startup_timeout=5,
        )
        self.assertEqual(report.passed_ids, ())
        self.assertEqual(len(report.not_graded_ids), 6)
        self.assertEqual(report["tcp-reply"].detail, "not graded: the server did not start")
        self.assertRegex(
            report.start_failure,
            r"^the server did not start: it exited with status 1 before it listened on port "
            r"\d+; its output ends with: NameError: name 'serverSocket' is not defined$",
        )
        self.assertIn("Traceback", report.server_output)

    def test_a_port_served_already_is_refused(self) -> None:
        """A port another program serves is refused before the student's server starts."""
        taken = socket.socket()
        self.addCleanup(taken.close)
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with self.assertRaises(RuntimeError) as raised:
            grade_server([sys.executable, LECTURE_SERVER, str(port)], port=port)
        self.assertIn(f"port {port} is served already", str(raised.exception))

    def test_a_command_without_a_port_is_refused(self) -> None:
        with self.assertRaises(ValueError):
            grade_server([sys.executable, LECTURE_SERVER])
