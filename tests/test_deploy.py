"""The shipped deployment files and examples agree with the daemon's defaults."""

import configparser
import os
import re

from twisted.trial.unittest import SynchronousTestCase

from twisted_caps import __version__
from twisted_caps.operating.tap import BACKLOG, DEFAULT_PORT, Options

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def read(*path: str) -> str:
    with open(os.path.join(ROOT, *path)) as file:
        return file.read()


class DeployConsistencyTests(SynchronousTestCase):
    def test_systemd_socket_queues_as_many_as_the_daemon(self) -> None:
        """caps.socket's Backlog is the daemon's 1024, on which a burst of clients relies."""
        unit = configparser.ConfigParser(strict=False)
        unit.read_string(read("deploy", "systemd", "caps.socket"))
        self.assertEqual(int(unit["Socket"]["Backlog"]), BACKLOG)
        self.assertTrue(unit["Socket"]["ListenStream"].endswith(f":{DEFAULT_PORT}"))

    def test_student_client_defaults_to_the_servers_port(self) -> None:
        """The course's client, run with no arguments, reaches the server on 1200."""
        source = read("examples", "student_client.py")
        [default] = re.findall(r"else (\d+)", source)
        self.assertEqual(int(default), DEFAULT_PORT)

    def test_every_shipped_caps_command_line_parses(self) -> None:
        """The caps options in the unit, the HAProxy recipe and the manifest are all valid."""
        commands = [
            line.split(" caps ", 1)[1]
            for name in (("systemd", "caps.service"), ("haproxy", "haproxy.cfg"))
            for line in read("deploy", *name).splitlines()
            if " caps " in line and "twistd" in line
        ]
        self.assertEqual(len(commands), 2)
        for command in commands:
            options = Options()
            if "systemd:" in command:
                command = command.replace("systemd:domain=INET:index=0", "tcp:0")
            options.parseOptions(command.split())
            self.assertIn(DEFAULT_PORT, [u.port for u in options.config.udp])


#: A command that installs twisted-caps by its name, from a package index.
INSTALL_BY_NAME = re.compile(r"pip3? install\s+(?:-\S+\s+)*['\"]?twisted-caps\b")
#: The files that tell a reader how to install.
INSTALL_TEXTS = (
    ("README.md",),
    ("docs", "index.md"),
    ("docs", "deploying.md"),
    ("docs", "grading.md"),
    ("docs", "operating.md"),
    ("deploy", "systemd", "caps.service"),
    ("deploy", "kubernetes", "caps.yaml"),
    ("deploy", "kubernetes", "Dockerfile"),
)


class InstallTextTests(SynchronousTestCase):
    """
    twisted-caps is on no package index yet: each install the files tell of
    works today, and C{pip install twisted-caps} appears only as what will
    work once it is published.
    """

    def test_install_by_name_is_said_only_as_once_published(self) -> None:
        seen = 0
        for path in INSTALL_TEXTS:
            lines = read(*path).splitlines()
            for number, line in enumerate(lines):
                if INSTALL_BY_NAME.search(line):
                    seen += 1
                    around = " ".join(lines[max(0, number - 2) : number + 3])
                    self.assertIn("published", around, f"{'/'.join(path)}:{number + 1}")
        self.assertGreaterEqual(seen, 3)

    def test_the_checks_would_see_an_install_by_name(self) -> None:
        self.assertRegex("python3 -m pip install -U 'twisted-caps[tls]'", INSTALL_BY_NAME)
        self.assertNotRegex("/opt/twisted-caps/bin/pip install '.[tls]'", INSTALL_BY_NAME)

    def test_the_unit_installs_from_a_clone_where_it_runs_from(self) -> None:
        unit = read("deploy", "systemd", "caps.service")
        self.assertIn("/opt/twisted-caps/bin/pip install '.[tls]'", unit)
        self.assertIn("ExecStart=/opt/twisted-caps/bin/twistd ", unit)

    def test_deploying_builds_the_wheel_it_installs(self) -> None:
        """The wheel's name in the pages is the one C{python -m build} makes of this version."""
        wheel = f"twisted_caps-{__version__}-py3-none-any.whl"
        deploying = read("docs", "deploying.md")
        self.assertIn("/opt/twisted-caps/bin/pip install '.[tls]'", deploying)
        self.assertIn(".venv/bin/python -m build\n", deploying)
        self.assertIn(f"pip install '{wheel}[tls]'", deploying)
        # Gradescope's zip carries a wheel built from the clone, not a name to install.
        self.assertIn("the twisted-caps wheel, built from the clone", read("docs", "grading.md"))
