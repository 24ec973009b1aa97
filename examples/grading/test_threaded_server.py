"""
A pytest autograder: grade threaded_server.py once, then one test per check,
asserted by id; a failure prints what the server did wrong.
Run with: python -m pytest test_threaded_server.py
"""

import sys
from pathlib import Path

import pytest

from twisted_caps.check import CheckReport, grade_server, select_checks

SERVER = Path(__file__).with_name("threaded_server.py")
LECTURE_CHECKS = [check.id for check in select_checks("lecture", ("tcp", "udp"))]


@pytest.fixture(scope="module")
def report() -> CheckReport:
    return grade_server([sys.executable, str(SERVER), "{port}"], profile="lecture")


@pytest.mark.parametrize("check_id", LECTURE_CHECKS)
def test_lecture_check(report: CheckReport, check_id: str) -> None:
    assert report.passed(check_id), report[check_id].detail


def test_threads_are_not_enough_for_unicode() -> None:
    report = grade_server([sys.executable, str(SERVER), "{port}"], profile="full")
    assert report.failed_ids == ("unicode", "udp-unicode", "split-multibyte")
