"""
The README's "Testing your own code against caps" examples: shown as they
are in examples/, and passing under the commands the README gives.
"""

from pathlib import Path

from twisted.trial.unittest import TestCase

from tests.servers import run_in_scratch

PROJECT = Path(__file__).resolve().parent.parent
EXAMPLES = PROJECT / "examples"
SECTION = "## Testing your own code against caps"
PYTEST_EXAMPLES = ("test_autograder.py", "test_with_pytest_twisted.py")
TRIAL_EXAMPLES = ("test_trial_memory.py", "test_trial_loopback.py")


def readme_section() -> str:
    """The README's testing section, up to the next second-level heading."""
    readme = (PROJECT / "README.md").read_text()
    start = readme.index(SECTION)
    end = readme.find("\n## ", start + len(SECTION))
    return readme[start : end if end >= 0 else len(readme)]


class ExamplesTests(TestCase):
    def test_readme_shows_each_example_as_it_is(self) -> None:
        section = readme_section()
        files = sorted(EXAMPLES.glob("*.py"))
        self.assertEqual(len(files), 5)
        for path in files:
            self.assertIn(f"```python\n{path.read_text()}```", section, path.name)

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
