"""
caps-check through real sockets: the installed command against the
installed daemon, the lecture's servers, and a server that is not there;
and the library in trial's reactor.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

from twisted.internet import reactor
from twisted.trial.unittest import SynchronousTestCase, TestCase

from tests.servers import (
    BIN,
    CHECKED_HOST,
    caps_check,
    checked,
    detail,
    failed,
    port_of,
    start_in_reactor,
    start_process,
    start_student_server,
    twistd,
)
from twisted_caps import __version__
from twisted_caps.check import CHECK_IDS, run_checks, select_checks
from twisted_caps.check.started_server import free_port

HOST = CHECKED_HOST

GRADING = Path(__file__).resolve().parent.parent / "examples" / "grading"
LECTURE_SERVER = str(GRADING / "lecture_server.py")
THREADED_SERVER = str(GRADING / "threaded_server.py")
LECTURE_IDS = [check.id for check in select_checks("lecture", ("tcp", "udp"))]
#: Checks that need more than one chunk on a connection, which --once answers.
MORE_THAN_ONE_CHUNK = {"split-multibyte", "stream", "half-close"}
#: Checks that need more than ASCII, which bytes.upper() does not do.
MORE_THAN_ASCII = {"unicode", "udp-unicode", "split-multibyte"}


class TwistedCapsTests(SynchronousTestCase):
    """The reference server, run as twistd runs it, passes its own checker."""

    def start(self, *argv: str) -> tuple[int, int]:
        daemon = start_process(self, twistd("-i", HOST, "-p", "0", *argv))
        assert daemon.tcp_port and daemon.udp_port
        return daemon.tcp_port, daemon.udp_port

    def test_passes_both_profiles(self) -> None:
        """twisted-caps passes every check of both profiles, and caps-check exits 0."""
        tcp, udp = self.start()
        for profile in ("lecture", "full"):
            for port, only in ((tcp, "--tcp-only"), (udp, "--udp-only")):
                done, document = checked(self, port, "--profile", profile, only)
                self.assertEqual(failed(document), set(), done.stdout)
                self.assertEqual(done.returncode, 0)

    def test_once_fails_exactly_the_checks_needing_more_than_one_chunk(self) -> None:
        """
        C{twistd caps --once} (the course's server) passes the lecture
        profile, and in the full profile fails exactly the checks that need
        more than one chunk per connection.
        """
        tcp, _ = self.start("--once")
        done, document = checked(self, tcp, "--tcp-only")
        self.assertEqual((failed(document), done.returncode), (set(), 0), done.stdout)
        done, document = checked(self, tcp, "--tcp-only", "--profile", "full", "--timeout", "2")
        self.assertEqual(failed(document), MORE_THAN_ONE_CHUNK, done.stdout)
        self.assertEqual(done.returncode, 1)
        self.assertIn("the server closed the connection", detail(document, "half-close"))


class StudentServerTests(SynchronousTestCase):
    """The lecture's servers, as students run them, get the right verdicts."""

    def test_lecture_server_is_iterative(self) -> None:
        """
        The lecture's iterative server passes tcp-reply and tcp-sentences and
        fails tcp-concurrent, with a detail that says to serve each client
        in its own thread or process.
        """
        port = start_student_server(self, LECTURE_SERVER, ("tcp",))
        done, document = checked(self, port, "--tcp-only", "--timeout", "2")
        self.assertEqual(done.returncode, 1)
        self.assertNotIn("tcp-reply", failed(document))
        self.assertNotIn("tcp-sentences", failed(document))
        self.assertIn("tcp-concurrent", failed(document))
        self.assertIn("own thread or process", detail(document, "tcp-concurrent"))

    def test_lecture_server_dies_of_a_reset(self) -> None:
        """
        The lecture's server has no try/except around recv(): a client that
        resets its connection stops it, and tcp-survives-reset says so.
        """
        port = start_student_server(self, LECTURE_SERVER, ("tcp",))
        _, document = checked(self, port, "--tcp-only", "--timeout", "2")
        self.assertIn("tcp-survives-reset", failed(document))
        self.assertIn("after a client reset its connection", detail(document, "tcp-survives-reset"))
        self.assertIn("ConnectionResetError", detail(document, "tcp-survives-reset"))

    def test_threaded_server_passes_the_lecture_profile(self) -> None:
        """A thread per client and a UDP loop pass every check of the lecture profile."""
        port = start_student_server(self, THREADED_SERVER)
        done, document = checked(self, port, "--timeout", "2")
        self.assertEqual((failed(document), done.returncode), (set(), 0), done.stdout)

    def test_bytes_upper_fails_only_the_checks_needing_more_than_ascii(self) -> None:
        """
        A server that upper-cases with C{bytes.upper()} fails unicode and
        split-multibyte, and only those, and is told to decode as UTF-8.
        """
        port = start_student_server(self, THREADED_SERVER)
        done, document = checked(self, port, "--profile", "full", "--timeout", "2")
        self.assertEqual(failed(document), MORE_THAN_ASCII, done.stdout)
        self.assertIn("expected 'STRASSE FI ПРИВЕТ' (23 bytes)", detail(document, "unicode"))
        self.assertIn("first difference at byte 4", detail(document, "unicode"))
        self.assertIn("bytes.upper()", detail(document, "unicode"))


class CommandTests(SynchronousTestCase):
    """The command's contract: its lines, exit statuses and report files."""

    def test_server_not_running_fails_every_check_with_one_line(self) -> None:
        """
        Nothing listening: every check of both transports fails with one
        line, C{connection refused by H:P}, the summary counts them, exit 1,
        and nothing is written to standard error.
        """
        port = free_port()
        done = caps_check("--host", HOST, "--port", str(port), "--profile", "full")
        refused = f"connection refused by {HOST}:{port}"
        expected = [f"{check_id:<20} FAIL {refused}" for check_id in CHECK_IDS]
        expected.append(f"0 passed, {len(CHECK_IDS)} failed")
        self.assertEqual(done.stdout.splitlines(), expected)
        self.assertEqual((done.stderr, done.returncode), ("", 1))

    def test_usage_errors_are_one_line_and_status_2(self) -> None:
        """Every usage error is one line on standard error and exit status 2; no check runs."""
        for argv in (
            ["--port", "x"],
            ["--port", "70000"],
            ["--timeout", "0"],
            ["--timeout", "soon"],
            ["--profile", "exam"],
            ["--tcp-only", "--udp-only"],
            ["--weight", "tcp-reply"],
            ["--weight", "no-such-check=2"],
            ["--weight", "unicode=2"],
            ["--weight", "udp-reply=2", "--tcp-only"],
            ["--check", "no-such-check"],
            ["--check", "udp-large"],
            ["--run", ""],
            ["--run", "python3 'server.py {port}"],
            ["--run", "python3 server.py"],
            ["--startup-timeout", "0"],
            ["--weight", "tcp-reply=-1"],
            ["--weight", "tcp-reply=\u0661"],
            ["--weight", "tcp-reply=1e308"],
            ["--weight", "tcp-reply=nan"],
            ["--weight", "tcp-reply=" + "9" * 5000],
            ["--json", "/no/such/folder/report.json"],
            ["--gradescope", "."],
            ["--host", ""],
            ["--host", "a" * 300],
            ["--frobnicate"],
            ["extra"],
        ):
            done = caps_check(*argv)
            self.assertEqual(done.returncode, 2, argv)
            self.assertEqual(done.stdout, "", argv)
            self.assertEqual(len(done.stderr.splitlines()), 1, (argv, done.stderr))
            self.assertTrue(done.stderr.startswith("caps-check: "), done.stderr)

    def test_a_weight_for_a_check_the_run_does_not_make_is_refused(self) -> None:
        """--weight for a check of another profile says which checks this run makes."""
        done = caps_check("--weight", "unicode=2", "--port", "1")
        self.assertEqual(
            done.stderr,
            "caps-check: --weight: unicode is not among the checks this run makes (profile "
            f"lecture: {', '.join(LECTURE_IDS)}) (see --help)\n",
        )

    def test_json_report(self) -> None:
        """--json writes the server, the profile and each check's id, verdict and detail."""
        port = free_port()
        _, document = checked(self, port)
        self.assertEqual(
            set(document), {"server", "profile", "start_failure", "server_output", "checks"}
        )
        self.assertEqual((document["start_failure"], document["server_output"]), ("", ""))
        self.assertEqual(document["server"], f"{HOST}:{port}")
        self.assertEqual(document["profile"], "lecture")
        self.assertEqual([check["id"] for check in document["checks"]], LECTURE_IDS)
        for check in document["checks"]:
            self.assertEqual(set(check), {"id", "passed", "verdict", "detail", "server_output"})
            self.assertEqual((check["passed"], check["verdict"]), (False, "failed"))
            self.assertEqual(check["detail"], f"connection refused by {HOST}:{port}")

    def test_json_report_of_passes(self) -> None:
        """A passed check is C{"passed": true} with an empty detail."""
        daemon = start_process(self, twistd("-i", HOST, "-p", "0", "--no-udp"), expect=("TCP",))
        assert daemon.tcp_port
        done, document = checked(self, daemon.tcp_port, "--tcp-only")
        self.assertEqual(done.returncode, 0)
        for check in document["checks"]:
            self.assertEqual((check["passed"], check["detail"]), (True, ""))

    def test_gradescope_results_with_weights(self) -> None:
        """
        --gradescope writes Gradescope's results.json: a test per check with
        name, score, max_score, status and output; --weight sets the points.
        """
        port = free_port()
        path = os.path.abspath(self.mktemp())
        done = caps_check("--port", str(port), "--gradescope", path, "--weight", "tcp-concurrent=3")
        self.assertEqual(done.returncode, 1)
        with open(path, encoding="utf-8") as document:
            results = json.load(document)
        self.assertEqual([test["name"] for test in results["tests"]], LECTURE_IDS)
        for test in results["tests"]:
            self.assertEqual(set(test), {"name", "score", "max_score", "status", "output"})
            worth = 3.0 if test["name"] == "tcp-concurrent" else 1.0
            self.assertEqual(
                (test["score"], test["max_score"], test["status"]), (0.0, worth, "failed")
            )
            self.assertEqual(test["output"], f"connection refused by localhost:{port}")
        self.assertEqual(results["score"], 0.0)

    def test_tcp_only_and_udp_only_leave_the_others_out(self) -> None:
        """--tcp-only reports only TCP checks, --udp-only only UDP checks."""
        port = free_port()
        expected = {
            "--tcp-only": [c.id for c in select_checks("full", ("tcp",))],
            "--udp-only": [c.id for c in select_checks("full", ("udp",))],
        }
        for only, ids in expected.items():
            _, document = checked(self, port, only, "--profile", "full")
            self.assertEqual([check["id"] for check in document["checks"]], ids)
        self.assertEqual(sorted(expected["--tcp-only"] + expected["--udp-only"]), sorted(CHECK_IDS))
        self.assertIn("unicode", expected["--tcp-only"])
        self.assertIn("udp-large", expected["--udp-only"])

    def test_a_reader_that_goes_away_is_no_error(self) -> None:
        """
        Output piped into a reader that is gone (C{| head} after it exits):
        no traceback, and the exit status still says a check failed.
        """
        port = free_port()
        reader = subprocess.Popen(
            [os.path.join(BIN, "caps-check"), "--port", str(port), "--profile", "full"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        assert reader.stdout is not None
        reader.stdout.close()  # before the command has printed anything
        _, errors = reader.communicate(timeout=60)
        self.assertEqual((reader.returncode, errors), (1, b""))

    def test_version(self) -> None:
        """--version names caps-check and twisted-caps' version, not Twisted's."""
        done = caps_check("--version")
        self.assertEqual(
            (done.stdout, done.returncode), (f"caps-check (twisted-caps) {__version__}\n", 0)
        )

    def test_python_m_runs_the_command(self) -> None:
        """C{python -m twisted_caps.check} is caps-check."""
        port = free_port()
        done = subprocess.run(
            [sys.executable, "-m", "twisted_caps.check", "--port", str(port), "--udp-only"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        self.assertEqual(done.returncode, 1)
        self.assertEqual(done.stdout.splitlines()[-1], "0 passed, 2 failed")


class LibraryTests(TestCase):
    """The checks as Twisted code, in trial's own reactor."""

    async def test_run_checks_in_the_reactor(self) -> None:
        """run_checks in trial's reactor gives a report to assert on by id."""
        service = start_in_reactor(self, "--shutdown-timeout", "0")
        seen: list[str] = []
        report = await run_checks(
            reactor,
            HOST,
            port_of(service, "TCP"),
            profile="full",
            transports=("tcp",),
            timeout=2,
            on_result=lambda result: seen.append(result.id),
        )
        self.assertTrue(report.all_passed, report.text())
        self.assertTrue(report.passed("split-multibyte"))
        self.assertEqual(list(report.ids), seen)
        self.assertEqual(report.summary(), f"{len(seen)} passed, 0 failed")
        report = await run_checks(reactor, HOST, port_of(service, "UDP"), transports=("udp",))
        self.assertEqual(report.ids, ("udp-reply", "udp-independent"))
        self.assertTrue(report.all_passed, report.text())
