"""
Errors at start-up, as the terminal shows them: a daemonizing twistd
prints the service's one line, whole (no bytes literal, no class path, no
cut at 100 bytes), exits with status 1, logs the same line and leaves no
pidfile; a port below 1024 refused for lack of privilege says how to get
it.
"""

import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

from twisted.scripts import _twistd_unix
from twisted.trial.unittest import SkipTest, SynchronousTestCase, TestCase

from tests.servers import BIN, require_program, twistd, wait_for
from twisted_caps._twisted import startup_errors
from twisted_caps._twisted.startup_errors import report_start_up_errors_whole, start_up_error_line
from twisted_caps.serving.service import ListenError

LOOPBACK = ("--no-udp", "-i", "127.0.0.1")
PRIVILEGED_PORT_HINT = (
    " (ports below 1024 need root: start as root with twistd --uid, which binds,"
    " then drops privileges, or let systemd's sockets bind it; see docs/deploying.md)"
)


def without_bind_privilege() -> list[str]:
    """A command prefix that runs a program without CAP_NET_BIND_SERVICE, even as root."""
    return [require_program("setpriv"), "--bounding-set", "-net_bind_service"]


class DaemonizedStartUpErrorTests(TestCase):
    def start(
        self,
        *argv: str,
        folder: str | None = None,
        before: tuple[str, ...] = (),
        twistd_options: tuple[str, ...] = (),
    ) -> tuple[subprocess.CompletedProcess[bytes], str, str]:
        """Run a daemonizing twistd caps that fails to start; return it, its pidfile and log."""
        folder = folder or os.path.abspath(self.mktemp())
        os.makedirs(folder, exist_ok=True)
        pidfile, logfile = os.path.join(folder, "caps.pid"), os.path.join(folder, "caps.log")
        command = [os.path.join(BIN, "twistd"), "--pidfile", pidfile, "--logfile", logfile]
        done = subprocess.run(
            [*before, *command, *twistd_options, "caps", *argv],
            capture_output=True,
            timeout=60,
            stdin=subprocess.DEVNULL,
        )
        return done, pidfile, logfile

    def assert_reported(
        self, done: subprocess.CompletedProcess[bytes], pidfile: str, logfile: str, line: str
    ) -> None:
        self.assertEqual((done.returncode, done.stdout), (1, b""))
        self.assertEqual(done.stderr.decode(), line + "\n")
        # The daemon removes its pidfile and logs its line just after it
        # reports to the terminal.
        wait_for(lambda: not os.path.exists(pidfile))
        wait_for(lambda: line.encode() in Path(logfile).read_bytes())
        self.assertNotIn(b"Traceback", Path(logfile).read_bytes())

    def test_port_in_use_is_one_plain_line(self) -> None:
        taken = socket.socket()
        self.addCleanup(taken.close)
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done, pidfile, logfile = self.start(*LOOPBACK, "-p", str(port))
        line = f"caps: TCP 127.0.0.1:{port}: Address already in use"
        self.assert_reported(done, pidfile, logfile, line)
        self.assertNotIn(b"An error has occurred", done.stderr)

    def test_privileged_port_without_the_privilege_says_how_to_get_it(self) -> None:
        done, pidfile, logfile = self.start(
            "--no-udp", "-p", "80", before=tuple(without_bind_privilege())
        )
        line = "caps: TCP 0.0.0.0:80: Permission denied" + PRIVILEGED_PORT_HINT
        self.assert_reported(done, pidfile, logfile, line)

    def test_a_line_longer_than_100_bytes_comes_whole(self) -> None:
        if os.geteuid() != 0:
            raise SkipTest("changing user needs root")
        nobody = pwd.getpwnam("nobody")
        # A folder nobody may not write to: the pidfile would be left behind.
        folder = tempfile.mkdtemp(prefix="caps-pidfile-")
        self.addCleanup(shutil.rmtree, folder)
        os.chmod(folder, 0o755)
        user = ("--uid", "nobody", "--gid", str(nobody.pw_gid))
        done, pidfile, logfile = self.start(
            *LOOPBACK, "-p", "0", folder=folder, twistd_options=user
        )
        line = (
            f"caps: --pidfile {pidfile}: --uid nobody could not remove it at exit"
            f" (no write permission on {folder}); use a folder that user may write"
            " to, e.g. /run/caps/caps.pid (systemd: RuntimeDirectory=caps)"
        )
        self.assertGreater(len(line), 100)
        self.assert_reported(done, pidfile, logfile, line)


class ForegroundStartUpErrorTests(TestCase):
    def test_privileged_port_without_the_privilege_says_how_to_get_it(self) -> None:
        done = subprocess.run(
            [*without_bind_privilege(), *twistd("--no-udp", "-p", "80")],
            capture_output=True,
            timeout=60,
            stdin=subprocess.DEVNULL,
        )
        line = b"caps: TCP 0.0.0.0:80: Permission denied" + PRIVILEGED_PORT_HINT.encode()
        # In the foreground the log is the terminal: the line is a log line.
        output = (done.stdout + done.stderr).splitlines()
        self.assertEqual(done.returncode, 1)
        self.assertEqual(
            [entry for entry in output if b"Permission denied" in entry],
            [entry for entry in output if entry.endswith(b"] " + line)],
        )
        self.assertEqual(len([entry for entry in output if entry.endswith(line)]), 1)
        self.assertNotIn(b"Traceback", done.stdout + done.stderr)


class ReportTests(SynchronousTestCase):
    def test_the_service_s_own_error_is_its_message(self) -> None:
        error = ListenError("caps: TCP 0.0.0.0:1200: Address already in use")
        self.assertEqual(start_up_error_line(error), str(error))

    def test_any_other_error_names_its_class_on_one_line(self) -> None:
        line = start_up_error_line(RuntimeError("first\nsecond"))
        self.assertEqual(line, "caps: start-up failed: RuntimeError: first\\nsecond")

    def test_a_report_without_a_reason_is_still_one_line(self) -> None:
        read, write = os.pipe()
        self.addCleanup(os.close, read)
        os.write(write, b"")
        os.close(write)
        captured = Path(self.mktemp())
        with captured.open("w") as stderr:
            self.patch(sys, "__stderr__", stderr)
            status = startup_errors._wait_for_start(None, read)
        self.assertEqual(status, 1)
        self.assertEqual(
            captured.read_text(),
            "caps: the daemon ended during start-up without a reason (see its log file)\n",
        )

    def test_a_twistd_without_the_replaced_methods_is_left_alone(self) -> None:
        class OtherRunner:
            pass

        self.patch(_twistd_unix, "UnixApplicationRunner", OtherRunner)
        self.assertFalse(report_start_up_errors_whole())
        self.assertFalse(hasattr(OtherRunner, "_waitForStart"))
