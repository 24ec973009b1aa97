"""
The layout a newcomer relies on: test helpers live in C{tests/servers.py}
and C{tests/certificates.py} only, and each module names its tests.
"""

import ast
import re
import subprocess
import sys
import time
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

TESTS = Path(__file__).resolve().parent
PROJECT = TESTS.parent
#: The modules of C{tests/} that other test modules may import.
HELPERS = {"tests.servers", "tests.certificates", "tests.proxy_headers"}
HEADER = re.compile(r"# -\*- test-case-name: ([\w.]+) -\*-")
#: Python run before a command in the fast-tier check: it makes opening a
#: socket or starting a process fail.
NO_SOCKETS_NO_PROCESSES = """
import os, socket, subprocess

def forbidden(*args, **kwargs):
    raise AssertionError("the fast tier opened a socket or started a process")

socket.socket.__init__ = forbidden
subprocess.Popen.__init__ = forbidden
os.fork = os.posix_spawn = os.posix_spawnp = os.system = forbidden
"""
#: Seconds the fast tier may take, with room for a loaded machine.
FAST_TIER_SECONDS = 30


def imported_modules(path: Path) -> set[str]:
    """Every module C{path} imports, by its full name."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


class LayoutTests(SynchronousTestCase):
    def test_test_modules_import_only_the_shared_helpers(self) -> None:
        """No test module imports another: what several share is in the helper modules."""
        for path in TESTS.rglob("*.py"):
            module = ".".join(path.relative_to(PROJECT).with_suffix("").parts)
            others = {
                name
                for name in imported_modules(path)
                if re.match(r"tests\.(?:.*\.)?test_", name) and name != module
            }
            self.assertEqual(others, set(), path)

    def test_every_module_names_a_test_module_that_exists(self) -> None:
        """The C{test-case-name} header of each source module points at a real test module."""
        for path in (PROJECT / "twisted_caps").rglob("*.py"):
            if path.name == "__init__.py" and path.parent.name == "twisted_caps":
                continue  # the package's version and summary: nothing to test
            match = HEADER.match(path.read_text())
            self.assertIsNotNone(match, path)
            assert match is not None
            named = PROJECT.joinpath(*match.group(1).split(".")).with_suffix(".py")
            self.assertTrue(named.exists(), f"{path}: {match.group(1)}")


class ReadmeTests(SynchronousTestCase):
    def test_readme_is_a_door_of_at_most_200_lines(self) -> None:
        """The README says what caps is and where to read on; the manual is in docs/."""
        self.assertLessEqual(len((PROJECT / "README.md").read_text().splitlines()), 200)

    def test_every_file_the_readme_links_to_exists(self) -> None:
        """A page moved or renamed in docs/ does not leave the README pointing nowhere."""
        readme = (PROJECT / "README.md").read_text()
        targets = re.findall(r"\]\(((?!https?:)[^)#]+)(?:#[^)]*)?\)", readme)
        self.assertGreater(len(targets), 10)
        for target in targets:
            self.assertTrue((PROJECT / target).exists(), target)


class FastTierTests(SynchronousTestCase):
    def run_guarded(self, code: str) -> subprocess.CompletedProcess[str]:
        """Run C{code} in a child Python in which sockets and processes are forbidden."""
        return subprocess.run(
            [sys.executable, "-c", NO_SOCKETS_NO_PROCESSES + code],
            cwd=PROJECT,
            capture_output=True,
            text=True,
            timeout=FAST_TIER_SECONDS * 2,
        )

    def test_fast_tier_runs_in_seconds_without_sockets_or_processes(self) -> None:
        """
        C{trial tests.unit} passes with sockets and child processes forbidden,
        in seconds: a developer can loop on it.
        """
        started = time.monotonic()
        done = self.run_guarded(
            "import sys\nsys.argv = ['trial', 'tests.unit']\n"
            "from twisted.scripts.trial import run\nrun()"
        )
        elapsed = time.monotonic() - started
        self.assertEqual(done.returncode, 0, done.stdout + done.stderr)
        self.assertRegex(done.stdout, r"PASSED \(successes=\d{2,}\)")
        self.assertLess(elapsed, FAST_TIER_SECONDS)

    def test_the_guard_refuses_a_socket_and_a_process(self) -> None:
        """The check above would catch a unit test that opens a socket or starts a process."""
        for code in ("socket.socket()", "subprocess.run(['true'])"):
            done = self.run_guarded(code)
            self.assertNotEqual(done.returncode, 0, code)
            self.assertIn("the fast tier opened a socket or started a process", done.stderr)
