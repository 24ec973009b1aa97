"""
C{.ci/smoke.py}, the check CI runs against each fresh installation: it
passes an environment that serves, and fails in one line one that does not.
"""

import os
import stat
import subprocess
import sys
from pathlib import Path

from twisted.trial.unittest import TestCase

from twisted_caps.check import select_checks

SMOKE = Path(__file__).resolve().parent.parent / ".ci" / "smoke.py"


def run_smoke(*argv: str) -> subprocess.CompletedProcess[str]:
    """The smoke script under this Python, bounded well past its own deadlines."""
    return subprocess.run(
        [sys.executable, str(SMOKE), *argv],
        capture_output=True,
        text=True,
        timeout=600,
        stdin=subprocess.DEVNULL,
    )


class SmokeScriptTests(TestCase):
    def test_the_checkouts_environment_serves_and_passes_every_check(self) -> None:
        done = run_smoke(sys.prefix, "--check")
        self.assertEqual(done.returncode, 0, done.stderr)
        every_check = len(select_checks("full", ("tcp", "udp")))
        self.assertIn(f"{every_check} passed, 0 failed\n", done.stdout)
        self.assertTrue(done.stdout.endswith(": TCP, UDP and SIGTERM as promised\n"))
        self.assertEqual(done.stderr, "")

    def test_a_server_that_does_not_start_fails_in_one_line(self) -> None:
        environment = Path(self.mktemp()).resolve()
        (environment / "bin").mkdir(parents=True)
        twistd = environment / "bin" / "twistd"
        twistd.write_text("#!/bin/sh\necho 'no caps here'\nexit 3\n")
        twistd.chmod(twistd.stat().st_mode | stat.S_IXUSR)
        done = run_smoke(str(environment))
        self.assertEqual(done.returncode, 1)
        self.assertEqual(
            done.stderr,
            f"smoke test of {environment}: the server did not start: 'no caps here\\n'\n",
        )
        self.assertEqual(done.stdout, "")

    def test_a_missing_environment_fails_in_one_line(self) -> None:
        missing = os.path.abspath(self.mktemp())
        done = run_smoke(missing)
        self.assertEqual(done.returncode, 1)
        self.assertEqual(done.stderr.count("\n"), 1)
        self.assertIn(f"smoke test of {missing}: ", done.stderr)
        self.assertIn("twistd", done.stderr)

    def test_bad_usage_exits_2_with_the_usage_line(self) -> None:
        for argv in ((), ("--check",), (sys.prefix, "--bogus")):
            done = run_smoke(*argv)
            usage = (done.returncode, done.stderr)
            self.assertEqual(usage, (2, "usage: smoke.py VENV [--check]\n"))
