# -*- test-case-name: tests.test_check -*-
"""
caps-check: check any capitalization server from outside, as the course's
assignment (profile C{lecture}) and twisted-caps' protocol (profile
C{full}) define it, with feedback a student can act on.

In a trial test (or with pytest-twisted), in the reactor::

    report = await run_checks(reactor, "127.0.0.1", port, profile="full")
    self.assertTrue(report.passed("tcp-reply"), report["tcp-reply"].detail)

In a plain test or script, with the student's server started and stopped
for you::

    report = grade_server([sys.executable, "server.py", "{port}"])
    assert report.passed("tcp-concurrent"), report["tcp-concurrent"].detail
"""

from twisted_caps.check.checks import CHECK_IDS, CHECKS, Check, select_checks
from twisted_caps.check.grader import grade_server
from twisted_caps.check.report import CheckReport, CheckResult
from twisted_caps.check.runner import DEFAULT_TIMEOUT, run_checks
from twisted_caps.check.target import PROFILES, Target

__all__ = [
    "CHECKS",
    "CHECK_IDS",
    "DEFAULT_TIMEOUT",
    "PROFILES",
    "Check",
    "CheckReport",
    "CheckResult",
    "Target",
    "grade_server",
    "run_checks",
    "select_checks",
]
