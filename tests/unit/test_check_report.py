"""The report of a caps-check run: lookup by id, lines, JSON and Gradescope documents."""

from twisted.trial.unittest import SynchronousTestCase

from twisted_caps.check.report import CheckReport, CheckResult

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
