"""
The layout a newcomer relies on: test helpers live in C{tests/servers.py}
and C{tests/certificates.py} only, and each module names its tests.
"""

import ast
import re
import resource
import subprocess
import sys
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

TESTS = Path(__file__).resolve().parent
PROJECT = TESTS.parent
#: The modules of C{tests/} that other test modules may import.
HELPERS = {"tests.servers", "tests.certificates", "tests.proxy_headers"}
HEADER = re.compile(r"# -\*- test-case-name: ([\w.]+(?:,[\w.]+)*) -\*-")
#: The packages of the top floor whose modules' tests are named after the package too.
USER_PACKAGES = ("check", "client", "testing")
#: Python run before a command in the fast-tier check: it makes opening a
#: socket, starting a process or sleeping fail (time passes on a Clock there).
NO_SOCKETS_NO_PROCESSES = """
import os, socket, subprocess, time

def forbidden(*args, **kwargs):
    raise AssertionError("the fast tier opened a socket or started a process")

def no_sleep(*args, **kwargs):
    raise AssertionError("the fast tier slept; advance a twisted.internet.task.Clock")

socket.socket.__init__ = forbidden
subprocess.Popen.__init__ = forbidden
os.fork = os.posix_spawn = os.posix_spawnp = os.system = forbidden
time.sleep = no_sleep
"""
#: CPU seconds the fast tier may take (about 5 on a 2-core x86_64 machine).
#: CPU time, not wall-clock time: a machine busy with other work stretches
#: the second and not the first, and the promise is about the tier's cost.
FAST_TIER_SECONDS = 30
#: Wall-clock bound of each child Python: generous, for a loaded machine.
CHILD_TIMEOUT_SECONDS = 600
#: The floors of the package, lowest first: a module imports only from its
#: own floor or the ones below. The top floor is what users import.
FLOORS = ("core", "_twisted", "serving", "operating", "users")
#: The floor of each top-level name of the package; the rest is for users.
FLOOR_OF = {"core": "core", "_twisted": "_twisted", "serving": "serving", "operating": "operating"}
#: What the top floor may hold besides the layer folders: the libraries and
#: commands users import or run, and the package's version.
USERS = {"__init__", "client", "check", "testing", "pytest_plugin", "py"}


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


def module_name(path: Path) -> str:
    """The dotted name of the module at C{path} (a package by its folder's name)."""
    parts = path.relative_to(PROJECT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def package_imports() -> dict[str, set[str]]:
    """Each module of the package and the modules of the package it imports."""
    modules = {module_name(path): path for path in (PROJECT / "twisted_caps").rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        graph[name] = {
            imported
            for imported in imported_modules(path)
            if imported in modules
            and imported != name
            # "from twisted_caps.check import x" names x, not the package's body.
            and not any(other.startswith(imported + ".") for other in imported_modules(path))
        }
    return graph


def floor(module: str) -> int:
    """The index in L{FLOORS} of C{module}'s floor."""
    top = module.split(".")[1] if "." in module else "__init__"
    return FLOORS.index(FLOOR_OF.get(top, "users"))


def find_loop(graph: dict[str, set[str]]) -> list[str] | None:
    """A chain of imports that comes back to where it started, if any."""
    done: set[str] = set()

    def visit(module: str, path: list[str]) -> list[str] | None:
        if module in path:
            return [*path[path.index(module) :], module]
        if module in done:
            return None
        for imported in sorted(graph[module]):
            loop = visit(imported, [*path, module])
            if loop:
                return loop
        done.add(module)
        return None

    for module in sorted(graph):
        loop = visit(module, [])
        if loop:
            return loop
    return None


class FloorTests(SynchronousTestCase):
    """The folders are the layers: arrows point down and never come back."""

    def test_no_module_imports_from_a_higher_floor(self) -> None:
        upward = [
            f"{module} -> {imported}"
            for module, imports in package_imports().items()
            for imported in imports
            if floor(imported) > floor(module)
        ]
        self.assertEqual(upward, [])

    def test_no_import_loop(self) -> None:
        self.assertIsNone(find_loop(package_imports()))

    def test_the_checks_would_see_an_upward_arrow_and_a_loop(self) -> None:
        self.assertGreater(floor("twisted_caps.operating.tap"), floor("twisted_caps.core.limits"))
        self.assertEqual(find_loop({"a": {"b"}, "b": {"a"}}), ["a", "b", "a"])

    def test_the_fence_imports_only_the_core(self) -> None:
        """The fence could go upstream: it knows nothing of the service it serves."""
        for module, imports in package_imports().items():
            if module.startswith("twisted_caps._twisted"):
                self.assertEqual(
                    {
                        name
                        for name in imports
                        if not name.startswith(("twisted_caps._twisted", "twisted_caps.core"))
                    },
                    set(),
                    module,
                )

    def test_the_top_floor_holds_what_users_import_and_the_layer_folders(self) -> None:
        names = {path.stem for path in (PROJECT / "twisted_caps").iterdir()} - {"__pycache__"}
        self.assertEqual(names - USERS - set(FLOOR_OF), set())

    def test_the_client_library_loads_nothing_of_the_server(self) -> None:
        """A student's client imports the library, not the service behind it."""
        code = (
            "import sys, twisted_caps.client\n"
            "print(sorted(m for m in sys.modules if m.startswith('twisted_caps.')))"
        )
        loaded = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        ).stdout
        self.assertIn("twisted_caps.client", loaded)
        for floor_name in ("serving", "operating", "_twisted"):
            self.assertNotIn(f"twisted_caps.{floor_name}", loaded)


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

    def test_every_module_names_test_modules_that_exist(self) -> None:
        """The C{test-case-name} header of each source module lists real test modules."""
        for path in (PROJECT / "twisted_caps").rglob("*.py"):
            if path.name == "__init__.py" and path.parent.name == "twisted_caps":
                continue  # the package's version and summary: nothing to test
            for named in named_tests(path):
                module = PROJECT.joinpath(*named.split(".")).with_suffix(".py")
                self.assertTrue(module.exists(), f"{path}: {named}")

    def test_a_module_s_tests_are_found_from_its_name(self) -> None:
        """
        The tests of C{x.py} are C{tests/test_x.py} or C{tests/unit/test_x.py}
        (C{test_check_x} for C{check/x.py}, or C{test_check} for the package
        as a whole), and its header names them first.
        """
        for path in (PROJECT / "twisted_caps").rglob("*.py"):
            if path.name in ("__init__.py", "__main__.py"):
                continue
            candidates = expected_tests(path)
            self.assertIn(named_tests(path)[0], candidates, path)
            for candidate in candidates[:2]:
                if PROJECT.joinpath(*candidate.split(".")).with_suffix(".py").exists():
                    self.assertIn(candidate, named_tests(path), path)

    def test_the_name_rule_would_see_a_misnamed_header(self) -> None:
        self.assertNotIn("tests.test_tap", expected_tests(PROJECT / "twisted_caps/core/limits.py"))
        self.assertEqual(
            expected_tests(PROJECT / "twisted_caps/check/probes.py")[-1], "tests.test_check"
        )


def named_tests(path: Path) -> list[str]:
    """The test modules C{path}'s first line names."""
    match = HEADER.match(path.read_text())
    assert match is not None, f"{path} names no test module in its first line"
    return match.group(1).split(",")


def expected_tests(path: Path) -> list[str]:
    """The names C{path}'s tests may have, by the rule of C{docs/layout.md}."""
    package = path.parent.name
    # A command is tested with what it commands: x_command.py with x.py.
    name = path.stem.removesuffix("_command")
    stem = f"{package}_{name}" if package in USER_PACKAGES else name
    names = [f"tests.test_{stem}", f"tests.unit.test_{stem}"]
    if package in USER_PACKAGES:
        names += [f"tests.test_{package}"]
    return names


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
            timeout=CHILD_TIMEOUT_SECONDS,
        )

    def test_fast_tier_runs_in_seconds_without_sockets_or_processes(self) -> None:
        """
        C{trial tests.unit} passes with sockets, child processes and sleeps
        forbidden, in seconds of CPU: a developer can loop on it.
        """
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        done = self.run_guarded(
            "import sys\nsys.argv = ['trial', 'tests.unit']\n"
            "from twisted.scripts.trial import run\nrun()"
        )
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu_seconds = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
        self.assertEqual(done.returncode, 0, done.stdout + done.stderr)
        self.assertRegex(done.stdout, r"PASSED \(successes=\d{2,}\)")
        self.assertLess(cpu_seconds, FAST_TIER_SECONDS)

    def test_the_guard_refuses_a_socket_a_process_and_a_sleep(self) -> None:
        """The check above catches a unit test that opens a socket, starts a process or sleeps."""
        for code in ("socket.socket()", "subprocess.run(['true'])"):
            done = self.run_guarded(code)
            self.assertNotEqual(done.returncode, 0, code)
            self.assertIn("the fast tier opened a socket or started a process", done.stderr)
        done = self.run_guarded("time.sleep(0)")
        self.assertNotEqual(done.returncode, 0)
        self.assertIn("the fast tier slept", done.stderr)
