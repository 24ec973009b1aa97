"""The ports a process listens on, read from /proc, as a real server binds them."""

import subprocess
import sys
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from tests.servers import wait_for
from twisted_caps.check.listening import listening_ports, session_processes
from twisted_caps.check.started_server import free_port

SELECT_SERVER = Path(__file__).resolve().parent.parent / "examples" / "grading" / "select_server.py"


class ListeningTests(SynchronousTestCase):
    def test_the_ports_a_session_listens_on(self) -> None:
        """/proc tells the TCP and UDP ports a process listens on."""
        port = free_port()
        server = subprocess.Popen(
            [sys.executable, str(SELECT_SERVER), str(port)],
            stdout=subprocess.DEVNULL,
            start_new_session=True,
        )
        self.addCleanup(server.wait, 10)
        self.addCleanup(server.kill)
        wait_for(lambda: ("TCP", port) in listening_ports(session_processes(server.pid)))
        self.assertEqual(
            listening_ports(session_processes(server.pid)), {("TCP", port), ("UDP", port)}
        )
