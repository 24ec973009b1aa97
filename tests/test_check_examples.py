"""
The grading examples: shown in docs/grading.md as they are in
examples/grading/, and working when run as the documentation says.
"""

import json
import os
import re
import shlex
import subprocess
from pathlib import Path

from twisted.trial.unittest import TestCase

from tests.servers import BIN, run_in_scratch

PROJECT = Path(__file__).resolve().parent.parent
GRADING = PROJECT / "examples" / "grading"
SHOWN = ("autograder.py", "test_threaded_server.py")
#: Graded by the examples above and the command lines shown, and named in the documentation.
SERVERS = ("lecture_server.py", "threaded_server.py", "select_server.py")
#: The command lines docs/grading.md shows with their output, run in examples/grading/.
SHOWN_RUNS = (
    "caps-check --run 'python3 select_server.py {port}' --profile full --timeout 2",
    """caps-check --run 'python3 -c "import sys; port = int(sys.argv[1]" {port}'""",
)


class GradingExamplesTests(TestCase):
    def test_documentation_shows_the_autograders_as_they_are(self) -> None:
        """docs/grading.md shows each autograder example byte for byte."""
        guide = (PROJECT / "docs" / "grading.md").read_text()
        for name in SHOWN:
            self.assertIn(f"```python\n{(GRADING / name).read_text()}```", guide, name)
        for name in SERVERS:
            self.assertIn(name, guide)

    def test_every_grading_example_is_run(self) -> None:
        self.assertEqual({path.name for path in GRADING.glob("*.py")}, {*SHOWN, *SERVERS})

    def test_autograder_grades_the_lecture_server(self) -> None:
        """
        autograder.py grades the program named on its command line: the
        lecture's server passes tcp-reply and fails tcp-concurrent, worth 3
        points, and results.json says so.
        """
        results_path = Path(self.mktemp()).resolve()
        output = run_in_scratch(
            self,
            "autograder",
            str(GRADING / "lecture_server.py"),
            str(results_path),
            files={"autograder.py": (GRADING / "autograder.py").read_text()},
        )
        lines = output.splitlines()
        self.assertEqual(lines[0], "tcp-reply            PASS")
        self.assertTrue(lines[2].startswith("tcp-concurrent       FAIL "), lines[2])
        self.assertEqual(lines[-1], "2 passed, 4 failed")
        results = json.loads(results_path.read_text())
        scores = {test["name"]: (test["score"], test["max_score"]) for test in results["tests"]}
        self.assertEqual(scores["tcp-reply"], (1.0, 1.0))
        self.assertEqual(scores["tcp-concurrent"], (0.0, 3.0))
        self.assertEqual(results["score"], 2.0)

    def test_pytest_autograder_passes(self) -> None:
        """The pytest autograder grades the threaded server: every lecture check passes."""
        output = run_in_scratch(
            self, "pytest", "-q", "-p", "no:cacheprovider", str(GRADING / "test_threaded_server.py")
        )
        self.assertIn("7 passed", output)

    def test_the_runs_shown_print_what_the_documentation_says(self) -> None:
        """
        Each caps-check command line docs/grading.md shows with its output
        prints that output, line for line, run in examples/grading/ (a port
        number is shown as P: caps-check picks a free one).
        """
        guide = (PROJECT / "docs" / "grading.md").read_text()
        for command in SHOWN_RUNS:
            shown = guide.split(f"```console\n$ {command}\n", 1)[1].split("```", 1)[0]
            argv = shlex.split(command)
            done = subprocess.run(
                [os.path.join(BIN, argv[0]), *argv[1:]],
                cwd=GRADING,
                capture_output=True,
                text=True,
                timeout=300,
                stdin=subprocess.DEVNULL,
            )
            self.assertEqual((done.stderr, done.returncode), ("", 1), command)
            self.assertEqual(re.sub(r"port \d+", "port P", done.stdout), shown, command)
