"""
caps-autograder: the zip it writes, unpacked into a folder laid out as
Gradescope lays out /autograder, set up by its own setup.sh and run by its
own run_autograder on a good and on a broken submission; results.json
checked against the fields Gradescope documents.
"""

import atexit
import functools
import json
import os
import shlex
import shutil
import stat
import subprocess
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Any

from twisted.python import usage
from twisted.trial.unittest import SynchronousTestCase

from tests.servers import BIN
from twisted_caps.check.autograder import ROOT_VARIABLE, SETTINGS_NAME, SETUP_SH, AutograderSettings
from twisted_caps.check.autograder_command import AutograderOptions, BundleOptions

PROJECT = Path(__file__).resolve().parent.parent
EXAMPLES = PROJECT / "examples" / "grading"
STUDENT_SERVERS = PROJECT / "tests" / "student_servers"
#: The server command and weights of the zip under test: the lecture's
#: profile, a short timeout, tcp-concurrent worth 3 points.
SERVER = "python3 server.py {port}"
WEIGHTS = {"tcp-concurrent": 3.0}
#: The command the documentation shows; the zip under test is written by it
#: (with a shorter timeout, and the source tree named).
DOCUMENTED_BUNDLE = f'caps-autograder bundle --server "{SERVER}" --weight tcp-concurrent=3'
LECTURE_IDS = [
    "tcp-reply",
    "tcp-sentences",
    "tcp-concurrent",
    "udp-reply",
    "udp-independent",
    "tcp-survives-reset",
]
#: The environment of setup.sh and run_autograder: without the PYTHONPATH a
#: parallel test runner sets, which would hide what the zip installs.
ISOLATED = {name: value for name, value in os.environ.items() if name != "PYTHONPATH"}
#: Fields Gradescope's "Autograder Specifications" document for results.json.
TOP_FIELDS = {
    "score",
    "execution_time",
    "output",
    "output_format",
    "visibility",
    "stdout_visibility",
    "extra_data",
    "tests",
    "leaderboard",
}
TEST_FIELDS = {
    "score",
    "max_score",
    "status",
    "name",
    "name_format",
    "number",
    "output",
    "output_format",
    "tags",
    "visibility",
    "extra_data",
}
VISIBILITIES = {"hidden", "after_due_date", "after_published", "visible"}


@functools.cache
def built_autograder() -> tuple[Path, Path]:
    """
    Write the zip with the installed C{caps-autograder} (the wheel built
    from this checkout), unpack it into a fresh Gradescope root and run its
    setup.sh there: once per test process, since building the wheel and
    installing it take half a minute. Return the zip and the root.
    """
    scratch = Path(tempfile.mkdtemp(prefix="caps-autograder-test-"))
    atexit.register(shutil.rmtree, scratch, ignore_errors=True)
    bundle = scratch / "autograder.zip"
    done = subprocess.run(
        [
            os.path.join(BIN, "caps-autograder"),
            *shlex.split(DOCUMENTED_BUNDLE)[1:],
            *("--timeout", "1", "--source", str(PROJECT), "--output", str(bundle)),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env=ISOLATED,
    )
    if done.returncode:
        raise AssertionError(f"caps-autograder bundle failed: {done.stdout}{done.stderr}")
    root = scratch / "autograder"
    (root / "source").mkdir(parents=True)
    with zipfile.ZipFile(bundle) as archive:
        archive.extractall(root / "source")
    for name in ("setup.sh", "run_autograder"):
        (root / "source" / name).chmod(0o755)  # extractall drops the modes
    done = subprocess.run(
        ["bash", str(root / "source" / "setup.sh")],
        cwd=root / "source",
        capture_output=True,
        text=True,
        timeout=600,
        env={**ISOLATED, ROOT_VARIABLE: str(root)},
    )
    if done.returncode:
        raise AssertionError(f"setup.sh failed: {done.stdout}{done.stderr}")
    return bundle, root


def run_autograder(case: SynchronousTestCase, server: Path | None) -> tuple[dict[str, Any], str]:
    """
    Submit C{server} as C{server.py} in a fresh submission folder (None:
    submit nothing), run the zip's run_autograder as Gradescope does (from
    the root), and return results.json and what it printed.
    """
    _, root = built_autograder()
    for folder in ("submission", "results"):
        shutil.rmtree(root / folder, ignore_errors=True)
        (root / folder).mkdir()
    if server is not None:
        shutil.copy(server, root / "submission" / "server.py")
    started = time.monotonic()
    done = subprocess.run(
        [str(root / "source" / "run_autograder")],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=120,
        env={**ISOLATED, ROOT_VARIABLE: str(root)},
    )
    case.assertLess(time.monotonic() - started, 60)
    case.assertEqual(done.returncode, 0, done.stdout + done.stderr)
    with open(root / "results" / "results.json", encoding="utf-8") as document:
        results: dict[str, Any] = json.load(document)
    return results, done.stdout


def assert_gradescope_fields(case: SynchronousTestCase, results: dict[str, Any]) -> None:
    """C{results} has only documented fields, of the documented types, and adds up."""
    case.assertLessEqual(set(results), TOP_FIELDS)
    case.assertIsInstance(results["score"], float)
    case.assertIsInstance(results["output"], str)
    case.assertIsInstance(results["execution_time"], int)
    case.assertIn(results["stdout_visibility"], VISIBILITIES)
    for test in results["tests"]:
        case.assertLessEqual(set(test), TEST_FIELDS)
        case.assertEqual({type(test[key]) for key in ("score", "max_score")}, {float}, test["name"])
        case.assertIn(test["status"], {"passed", "failed"})
        case.assertIn(test["visibility"], VISIBILITIES)
        case.assertTrue(test["output"])
    case.assertEqual(results["score"], sum(test["score"] for test in results["tests"]))
    case.assertEqual([test["name"] for test in results["tests"]], LECTURE_IDS)
    maxima = {test["name"]: test["max_score"] for test in results["tests"]}
    case.assertEqual(maxima, {name: WEIGHTS.get(name, 1.0) for name in LECTURE_IDS})


class BundleTests(SynchronousTestCase):
    def test_the_zip_holds_what_gradescope_runs(self) -> None:
        """
        setup.sh and run_autograder at the root of the zip, executable;
        the settings as given; the twisted-caps wheel, which no package
        index has.
        """
        bundle, _ = built_autograder()
        with zipfile.ZipFile(bundle) as archive:
            names = archive.namelist()
            modes = {info.filename: info.external_attr >> 16 for info in archive.infolist()}
            settings = json.loads(archive.read(SETTINGS_NAME))
        self.assertEqual(names[:3], ["setup.sh", "run_autograder", SETTINGS_NAME])
        [wheel] = [name for name in names if name.endswith(".whl")]
        self.assertRegex(wheel, r"^wheels/twisted_caps-[0-9.]+-py3-none-any\.whl$")
        for script in ("setup.sh", "run_autograder"):
            self.assertTrue(modes[script] & stat.S_IXUSR, script)
        self.assertEqual(
            AutograderSettings.from_json(settings),
            AutograderSettings(
                ("python3", "server.py", "{port}"), "lecture", ("tcp", "udp"), 1.0, WEIGHTS
            ),
        )

    def test_a_wheel_given_is_bundled_as_it_is(self) -> None:
        """--wheel bundles that file, byte for byte, and builds nothing."""
        _, root = built_autograder()
        [wheel] = (root / "source" / "wheels").glob("*.whl")
        output = Path(self.mktemp()).resolve()
        done = subprocess.run(
            [
                os.path.join(BIN, "caps-autograder"),
                *("bundle", "--server", SERVER, "--wheel", str(wheel), "-o", str(output)),
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
        self.assertEqual(done.returncode, 0, done.stderr)
        self.assertEqual(
            done.stdout,
            f"wrote {output}: setup.sh, run_autograder, {wheel.name}; "
            "server python3 server.py {port}, profile lecture, TCP and UDP\n",
        )
        with zipfile.ZipFile(output) as archive:
            self.assertEqual(archive.read(f"wheels/{wheel.name}"), wheel.read_bytes())

    def test_the_documentation_shows_the_command_tested(self) -> None:
        for page in ("grading.md", "autograding.md"):
            self.assertIn(DOCUMENTED_BUNDLE, (PROJECT / "docs" / page).read_text(), page)


class RunAutograderTests(SynchronousTestCase):
    def test_a_good_submission_gets_every_point(self) -> None:
        """
        A threaded server passes the lecture's checks: every test passed,
        the weights applied (tcp-concurrent 3 points), 8 points in all.
        """
        results, printed = run_autograder(self, EXAMPLES / "threaded_server.py")
        assert_gradescope_fields(self, results)
        self.assertEqual(results["score"], 8.0)
        self.assertEqual({test["status"] for test in results["tests"]}, {"passed"})
        self.assertIn("6 passed, 0 failed", printed)

    def test_a_broken_submission_fails_every_test_and_says_why(self) -> None:
        """
        A server that dies before it listens scores 0, and the output
        students see names the exception it died of.
        """
        results, printed = run_autograder(self, STUDENT_SERVERS / "crashes_at_start.py")
        assert_gradescope_fields(self, results)
        self.assertEqual(results["score"], 0.0)
        self.assertEqual({test["status"] for test in results["tests"]}, {"failed"})
        self.assertIn("NameError: name 'serverSocket' is not defined", results["output"])
        self.assertIn("0 passed, 0 failed, 6 not graded", printed)

    def test_a_missing_submission_file_is_named(self) -> None:
        """A submission without server.py: the output says python3 cannot open it."""
        results, _ = run_autograder(self, None)
        assert_gradescope_fields(self, results)
        self.assertEqual(results["score"], 0.0)
        self.assertIn("can't open file", results["output"])
        self.assertIn("server.py", results["output"])


class BundleOptionTests(SynchronousTestCase):
    """Each bad option is a one-line usage error, before any wheel is built."""

    def refused(self, *argv: str) -> str:
        options = AutograderOptions()
        with self.assertRaises(usage.UsageError) as raised:
            options.parseOptions(["bundle", *argv])
        message = str(raised.exception)
        self.assertNotIn("\n", message)
        return message

    def test_the_server_command_needs_a_port(self) -> None:
        self.assertIn("has no {port}", self.refused("--server", "python3 server.py 12000"))

    def test_the_server_command_is_required(self) -> None:
        self.assertIn("--server is required", self.refused())

    def test_an_unbalanced_quote_is_refused(self) -> None:
        self.assertIn(
            "--server: No closing quotation", self.refused("--server", "python3 'a {port}")
        )

    def test_a_weight_of_a_check_not_run_is_refused(self) -> None:
        message = self.refused("--server", SERVER, "--weight", "udp-large=2")
        self.assertIn("udp-large is not run with --profile lecture", message)

    def test_an_unknown_profile_is_refused(self) -> None:
        self.assertIn("is not lecture or full", self.refused("--server", SERVER, "--profile", "x"))

    def test_source_and_wheel_exclude_each_other(self) -> None:
        message = self.refused("--server", SERVER, "--source", ".", "--wheel", __file__)
        self.assertIn("exclude each other", message)

    def test_a_wheel_that_is_not_twisted_caps_is_refused(self) -> None:
        message = self.refused("--server", SERVER, "--wheel", __file__)
        self.assertIn("'test_check_autograder.py' is not a twisted-caps wheel", message)

    def test_an_output_that_is_a_directory_is_refused(self) -> None:
        folder = self.mktemp()
        os.mkdir(folder)
        self.assertIn(
            f"--output: {folder} is a directory", self.refused("--server", SERVER, "-o", folder)
        )

    def test_an_output_in_no_directory_is_refused(self) -> None:
        message = self.refused("--server", SERVER, "-o", "/nonexistent/autograder.zip")
        self.assertIn("--output: no directory /nonexistent", message)

    def test_the_settings_carry_the_options(self) -> None:
        options = BundleOptions()
        options.parseOptions(["--server", SERVER, "--profile", "full", "--udp-only", "-t", "3"])
        self.assertEqual(
            options.settings,
            AutograderSettings(("python3", "server.py", "{port}"), "full", ("udp",), 3.0, {}),
        )

    def test_a_folder_that_is_not_a_source_tree_is_refused(self) -> None:
        """The real command: one line on standard error, exit status 1, no zip."""
        scratch = Path(self.mktemp())
        scratch.mkdir()
        done = subprocess.run(
            [
                os.path.join(BIN, "caps-autograder"),
                "bundle",
                *("--server", SERVER, "--source", str(scratch)),
                *("--output", str(scratch / "autograder.zip")),
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
        self.assertEqual(done.returncode, 1)
        self.assertRegex(done.stderr, r"^caps-autograder: .* is not a twisted-caps source tree")
        self.assertEqual(done.stderr.count("\n"), 1)
        self.assertFalse((scratch / "autograder.zip").exists())


class GradeOptionTests(SynchronousTestCase):
    """run_autograder in a folder not laid out as Gradescope's: one line, status 2."""

    def grade(self, root: Path) -> "subprocess.CompletedProcess[str]":
        return subprocess.run(
            [os.path.join(BIN, "caps-autograder"), "grade", "--root", str(root)],
            capture_output=True,
            text=True,
            timeout=60,
        )

    def test_a_root_without_a_submission_folder_is_refused(self) -> None:
        root = Path(self.mktemp())
        (root / "source").mkdir(parents=True)
        done = self.grade(root)
        self.assertEqual(done.returncode, 2)
        self.assertEqual(
            done.stderr, f"caps-autograder: no directory {root / 'submission'} (see --help)\n"
        )

    def test_a_source_folder_without_the_settings_is_refused(self) -> None:
        root = Path(self.mktemp())
        for folder in ("source", "submission"):
            (root / folder).mkdir(parents=True)
        done = self.grade(root)
        self.assertEqual(done.returncode, 2)
        self.assertIn(f"no {root / 'source' / SETTINGS_NAME}: unpack the zip there", done.stderr)
        self.assertEqual(done.stderr.count("\n"), 1)


class SetupTests(SynchronousTestCase):
    def test_a_python_older_than_3_10_stops_setup_in_one_line(self) -> None:
        """
        An image whose python3 is 3.8 (an older Ubuntu) stops setup.sh with
        one line naming the version and the base image to choose.
        """
        scratch = Path(self.mktemp()).resolve()
        fake = scratch / "bin"
        fake.mkdir(parents=True)
        (fake / "python3").write_text(
            "#!/bin/sh\n"
            "# python3 of an Ubuntu 20.04 image: it has venv, and is 3.8.\n"
            'case "$*" in\n'
            '    -V) echo "Python 3.8.10" ;;\n'
            "    *version_info*) exit 1 ;;\n"
            "esac\n"
        )
        (fake / "python3").chmod(0o755)
        (scratch / "setup.sh").write_text(SETUP_SH)
        done = subprocess.run(
            ["bash", str(scratch / "setup.sh")],
            capture_output=True,
            text=True,
            timeout=60,
            env={**ISOLATED, "PATH": f"{fake}:/usr/bin:/bin", ROOT_VARIABLE: str(scratch)},
        )
        self.assertEqual(done.returncode, 1)
        self.assertEqual(
            done.stderr,
            "twisted-caps needs Python 3.10 or later; this image has Python 3.8.10: "
            "choose an Ubuntu 22.04 base image or later\n",
        )
        self.assertFalse((scratch / "caps-venv").exists())
