"""The shipped deployment files and examples agree with the daemon's defaults."""

import configparser
import os
import re

from twisted.trial.unittest import SynchronousTestCase

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
