"""
The examples of "Testing your code against caps" (docs/testing.md): every
file in examples/ is included by the page as it is, and passes under the
commands the page gives.
"""

import re
from pathlib import Path

from twisted.trial.unittest import TestCase

from tests.servers import run_in_scratch

PROJECT = Path(__file__).resolve().parent.parent
EXAMPLES = PROJECT / "examples"
PAGE = PROJECT / "docs" / "testing.md"
PYTEST_EXAMPLES = ("test_autograder.py", "test_with_pytest_twisted.py")
TRIAL_EXAMPLES = ("test_trial_memory.py", "test_trial_loopback.py")
INCLUDE = re.compile(r"^```\{literalinclude\} \.\./examples/(\S+)\n:language: python\n```$", re.M)


class ExamplesTests(TestCase):
    def test_page_includes_each_example_file(self) -> None:
        """The page shows the files themselves (Sphinx includes them), each once."""
        included = INCLUDE.findall(PAGE.read_text())
        files = sorted(path.name for path in EXAMPLES.glob("*.py"))
        self.assertEqual(len(files), 5)
        self.assertEqual(sorted(included), files)

    def test_page_gives_the_commands_run_here(self) -> None:
        """The commands the page tells readers to run are the ones these tests run."""
        page = PAGE.read_text()
        trial = " ".join(f"examples/{name}" for name in TRIAL_EXAMPLES)
        pytest = " ".join(f"examples/{name}" for name in PYTEST_EXAMPLES)
        self.assertIn(f"python -m twisted.trial {trial}\n", page)
        self.assertIn(f"pytest {pytest}\n", page)

    def test_pytest_examples_pass(self) -> None:
        paths = [str(EXAMPLES / name) for name in PYTEST_EXAMPLES]
        output = run_in_scratch(self, "pytest", "-q", "-p", "no:cacheprovider", *paths)
        self.assertIn("4 passed", output)
        self.assertNotIn("skipped", output)

    def test_trial_examples_pass_under_trial(self) -> None:
        paths = [str(EXAMPLES / name) for name in TRIAL_EXAMPLES]
        output = run_in_scratch(self, "twisted.trial", *paths)
        self.assertIn("PASSED (successes=5)", output)

    def test_trial_examples_pass_under_pytest(self) -> None:
        paths = [str(EXAMPLES / name) for name in TRIAL_EXAMPLES]
        output = run_in_scratch(self, "pytest", "-q", "-p", "no:cacheprovider", *paths)
        self.assertIn("5 passed", output)

    def test_every_example_is_run(self) -> None:
        run = {*PYTEST_EXAMPLES, *TRIAL_EXAMPLES, "student_client.py"}
        self.assertEqual({path.name for path in EXAMPLES.glob("*.py")}, run)
