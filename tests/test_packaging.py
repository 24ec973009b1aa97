"""
Plugin discovery after each way of installing the project, in a fresh
virtual environment: twistd finds caps only in a twisted/plugins/ folder,
and setuptools' default editable install does not provide one.
"""

import os
import re
import shutil
import subprocess
import venv
import zipfile
from fnmatch import fnmatch
from pathlib import Path

from twisted.trial.unittest import TestCase

from tests.servers import course_tcp_client, start_process
from twisted_caps import __version__

PROJECT = Path(__file__).resolve().parent.parent
FORBIDDEN = ("twisted/__init__.py", "twisted/plugins/__init__.py")


#: The environment of the new virtual environment's programs: without the
#: PYTHONPATH a parallel test runner (trial -j) sets, which would make pip
#: find everything installed already and twistd import the checkout.
ISOLATED = {name: value for name, value in os.environ.items() if name != "PYTHONPATH"}


class InstalledPluginTests(TestCase):
    def setUp(self) -> None:
        self.environment = Path(self.mktemp()).resolve()
        venv.create(self.environment, with_pip=True)

    def pip(self, *argv: str, project: Path = PROJECT) -> str:
        done = subprocess.run(
            [
                str(self.environment / "bin" / "python"),
                "-m",
                "pip",
                "--disable-pip-version-check",
                "--no-input",
                *argv,
            ],
            capture_output=True,
            timeout=600,
            cwd=project,
            env=ISOLATED,
        )
        if done.returncode:
            raise AssertionError(
                f"pip {argv} failed:\n{done.stdout.decode()}{done.stderr.decode()}"
            )
        return done.stdout.decode()

    def run_in_environment(self, command: list[str], cwd: Path) -> None:
        """Run C{command} from the new environment's C{bin/} first on C{PATH}, in C{cwd}."""
        path = f"{self.environment / 'bin'}{os.pathsep}{os.environ['PATH']}"
        done = subprocess.run(
            command, capture_output=True, timeout=600, cwd=cwd, env={**ISOLATED, "PATH": path}
        )
        if done.returncode:
            raise AssertionError(f"{command} failed:\n{done.stdout.decode()}{done.stderr.decode()}")

    def copy_of_the_tree(self) -> Path:
        """The project as a Docker build copies it: without what .dockerignore names."""
        patterns = [
            line.removeprefix("**/")
            for line in (PROJECT / ".dockerignore").read_text().splitlines()
            if line and not line.startswith("#")
        ]

        def ignored(folder: str, names: list[str]) -> set[str]:
            here = Path(folder).relative_to(PROJECT)
            return {
                name
                for name in names
                for pattern in patterns
                if fnmatch(name, pattern) or fnmatch((here / name).as_posix(), pattern)
            }

        copy = Path(self.mktemp()).resolve()
        shutil.copytree(PROJECT, copy, ignore=ignored)
        return copy

    def twistd_help(self) -> str:
        done = subprocess.run(
            [str(self.environment / "bin" / "twistd"), "--help"],
            capture_output=True,
            timeout=60,
            env=ISOLATED,
        )
        return done.stdout.decode()

    def assertInstalledAndServing(self) -> None:
        self.assertIn(" caps ", self.twistd_help())
        listed = [line.strip() for line in self.pip("show", "--files", "twisted-caps").splitlines()]
        for forbidden in FORBIDDEN:
            # Whole paths: twisted_caps/_twisted/__init__.py is not twisted/__init__.py.
            self.assertNotIn(forbidden, listed)
        daemon = start_process(
            self,
            [
                "env",
                "-u",
                "PYTHONPATH",
                str(self.environment / "bin" / "twistd"),
                "-n",
                "--pidfile=",
                "caps",
                "-i",
                "127.0.0.1",
                "-p",
                "0",
            ],
        )
        assert daemon.tcp_port
        self.assertEqual(course_tcp_client(daemon.tcp_port, b"installed"), b"INSTALLED")
        daemon.stop()

    def assertUninstallRemovesThePlugin(self) -> None:
        self.pip("uninstall", "--yes", "twisted-caps")
        help_text = self.twistd_help()
        self.assertNotIn(" caps ", help_text)
        self.assertIn(" web ", help_text)  # Twisted's own plugins are untouched.

    def test_pip_install_from_source(self) -> None:
        self.pip("install", ".")
        self.assertInstalledAndServing()
        self.assertUninstallRemovesThePlugin()

    def test_built_wheel(self) -> None:
        """The wheel and sdist C{python -m build} makes, as docs/deploying.md builds them."""
        copy = self.copy_of_the_tree()
        self.pip("install", "build")
        self.run_in_environment(["python", "-m", "build"], cwd=copy)
        [wheel] = (copy / "dist").glob("twisted_caps-*.whl")
        [sdist] = (copy / "dist").glob("twisted_caps-*.tar.gz")
        self.assertEqual(wheel.name, f"twisted_caps-{__version__}-py3-none-any.whl")
        self.assertEqual(sdist.name, f"twisted_caps-{__version__}.tar.gz")
        names = zipfile.ZipFile(wheel).namelist()
        self.assertIn("twisted/plugins/caps_plugin.py", names)
        # Type checkers of users' tests read the test kit's hints (PEP 561),
        # and the fenced Twisted internals ship with the rest.
        self.assertIn("twisted_caps/py.typed", names)
        self.assertIn("twisted_caps/_twisted/immediate.py", names)
        for forbidden in FORBIDDEN:
            self.assertNotIn(forbidden, names)
        self.pip("install", str(wheel))
        self.assertInstalledAndServing()
        self.assertUninstallRemovesThePlugin()

    def test_the_kubernetes_image_installs_from_the_tree(self) -> None:
        """
        The Dockerfile's steps, run here: its copy of the tree (without what
        .dockerignore names), then each RUN, with the new environment's
        programs for the image's.
        """
        copy = self.copy_of_the_tree()
        self.assertFalse((copy / ".git").exists())
        self.assertTrue((copy / "twisted_plugins" / "caps_plugin.py").exists())
        dockerfile = (PROJECT / "deploy" / "kubernetes" / "Dockerfile").read_text()
        [target] = re.findall(r"^COPY \. (\S+)$", dockerfile, re.MULTILINE)
        runs = re.findall(r"^RUN (.+)$", dockerfile, re.MULTILINE)
        self.assertEqual(len(runs), 2)
        for run in runs:
            self.run_in_environment(["sh", "-c", run.replace(target, str(copy))], cwd=copy)
        self.assertInstalledAndServing()

    def test_strict_editable_install(self) -> None:
        """
        From a copy of the sources: a strict editable install rebuilds
        C{build/__editable__...} where it runs, and the checkout's own
        editable install imports from there, under tests running alongside.
        """
        copy = Path(self.mktemp()).resolve()
        skipped = (".venv*", "build", ".git", "*.egg-info", "__pycache__", "_trial_temp*")
        shutil.copytree(PROJECT, copy, ignore=shutil.ignore_patterns(*skipped))
        self.pip("install", "-e", ".", "--config-settings", "editable_mode=strict", project=copy)
        self.assertInstalledAndServing()
        self.assertUninstallRemovesThePlugin()
