"""
caps-check's verdicts on servers written the way students write them,
none of them by the checker's authors' hand for the checker: each server
gets the verdict its code deserves, every time, with a detail that points
at its mistake.
"""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from twisted.internet import reactor
from twisted.trial.unittest import SynchronousTestCase, TestCase

from tests.servers import BIN, CHECKED_HOST, checked, detail, failed, start_student_server
from twisted_caps.check import CHECK_IDS, CHECKS
from twisted_caps.check.feedback import CheckError
from twisted_caps.check.runner import _run_one
from twisted_caps.check.started_server import free_port
from twisted_caps.check.stream_checks import split_multibyte
from twisted_caps.check.target import Target

STUDENT_SERVERS = Path(__file__).resolve().parent.parent / "student_servers"
GRADING = Path(__file__).resolve().parents[2] / "examples" / "grading"
CHECKS_BY_ID = {check.id: check for check in CHECKS}


def student_server(case: SynchronousTestCase, name: str, *transports: str) -> int:
    """Start C{tests/student_servers/NAME.py}; return its port."""
    return start_student_server(case, str(STUDENT_SERVERS / f"{name}.py"), transports or ("tcp",))


class ConcurrencyVerdictTests(SynchronousTestCase):
    def test_forking_server_passes_the_lecture_tcp_checks(self) -> None:
        """A child process per client (the lecture's last slide) is concurrent."""
        port = student_server(self, "forking_server")
        done, document = checked(self, port, "--tcp-only", "--timeout", "2")
        self.assertEqual((failed(document), done.returncode), (set(), 0), done.stdout)

    def test_select_server_passes_the_lecture_tcp_checks(self) -> None:
        """One thread multiplexing with select() is concurrent too."""
        port = student_server(self, "select_server")
        done, document = checked(self, port, "--tcp-only", "--timeout", "2")
        self.assertEqual((failed(document), done.returncode), (set(), 0), done.stdout)

    def test_four_threads_are_not_twenty_clients(self) -> None:
        """
        A pool of four threads answers a client while another sits silent,
        but not 20 clients connected at once: 4 of them are answered.
        """
        port = student_server(self, "thread_pool_server")
        _, document = checked(self, port, "--tcp-only", "--timeout", "2")
        self.assertEqual(failed(document), {"tcp-concurrent"})
        self.assertIn("; 4 were answered; client 5: ", detail(document, "tcp-concurrent"))

    def test_iterative_server_with_a_receive_timeout_is_still_iterative(self) -> None:
        """
        Dropping a silent client after half a second lets the next one in,
        but one at a time: tcp-concurrent fails and says why.
        """
        port = student_server(self, "iterative_with_timeout")
        _, document = checked(self, port, "--tcp-only", "--timeout", "2")
        self.assertIn("tcp-concurrent", failed(document))
        self.assertIn("closed a silent first client", detail(document, "tcp-concurrent"))


class ResetVerdictTests(SynchronousTestCase):
    def test_a_server_killed_by_a_reset_loses_no_other_check(self) -> None:
        """
        The lecture's server with a UDP thread dies of a reset (no try), and
        only tcp-survives-reset says so: it runs last, after the UDP checks.
        """
        port = student_server(self, "lecture_with_udp", "tcp", "udp")
        _, document = checked(self, port, "--timeout", "2")
        self.assertEqual(failed(document), {"tcp-concurrent", "tcp-survives-reset"})
        self.assertEqual(document["checks"][-1]["id"], "tcp-survives-reset")


class ReplyVerdictTests(SynchronousTestCase):
    def test_a_newline_added_to_the_reply_is_wrong(self) -> None:
        """An extra newline fails tcp-reply, pointing at byte 11."""
        port = student_server(self, "newline_reply")
        _, document = checked(self, port, "--tcp-only", "--timeout", "2")
        self.assertIn("tcp-reply", failed(document))
        self.assertIn(
            "got 'HELLO WORLD\\n' (12 bytes); expected 'HELLO WORLD' (11 bytes); "
            "first difference at byte 11",
            detail(document, "tcp-reply"),
        )

    def test_strict_decoding_fails_the_checks_with_bytes_that_are_not_text(self) -> None:
        """
        C{decode().upper().encode()} per chunk gets Unicode right, but loses
        invalid UTF-8 and characters split across reads.
        """
        port = student_server(self, "strict_decode")
        _, document = checked(self, port, "--tcp-only", "--profile", "full", "--timeout", "2")
        self.assertEqual(failed(document), {"invalid-utf8", "split-multibyte"})
        self.assertIn("surrogateescape", detail(document, "invalid-utf8"))

    def test_reading_once_per_client_fails_every_multi_chunk_check(self) -> None:
        """
        A concurrent server that reads once per connection passes the
        lecture profile and fails the checks that send more than one chunk.
        """
        port = student_server(self, "threaded_recv_once")
        done, document = checked(self, port, "--tcp-only", "--timeout", "2")
        self.assertEqual((failed(document), done.returncode), (set(), 0), done.stdout)
        _, document = checked(self, port, "--tcp-only", "--profile", "full", "--timeout", "2")
        self.assertEqual(failed(document), {"unicode", "split-multibyte", "stream", "half-close"})


class StoppedServerTests(SynchronousTestCase):
    def test_a_server_that_stops_is_named_on_every_later_check(self) -> None:
        """
        A server caps-check did not start dies on invalid-utf8: that check
        fails, and every later check is not graded and names it, in the
        printed lines, --json and Gradescope's output alike.
        """
        port = start_student_server(self, str(GRADING / "select_server.py"), ("tcp", "udp"))
        results = os.path.abspath(self.mktemp())
        done, document = checked(
            self, port, "--profile", "full", "--timeout", "2", "--gradescope", results
        )
        after = ["udp-invalid-utf8", "split-multibyte", "tcp-survives-reset"]
        verdicts = {check["id"]: check["verdict"] for check in document["checks"]}
        self.assertEqual(verdicts["invalid-utf8"], "failed")
        self.assertEqual([verdicts[check_id] for check_id in after], ["not graded"] * 3)
        self.assertEqual(
            detail(document, "split-multibyte"),
            "not graded: the server stopped accepting connections during `invalid-utf8`",
        )
        self.assertEqual(
            detail(document, "udp-invalid-utf8"),
            "not graded: the server stopped receiving datagrams during `invalid-utf8`",
        )
        self.assertIn(
            "tcp-survives-reset   SKIP not graded: the server stopped accepting connections "
            "during `invalid-utf8`",
            done.stdout,
        )
        self.assertEqual(done.stdout.splitlines()[-1], "11 passed, 2 failed, 3 not graded")
        with open(results, encoding="utf-8") as gradescope:
            tests = {test["name"]: test for test in json.load(gradescope)["tests"]}
        self.assertTrue(tests["split-multibyte"]["output"].startswith("not graded: "))
        self.assertFalse(tests["invalid-utf8"]["output"].startswith("not graded: "))

    def test_a_server_that_was_never_there_is_failed_not_skipped(self) -> None:
        """Nothing ever listening is a failure of each check, not a server that stopped."""
        _, document = checked(self, free_port(), "--profile", "full")
        self.assertEqual({check["verdict"] for check in document["checks"]}, {"failed"})


class FeedbackTests(SynchronousTestCase):
    """Feedback names the real cause, and gives a hint only where the evidence points."""

    def test_a_server_that_waits_for_a_newline_is_told_the_protocol_has_no_framing(
        self,
    ) -> None:
        """
        socketserver reading lines, a thread per client: the checks that
        judge framing say it waits for a newline; nothing says it is
        iterative or should catch ConnectionResetError, and the checks of
        concurrency, survival and streaming pass.
        """
        port = student_server(self, "readline_threaded", "tcp", "udp")
        done, document = checked(self, port, "--profile", "full", "--timeout", "1")
        self.assertEqual(
            failed(document),
            {"tcp-reply", "tcp-sentences", "no-framing", "udp-large", "unicode", "udp-unicode"}
            | {"split-multibyte"},
            done.stdout,
        )
        self.assertIn(
            "sent 'hello world' (11 bytes); no reply within 1 s, but once a newline followed, "
            "the server answered 'HELLO WORLD\\n' (12 bytes): it waits for the end of a line "
            "(readline(), makefile(), a loop until b'\\n'), and the protocol has no framing",
            detail(document, "tcp-reply"),
        )
        self.assertNotIn("iterative", done.stdout)
        self.assertNotIn("ConnectionResetError", done.stdout)
        self.assertIn("max_packet_size = 65535", detail(document, "udp-large"))

    def test_a_bytes_upper_reply_to_a_split_character_is_the_unicode_problem(self) -> None:
        """
        A thread per client with bytes.upper() keeps reading: its reply to
        the split character is called what it is, not "keep reading".
        """
        port = start_student_server(self, str(GRADING / "threaded_server.py"), ("tcp",))
        _, document = checked(self, port, "--tcp-only", "--profile", "full", "--timeout", "2")
        split = detail(document, "split-multibyte")
        self.assertIn("got 'STRAßE' (7 bytes); expected 'STRASSE' (7 bytes)", split)
        self.assertIn("(the reply is what bytes.upper() gives", split)
        self.assertNotIn("keep reading", split)

    def test_silence_gets_no_hint(self) -> None:
        """A server that never replies is told what did not come, and no fix it did not earn."""
        port = student_server(self, "silent_server", "tcp", "udp")
        _, document = checked(self, port, "--profile", "full", "--timeout", "0.5")
        for check_id in ("unicode", "invalid-utf8", "udp-unicode", "udp-large", "tcp-reply"):
            # The detail ends with what was expected and its length: no fix follows.
            self.assertRegex(
                detail(document, check_id), r"; expected [^;]* \([\d,]+ bytes(, from byte 0)?\)$"
            )
        self.assertIn("nor after a newline", detail(document, "tcp-concurrent"))
        self.assertNotIn("ConnectionResetError", detail(document, "tcp-survives-reset"))


class SplitCharacterTests(TestCase):
    async def test_a_server_that_reads_once_fails_split_multibyte_every_time(self) -> None:
        """
        The halves of a split character are 50 ms or more apart and the
        second waits for the server's answer to the first, so a server that
        reads once is caught on every try, not half of them.
        """
        port = student_server(self, "threaded_recv_once")
        target = Target(reactor, CHECKED_HOST, CHECKED_HOST, port, 2.0)
        for _ in range(10):
            with self.assertRaises(CheckError) as raised:
                await split_multibyte(target)
            # Whether the close or the first half's reply is seen first is
            # the kernel's timing; the verdict and its reason are not.
            failure = str(raised.exception)
            self.assertIn("expected 'STRASSE' (7 bytes)", failure)
            self.assertIn("keep reading, and decode with an incremental UTF-8 decoder", failure)


class DatagramVerdictTests(SynchronousTestCase):
    def test_replies_to_the_wrong_sender_fail_udp_independent(self) -> None:
        """Answering every datagram to the first client passes udp-reply, not udp-independent."""
        port = student_server(self, "udp_first_client_only", "udp")
        _, document = checked(self, port, "--udp-only", "--timeout", "2")
        self.assertEqual(failed(document), {"udp-independent"})
        self.assertIn("to the address recvfrom() returned", detail(document, "udp-independent"))


class TrickleTests(TestCase):
    async def test_a_server_that_trickles_cannot_hang_a_check(self) -> None:
        """
        A server that answers one byte every 0.3 s never leaves a wait idle
        for the 0.5 s timeout, yet the stream check stops after twelve
        timeouts and a second, fails saying so, and leaves no socket open.
        """
        port = student_server(self, "trickle_server")
        target = Target(reactor, CHECKED_HOST, CHECKED_HOST, port, 0.5)
        started = reactor.seconds()
        result = await _run_one(CHECKS_BY_ID["stream"], target)
        self.assertEqual(result.detail, "no verdict within 7 s")
        self.assertLess(reactor.seconds() - started, 7 + 2)
        self.assertEqual(target.opened, [])  # its connection was closed at once


class HostileServerTests(SynchronousTestCase):
    """A server cannot hang caps-check, exhaust its memory, or make it print a traceback."""

    def test_a_silent_server_fails_every_check_in_bounded_time(self) -> None:
        """
        A server that accepts and reads but never answers: each check
        fails with "no reply within 0.5 s", and the whole run ends soon.
        """
        port = student_server(self, "silent_server", "tcp", "udp")
        started = time.monotonic()
        done, document = checked(self, port, "--profile", "full", "--timeout", "0.5")
        self.assertLess(time.monotonic() - started, 30)
        self.assertEqual(done.returncode, 1)
        self.assertEqual(failed(document), set(CHECK_IDS))
        for check_id in ("tcp-reply", "unicode", "stream", "udp-reply", "udp-large"):
            self.assertIn("no reply within 0.5 s", detail(document, check_id))

    def test_a_flooding_server_cannot_exhaust_the_checkers_memory(self) -> None:
        """
        A server that answers with an endless flood (TCP and UDP) fails
        every check, its flood shown, while the checker stays under
        150 MB of resident memory and finishes in bounded time.
        """
        port = student_server(self, "flood_server", "tcp", "udp")
        report = self.mktemp()
        measure = (
            "import resource, subprocess, sys; "
            "subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, timeout=120); "
            "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
        )
        started = time.monotonic()
        done = subprocess.run(
            [
                sys.executable,
                "-c",
                measure,
                os.path.join(BIN, "caps-check"),
                *("--host", CHECKED_HOST, "--port", str(port), "--profile", "full"),
                *("--timeout", "1", "--json", report),
            ],
            capture_output=True,
            text=True,
            timeout=150,
        )
        self.assertLess(time.monotonic() - started, 60)
        self.assertLess(int(done.stdout), 150 * 1024, "peak resident memory in KiB")
        with open(report, encoding="utf-8") as document:
            results = json.load(document)
        for check in results["checks"]:
            self.assertFalse(check["passed"])
            self.assertRegex(check["detail"], "got '(X{40}|Y{40})'")
