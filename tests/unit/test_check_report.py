"""The report of a caps-check run: lookup by id, lines, JSON and Gradescope documents."""

from twisted.trial.unittest import SynchronousTestCase

from twisted_caps.check.report import CheckReport, CheckResult, not_graded

REPORT = CheckReport(
    "localhost:1200",
    "lecture",
    (CheckResult("tcp-reply", True), CheckResult("tcp-concurrent", False, "no reply")),
)


class CheckReportTests(SynchronousTestCase):
    def test_results_by_id(self) -> None:
        self.assertTrue(REPORT.passed("tcp-reply"))
        self.assertEqual(REPORT["tcp-concurrent"].detail, "no reply")
        self.assertEqual(
            (REPORT.passed_ids, REPORT.failed_ids), (("tcp-reply",), ("tcp-concurrent",))
        )
        self.assertFalse(REPORT.all_passed)

    def test_unknown_id_names_the_checks_that_ran(self) -> None:
        with self.assertRaises(KeyError) as raised:
            REPORT["udp-large"]
        self.assertIn("tcp-reply, tcp-concurrent", str(raised.exception))

    def test_text_is_one_line_per_check_then_the_summary(self) -> None:
        self.assertEqual(
            REPORT.text(),
            "tcp-reply            PASS\ntcp-concurrent       FAIL no reply\n1 passed, 1 failed\n",
        )

    def test_json_round_trip(self) -> None:
        self.assertEqual(CheckReport.from_json(REPORT.to_json()), REPORT)

    def test_gradescope_weights(self) -> None:
        """Each check is a test worth its weight (1 by default), all or nothing."""
        results = REPORT.to_gradescope({"tcp-reply": 2})
        self.assertEqual(
            results["tests"],
            [
                {
                    "name": "tcp-reply",
                    "score": 2.0,
                    "max_score": 2.0,
                    "status": "passed",
                    "output": "passed",
                },
                {
                    "name": "tcp-concurrent",
                    "score": 0.0,
                    "max_score": 1.0,
                    "status": "failed",
                    "output": "no reply",
                },
            ],
        )
        self.assertEqual(results["score"], 2.0)


STOPPED = CheckReport(
    "127.0.0.1:4000",
    "full",
    (
        CheckResult("tcp-reply", True),
        CheckResult("invalid-utf8", False, "closed; the server exited", "crashed", "Error: x"),
        not_graded("split-multibyte", "the server stopped accepting connections during `x`"),
    ),
    server_output="ready\nError: x",
)


class VerdictTests(SynchronousTestCase):
    def test_verdicts_are_told_apart_in_lines_json_and_gradescope(self) -> None:
        """A check not graded is SKIP, counted apart, and marked in --json and Gradescope."""
        self.assertEqual(
            STOPPED.text().splitlines(),
            [
                "tcp-reply            PASS",
                "invalid-utf8         FAIL closed; the server exited",
                "split-multibyte      SKIP not graded: the server stopped accepting "
                "connections during `x`",
                "1 passed, 1 failed, 1 not graded",
            ],
        )
        self.assertEqual(
            [check["verdict"] for check in STOPPED.to_json()["checks"]],
            ["passed", "crashed", "not graded"],
        )
        self.assertEqual(STOPPED.not_graded_ids, ("split-multibyte",))
        tests = STOPPED.to_gradescope()["tests"]
        self.assertEqual(
            tests[1]["output"],
            "closed; the server exited\n\nThe server's output ended with:\nError: x",
        )
        self.assertTrue(tests[2]["output"].startswith("not graded: "))
        self.assertEqual(CheckReport.from_json(STOPPED.to_json()), STOPPED)

    def test_a_server_that_did_not_start_is_said_once(self) -> None:
        """The printed report of a server that did not start is its reason, then the summary."""
        report = CheckReport(
            "127.0.0.1:4000",
            "lecture",
            (not_graded("tcp-reply", "the server did not start"),),
            "SyntaxError: x",
            "the server did not start: it exited with status 1",
        )
        self.assertEqual(
            report.text(),
            "the server did not start: it exited with status 1\n0 passed, 0 failed, 1 not graded\n",
        )
        output = report.to_gradescope()["output"]
        self.assertIn("\nthe server did not start: it exited with status 1\n", output)
        self.assertTrue(output.endswith("The server's output ended with:\nSyntaxError: x"))
