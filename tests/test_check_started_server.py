"""
caps-check --run: the checker starts the server itself, reports a crash on
the check that caused it and starts the server again, says once why a
server did not start, and always stops every process the server started.
"""

import contextlib
import json
import os
import select
import signal
import socket
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from tests.servers import BIN, caps_check, detail, failed, ready_within, wait_for
from twisted_caps.check import CHECK_IDS

STUDENT_SERVERS = Path(__file__).resolve().parent / "student_servers"
#: A single-process select() server with strict decode(): it dies of bytes that are not UTF-8.
SELECT_SERVER = str(
    Path(__file__).resolve().parent.parent / "examples" / "grading" / "select_server.py"
)
#: The checks a strict decode() kills the single-process select() server on.
KILLERS = {"invalid-utf8", "udp-invalid-utf8", "split-multibyte"}


def processes_with(marker: str) -> list[int]:
    """The processes whose command line holds C{marker}."""
    found = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/cmdline", "rb") as cmdline:
                    if marker.encode() in cmdline.read():
                        found.append(int(name))
            except OSError:
                continue
    return found


def run_checked(
    case: SynchronousTestCase, server: str, *argv: str
) -> tuple[Any, dict[str, Any], str]:
    """
    caps-check --run a student server of C{tests/student_servers/} (or a
    path), with a marker in its command line; assert that no process of it
    is left. Return caps-check's run, its --json document and the marker.
    """
    program = server if os.sep in server else str(STUDENT_SERVERS / f"{server}.py")
    marker = f"caps-check-test-{uuid.uuid4().hex}"
    report = os.path.abspath(case.mktemp())
    command = f"{sys.executable} {program} {{port}} {marker}"
    done = caps_check("--run", command, "--json", report, *argv)
    case.assertNotIn("Traceback", done.stderr)
    case.assertEqual(processes_with(marker), [], "a process of the server was left running")
    with open(report, encoding="utf-8") as document:
        return done, json.load(document), marker


def verdicts(document: dict[str, Any]) -> dict[str, str]:
    """Each check's verdict in a --json document."""
    return {check["id"]: check["verdict"] for check in document["checks"]}


class CrashTests(SynchronousTestCase):
    def test_a_crash_is_reported_on_the_check_that_caused_it_and_costs_no_other(self) -> None:
        """
        The single-process select() server with strict decode() dies on each
        check that sends bytes that are not UTF-8: each of those is
        C{crashed}, with the exception's last line, and every other check,
        run against the server started again, passes but udp-large
        (recvfrom(2048)). No process of the server is left.
        """
        done, document, _ = run_checked(self, SELECT_SERVER, "--profile", "full")
        self.assertEqual(done.returncode, 1)
        self.assertEqual(failed(document), {*KILLERS, "udp-large"}, done.stdout)
        for check_id in KILLERS:
            self.assertEqual(verdicts(document)[check_id], "crashed")
            self.assertIn(
                "; the server exited with status 1 during this check, its output ending with: "
                "UnicodeDecodeError: 'utf-8' codec can't decode byte",
                detail(document, check_id),
            )
            self.assertIn("it was started again for the next check", detail(document, check_id))
        crash = next(check for check in document["checks"] if check["id"] == "split-multibyte")
        self.assertIn("Traceback (most recent call last):", crash["server_output"])
        self.assertTrue(crash["server_output"].endswith("unexpected end of data"))
        self.assertEqual(verdicts(document)["tcp-survives-reset"], "passed")
        self.assertIn("split-multibyte      FAIL ", done.stdout)

    def test_no_verdict_depends_on_the_order_checks_run_in(self) -> None:
        """
        Each check of the full profile run alone (--check ID) against the
        crashing server gets the verdict it gets in the whole profile.
        """
        _, whole, _ = run_checked(self, SELECT_SERVER, "--profile", "full")
        for check_id in CHECK_IDS:
            done, alone, _ = run_checked(
                self, SELECT_SERVER, "--profile", "full", "--check", check_id
            )
            self.assertEqual([check["id"] for check in alone["checks"]], [check_id])
            self.assertEqual(
                verdicts(alone)[check_id], verdicts(whole)[check_id], (check_id, done.stdout)
            )

    def test_a_server_killed_by_a_reset_is_reported_with_its_exception(self) -> None:
        """The lecture's server dies of a reset: tcp-survives-reset names ConnectionResetError."""
        done, document, _ = run_checked(self, "lecture_with_udp", "--timeout", "2")
        self.assertEqual(failed(document), {"tcp-concurrent", "tcp-survives-reset"}, done.stdout)
        self.assertEqual(verdicts(document)["tcp-survives-reset"], "crashed")
        self.assertIn(
            "its output ending with: ConnectionResetError: [Errno 104] Connection reset by peer",
            detail(document, "tcp-survives-reset"),
        )

    def test_a_thread_that_dies_with_its_socket_is_a_crash_too(self) -> None:
        """
        The UDP thread dies of a datagram that is not UTF-8 and its socket
        closes, while the process serves TCP on: once udp-reply reached
        the server over UDP, that check is crashed, saying the server
        stopped listening on UDP, with the thread's exception.
        """
        done, document, _ = run_checked(
            self,
            "udp_thread_dies",
            *("--profile", "full", "--timeout", "2"),
            *("--check", "udp-invalid-utf8", "--check", "udp-reply"),
        )
        self.assertEqual(verdicts(document)["udp-invalid-utf8"], "crashed", done.stdout)
        self.assertRegex(
            detail(document, "udp-invalid-utf8"),
            r"; the server stopped listening on UDP port \d+ during this check, its output "
            r"ending with: UnicodeDecodeError: ",
        )


class StartTests(SynchronousTestCase):
    def test_a_syntax_error_is_said_once(self) -> None:
        """
        A server with a syntax error: one line says it exited before it
        listened and quotes the SyntaxError, then the summary; no check is
        graded; Gradescope's output carries the line and the server's output.
        """
        program = Path(self.mktemp()).resolve()
        program.write_text("import sys\nport = int(sys.argv[1]\nprint(port)\n")
        results = os.path.abspath(self.mktemp())
        done, document, _ = run_checked(self, str(program), "--gradescope", results)
        lines = done.stdout.splitlines()
        self.assertEqual(len(lines), 2, done.stdout)
        self.assertRegex(
            lines[0],
            r"^the server did not start: it exited with status 1 before it listened on port "
            r"\d+; its output ends with: SyntaxError: '\(' was never closed$",
        )
        self.assertEqual(lines[1], "0 passed, 0 failed, 6 not graded")
        self.assertEqual(done.returncode, 1)
        self.assertEqual(document["start_failure"], lines[0])
        self.assertEqual(set(verdicts(document).values()), {"not graded"})
        with open(results, encoding="utf-8") as gradescope:
            output = json.load(gradescope)["output"]
        self.assertIn(lines[0], output)
        self.assertIn("The server's output ended with:\n", output)
        self.assertIn("port = int(sys.argv[1]", output)

    def test_a_server_on_a_port_of_its_own_is_told_to_take_it_from_the_command_line(
        self,
    ) -> None:
        """
        A server that ignores the port it is given (the textbook's
        hard-coded 12000): the one line names the port it listens on
        instead, and says to take the port from the command line.
        """
        done, document, _ = run_checked(
            self, "ignores_port_argument", "--tcp-only", "--startup-timeout", "2"
        )
        self.assertRegex(
            document["start_failure"],
            r"^the server did not start: it did not listen on port \d+ within 2 s; it listens "
            r"on TCP port \d+ instead: take the port from the command line, where caps-check "
            r"gives it \(.* \{port\} .*\); its output ends with: The server is ready to receive$",
        )
        self.assertEqual(done.stdout.splitlines()[-1], "0 passed, 0 failed, 4 not graded")

    def test_a_program_that_is_not_there(self) -> None:
        """A command that cannot run is said in words, once."""
        done = caps_check("--run", "/no/such/server {port}", "--startup-timeout", "1")
        self.assertEqual(
            done.stdout.splitlines()[0],
            "the server did not start: cannot run '/no/such/server': no such file or directory",
        )
        self.assertEqual((done.stderr, done.returncode), ("", 1))

    def test_a_port_served_already_is_a_usage_error(self) -> None:
        """--run with --port on a port another program serves: one line, status 2."""
        taken = socket.socket()
        self.addCleanup(taken.close)
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = caps_check("--run", "python3 server.py", "--port", str(port))
        self.assertEqual(done.returncode, 2)
        self.assertEqual(
            done.stderr,
            f"caps-check: --port: port {port} is served already: "
            "the grade would be another server's\n",
        )


def kill_all(marker: str) -> None:
    """Kill what a failed test left running with C{marker} in its command line."""
    for pid in processes_with(marker):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def stop_checker(checker: "subprocess.Popen[str]") -> None:
    """Kill caps-check if a failed test left it running."""
    if checker.poll() is None:
        checker.kill()
        checker.wait(10)


class SignalTests(SynchronousTestCase):
    def test_a_signal_to_caps_check_stops_the_server_it_started(self) -> None:
        """
        caps-check stopped by SIGTERM while it grades a server that ignores
        SIGTERM: the server's whole session is killed, none is started
        again, caps-check says so in one line and exits 1.
        """
        marker = f"caps-check-test-{uuid.uuid4().hex}"
        program = STUDENT_SERVERS / "ignores_sigterm.py"
        checker = subprocess.Popen(
            [
                os.path.join(BIN, "caps-check"),
                *("--run", f"{sys.executable} {program} {{port}} {marker}"),
                *("--profile", "full", "--tcp-only"),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.addCleanup(kill_all, marker)
        self.addCleanup(stop_checker, checker)
        assert checker.stdout is not None
        # Once the first check is printed, the reactor runs and the server serves.
        self.assertTrue(ready_within(checker.stdout.fileno(), select.POLLIN, 60))
        self.assertTrue(checker.stdout.readline().startswith("tcp-reply"))
        self.assertEqual(len(processes_with(marker)), 2)  # caps-check and the server
        checker.send_signal(signal.SIGTERM)
        _, errors = checker.communicate(timeout=60)
        self.assertEqual(
            (errors, checker.returncode),
            (
                "caps-check: stopped by a signal before the checks ended; "
                "the server it started was stopped\n",
                1,
            ),
        )
        wait_for(lambda: processes_with(marker) == [], timeout=10)
