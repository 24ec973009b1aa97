"""Tests for L{twisted_caps.serving.open_files}, in child processes with a lowered limit."""

import resource
import subprocess
import sys

from twisted.trial.unittest import SynchronousTestCase

PROBE = """
import resource
from twisted_caps.serving.open_files import raise_open_files_limit
before, after = raise_open_files_limit()
print(before, after, resource.getrlimit(resource.RLIMIT_NOFILE)[0])
"""


def run_with_soft_limit(soft: int) -> list[int]:
    """Run the probe in a child whose soft open-files limit is C{soft}."""
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]

    def lower() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))

    done = subprocess.run(
        [sys.executable, "-c", PROBE], preexec_fn=lower, capture_output=True, check=True
    )
    return [int(n) for n in done.stdout.split()]


class RaiseOpenFilesLimitTests(SynchronousTestCase):
    def test_soft_limit_is_raised_to_the_hard_limit(self) -> None:
        hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        if hard == resource.RLIM_INFINITY or hard <= 256:
            raise self.skipTest("no finite hard limit above 256 to raise to")
        self.assertEqual(run_with_soft_limit(256), [256, hard, hard])

    def test_limit_already_at_the_hard_limit_is_left_alone(self) -> None:
        hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        if hard == resource.RLIM_INFINITY:
            raise self.skipTest("infinite hard limit")
        self.assertEqual(run_with_soft_limit(hard), [hard, hard, hard])
