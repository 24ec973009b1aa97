"""
The layout a newcomer relies on: test helpers live in C{tests/servers.py}
and C{tests/certificates.py} only, and each module names its tests.
"""

import ast
import re
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

TESTS = Path(__file__).resolve().parent
PROJECT = TESTS.parent
#: The modules of C{tests/} that other test modules may import.
HELPERS = {"tests.servers", "tests.certificates"}
HEADER = re.compile(r"# -\*- test-case-name: ([\w.]+) -\*-")


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
