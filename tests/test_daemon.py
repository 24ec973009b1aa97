"""
Tests for L{twisted_caps.operating.daemon}, through C{twistd} processes: the log file
rotated by the real logrotate with the shipped recipe, twistd's own size
rotation switched off, TLS certificates reloaded, and the pidfile: none in
the foreground, removed at exit under C{--uid}.
"""

import grp
import os
import pwd
import re
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import threading
from pathlib import Path

from twisted.trial.unittest import SkipTest, SynchronousTestCase, TestCase

from tests.certificates import make_server_files
from tests.servers import (
    BIN,
    HOST,
    alive,
    course_tcp_client,
    course_udp_client,
    require_program,
    start_daemonized,
    start_process,
    wait_for,
)
from twisted_caps.operating.daemon import HostSettings
from twisted_caps.serving.logs import LOG_FILE_MODE

PROJECT = Path(__file__).resolve().parent.parent
RECIPE = PROJECT / "deploy" / "logrotate" / "caps"
LOOPBACK = ("-i", HOST, "-p", "0")
NO_UDP = ("--no-udp",)
CLOSE_LINE = re.compile(rb"caps: 127\.0\.0\.1 closed after")


def close_lines(*paths: str) -> int:
    """How many connection close lines the files hold in all."""
    total = 0
    for path in paths:
        with open(path, "rb") as log:
            total += len(CLOSE_LINE.findall(log.read()))
    return total


class LogRotationTests(TestCase):
    def test_shipped_logrotate_recipe_loses_no_line(self) -> None:
        """
        The real logrotate, with deploy/logrotate/caps pointed at a
        daemonized server, moves the log away while clients keep
        connecting: the server writes to the new file afterwards, and every
        connection's close line is in one of the two files.
        """
        logrotate = require_program("logrotate")
        daemon = start_daemonized(self, *LOOPBACK)
        recipe = RECIPE.read_text()
        recipe = recipe.replace("/var/log/caps/caps.log", daemon.logfile)
        recipe = recipe.replace("/run/caps/caps.pid", daemon.pidfile)
        recipe = recipe.replace("create 0640 root adm", "create 0640")
        config = os.path.abspath(self.mktemp())
        Path(config).write_text(recipe)
        port = daemon.ports["TCP"]
        connections = 0
        stop = threading.Event()

        def connect_until_stopped() -> None:
            nonlocal connections
            while not stop.is_set():
                assert course_tcp_client(port, b"rotate") == b"ROTATE"
                connections += 1

        client = threading.Thread(target=connect_until_stopped)
        client.start()
        try:
            wait_for(lambda: connections >= 50)
            rotated = subprocess.run(
                [logrotate, "-f", "-s", os.path.abspath(self.mktemp()), config],
                capture_output=True,
                timeout=60,
            )
            self.assertEqual(rotated.returncode, 0, rotated.stderr)
            wait_for(lambda: b"caps: log file reopened" in daemon.log)
            after = connections
            wait_for(lambda: connections >= after + 50)
        finally:
            stop.set()
            client.join(30)
        old = daemon.logfile + ".1"
        wait_for(lambda: close_lines(old, daemon.logfile) == connections)
        self.assertGreater(close_lines(daemon.logfile), 0)
        self.assertIn(b"caps: log file reopened", daemon.log)
        self.assertNotIn(b"caps: log file reopened", Path(old).read_bytes())
        self.assertEqual(os.stat(daemon.logfile).st_mode & 0o777, 0o640)
        os.kill(daemon.pid, signal.SIGTERM)
        wait_for(lambda: not alive(daemon.pid))
        self.assertFalse(os.path.exists(daemon.pidfile))
        self.assertNotIn(b"Traceback", Path(old).read_bytes() + daemon.log)

    def test_twistd_does_not_rotate_by_size(self) -> None:
        """
        twistd's own log file renames itself past 1,000,000 bytes; the
        server's never does: rotation is the operator's tool's job.
        """
        directory = os.path.abspath(self.mktemp())
        os.makedirs(directory)
        logfile = os.path.join(directory, "caps.log")
        Path(logfile).write_bytes(b"x" * 1_000_001 + b"\n")
        daemon = start_daemonized(self, *LOOPBACK, directory=directory)
        self.assertEqual(course_tcp_client(daemon.ports["TCP"], b"size"), b"SIZE")
        wait_for(lambda: CLOSE_LINE.search(daemon.log))
        self.assertEqual(sorted(os.listdir(directory)), ["caps.log", "caps.pid"])
        self.assertTrue(daemon.log.startswith(b"x" * 1_000_001))

    def test_new_log_file_has_one_mode(self) -> None:
        """A log file the server creates has mode 0640, daemonized or not."""
        daemon = start_daemonized(self, *LOOPBACK)
        self.assertEqual(os.stat(daemon.logfile).st_mode & 0o777, LOG_FILE_MODE)
        os.rename(daemon.logfile, daemon.logfile + ".old")
        os.kill(daemon.pid, signal.SIGUSR1)
        wait_for(lambda: os.path.exists(daemon.logfile) and b"reopened" in daemon.log)
        self.assertEqual(os.stat(daemon.logfile).st_mode & 0o777, LOG_FILE_MODE)

    def test_failed_reopen_keeps_logging_to_the_old_file(self) -> None:
        """
        If the log file cannot be opened again (here, its folder is gone),
        the server says so in one line and keeps writing to the old file.
        """
        directory = os.path.abspath(self.mktemp())
        daemon = start_daemonized(self, *LOOPBACK, directory=directory)
        moved = directory + ".moved"
        os.rename(directory, moved)
        self.addCleanup(lambda: os.rename(moved, directory))
        os.kill(daemon.pid, signal.SIGUSR1)
        old = Path(moved, "caps.log")
        wait_for(lambda: b"could not reopen the log file" in old.read_bytes())
        self.assertEqual(course_tcp_client(daemon.ports["TCP"], b"still"), b"STILL")
        wait_for(lambda: CLOSE_LINE.search(old.read_bytes()))
        self.assertNotIn(b"Traceback", old.read_bytes())


class LogFileErrorTests(TestCase):
    def test_log_file_that_cannot_be_opened_is_one_line(self) -> None:
        """A --logfile in a missing folder, or a folder: one line, exit status 1."""
        folder = os.path.abspath(self.mktemp())
        os.makedirs(folder)
        for logfile, reason in (
            (os.path.join(folder, "missing", "caps.log"), b"No such file or directory"),
            (folder, b"Is a directory"),
        ):
            for foreground in (("-n",), ()):
                done = subprocess.run(
                    [
                        os.path.join(BIN, "twistd"),
                        *foreground,
                        "--pidfile=",
                        "--logfile",
                        logfile,
                        "caps",
                        *LOOPBACK,
                    ],
                    capture_output=True,
                    timeout=60,
                    stdin=subprocess.DEVNULL,
                )
                self.assertEqual(done.returncode, 1)
                self.assertEqual(
                    done.stderr.splitlines(),
                    [b"caps: --logfile " + logfile.encode() + b": " + reason],
                )


class TLSReloadTests(TestCase):
    def test_renewed_certificate_served_to_new_connections(self) -> None:
        """
        After the certificate and key files are replaced and SIGHUP sent,
        new connections get the new certificate, a connection opened before
        keeps its session, and files that no longer parse keep the renewed
        certificate in force with one log line.
        """
        directory = os.path.abspath(self.mktemp())
        first = make_server_files(directory)
        listener = f"ssl:0:interface={HOST}:privateKey={first.key}:certKey={first.certificate}"
        daemon = start_process(
            self,
            [
                os.path.join(BIN, "twistd"),
                "-n",
                "--pidfile=",
                "caps",
                "--tcp",
                listener,
                "--no-udp",
            ],
            expect=("TCP",),
        )
        assert daemon.tcp_port
        port = daemon.tcp_port
        self.assertEqual(served_certificate(port), pem_to_der(first.certificate))
        held = open_tls(port)
        self.addCleanup(held.close)
        renewed = make_server_files(directory + ".renewed")
        shutil.copyfile(renewed.certificate, first.certificate)
        shutil.copyfile(renewed.key, first.key)
        daemon.process.send_signal(signal.SIGHUP)
        wait_for(lambda: b"caps: TLS certificate reloaded" in daemon.output)
        self.assertEqual(served_certificate(port), pem_to_der(renewed.certificate))
        held.sendall(b"still here\n")
        self.assertEqual(held.recv(1024), b"STILL HERE\n")

        Path(first.certificate).write_text("not a certificate\n")
        daemon.process.send_signal(signal.SIGHUP)
        wait_for(lambda: b"caps: TLS reload failed" in daemon.output)
        self.assertEqual(served_certificate(port), pem_to_der(renewed.certificate))
        [failure] = [line for line in daemon.output.splitlines() if b"TLS reload failed" in line]
        self.assertIn(first.certificate.encode(), failure)
        self.assertNotIn(b"Traceback", daemon.output)
        self.assertNotIn(b"[(", failure)


def open_tls(port: int) -> ssl.SSLSocket:
    """A TLS connection that does not check the certificate (the tests compare it)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context.wrap_socket(socket.create_connection((HOST, port), timeout=10))


def served_certificate(port: int) -> bytes:
    """The DER certificate a new TLS connection to C{port} is shown."""
    with open_tls(port) as client:
        der = client.getpeercert(binary_form=True)
    assert der is not None
    return der


def pem_to_der(path: str) -> bytes:
    return ssl.PEM_cert_to_DER_cert(Path(path).read_text())


class ForegroundPidfileTests(TestCase):
    def test_two_foreground_servers_from_one_folder(self) -> None:
        """
        C{twistd -n caps} writes no twistd.pid into the current folder, so a
        second server started from the same folder is not refused.
        """
        folder = os.path.abspath(self.mktemp())
        os.makedirs(folder)
        command = ["sh", "-c", f'cd "{folder}" && exec "{BIN}/twistd" -n caps "$@"', "sh"]
        first = start_process(self, [*command, *LOOPBACK])
        second = start_process(self, [*command, *LOOPBACK])
        for daemon in (first, second):
            assert daemon.tcp_port and daemon.udp_port
            self.assertEqual(course_tcp_client(daemon.tcp_port, b"twice"), b"TWICE")
            self.assertEqual(course_udp_client(daemon.udp_port, b"twice"), b"TWICE")
        self.assertEqual(os.listdir(folder), [])

    def test_a_named_pidfile_is_kept_in_the_foreground(self) -> None:
        """An explicit --pidfile still gets a pidfile, removed at exit."""
        pidfile = os.path.abspath(self.mktemp())
        command = [os.path.join(BIN, "twistd"), "-n", "--pidfile", pidfile, "caps", *LOOPBACK]
        daemon = start_process(self, command)
        self.assertEqual(Path(pidfile).read_text(), str(daemon.process.pid))
        self.assertEqual(daemon.stop(), -signal.SIGTERM)
        self.assertFalse(os.path.exists(pidfile))


class PrivilegesPidfileTests(TestCase):
    def setUp(self) -> None:
        if os.geteuid() != 0:
            raise SkipTest("changing user needs root")
        self.nobody = pwd.getpwnam("nobody")
        # Under /tmp, not the test folder: nobody must be able to reach it.
        self.folder = tempfile.mkdtemp(prefix="caps-pidfile-")
        self.addCleanup(shutil.rmtree, self.folder)
        self.user = ("--uid", "nobody", "--gid", str(self.nobody.pw_gid))

    def test_pidfile_in_a_sticky_folder_is_removed_at_exit(self) -> None:
        """
        Under C{--uid nobody}, with the pidfile in a world-writable sticky
        folder (as /tmp), SIGTERM ends the server and the pidfile is gone.
        """
        os.chmod(self.folder, 0o1777)
        daemon = start_daemonized(self, *LOOPBACK, directory=self.folder, twistd_options=self.user)
        wait_for(lambda: os.stat(f"/proc/{daemon.pid}").st_uid == self.nobody.pw_uid)
        self.assertEqual(course_tcp_client(daemon.ports["TCP"], b"nobody"), b"NOBODY")
        os.kill(daemon.pid, signal.SIGTERM)
        wait_for(lambda: not alive(daemon.pid))
        self.assertFalse(os.path.exists(daemon.pidfile))
        self.assertNotIn(b"No permission to delete pid file", daemon.log)

    def test_log_reopened_as_the_user_after_logrotate_creates_it(self) -> None:
        """
        Under C{--uid nobody}, the shipped recipe with its create line
        naming nobody: after the rotation, the server (now nobody) opens the
        new file and writes there.
        """
        logrotate = require_program("logrotate")
        os.chmod(self.folder, 0o1777)
        daemon = start_daemonized(self, *LOOPBACK, directory=self.folder, twistd_options=self.user)
        wait_for(lambda: os.stat(f"/proc/{daemon.pid}").st_uid == self.nobody.pw_uid)
        group = grp.getgrgid(self.nobody.pw_gid).gr_name
        recipe = RECIPE.read_text()
        recipe = recipe.replace("/var/log/caps/caps.log", daemon.logfile)
        recipe = recipe.replace("/run/caps/caps.pid", daemon.pidfile)
        recipe = recipe.replace(
            "create 0640 root adm", f"create 0640 nobody {group}\n    su root root"
        )
        config = os.path.join(self.folder, "logrotate.conf")
        Path(config).write_text(recipe)
        rotated = subprocess.run(
            [logrotate, "-f", "-s", os.path.join(self.folder, "state"), config],
            capture_output=True,
            timeout=60,
        )
        self.assertEqual(rotated.returncode, 0, rotated.stderr)
        wait_for(lambda: b"caps: log file reopened" in daemon.log)
        self.assertEqual(os.stat(daemon.logfile).st_uid, self.nobody.pw_uid)
        self.assertEqual(course_tcp_client(daemon.ports["TCP"], b"rotated"), b"ROTATED")
        wait_for(lambda: CLOSE_LINE.search(daemon.log))

    def test_pidfile_the_user_could_not_remove_is_refused(self) -> None:
        """
        A pidfile in a folder that C{--uid nobody} may not write to would be
        left behind at exit: the server refuses to start, in one line, and
        leaves no pidfile.
        """
        os.chmod(self.folder, 0o755)
        pidfile = os.path.join(self.folder, "caps.pid")
        logfile = os.path.join(self.folder, "caps.log")
        done = subprocess.run(
            [
                os.path.join(BIN, "twistd"),
                "-n",
                "--pidfile",
                pidfile,
                "--logfile",
                logfile,
                *self.user,
                "caps",
                *LOOPBACK,
            ],
            capture_output=True,
            timeout=60,
            stdin=subprocess.DEVNULL,
        )
        self.assertEqual(done.returncode, 1)
        self.assertFalse(os.path.exists(pidfile))
        log = Path(logfile).read_bytes() + done.stdout + done.stderr
        self.assertIn(f"--pidfile {pidfile}: --uid nobody could not remove it".encode(), log)
        self.assertNotIn(b"Traceback", log)


class HostSettingsTests(SynchronousTestCase):
    def test_twist_has_no_pidfile_nor_log_file(self) -> None:
        self.assertEqual(HostSettings.from_command({"logFile": "x"}), HostSettings())
        self.assertEqual(HostSettings.from_command(None), HostSettings())

    def test_log_file_only_where_twistd_would_write_one(self) -> None:
        base: dict[str, object] = {"pidfile": "", "logfile": None, "logger": None, "syslog": False}
        cases: list[tuple[dict[str, object], str | None]] = [
            ({"nodaemon": True}, None),
            ({"nodaemon": True, "logfile": "-"}, None),
            ({"nodaemon": True, "logfile": "a.log"}, os.path.abspath("a.log")),
            ({"nodaemon": False}, os.path.abspath("twistd.log")),
            ({"nodaemon": False, "syslog": True}, None),
            ({"nodaemon": False, "logger": "x.y"}, None),
        ]
        for options, expected in cases:
            settings = HostSettings.from_command({**base, **options})
            self.assertEqual(settings.log_path, expected, options)

    def test_foreground_drops_only_the_default_pidfile(self) -> None:
        default = {"pidfile": os.path.abspath("twistd.pid"), "nodaemon": True}
        self.assertEqual(HostSettings.from_command(default).pidfile, "")
        self.assertEqual(default["pidfile"], "")
        named = {"pidfile": "/run/caps.pid", "nodaemon": True}
        self.assertEqual(HostSettings.from_command(named).pidfile, "/run/caps.pid")
        daemonized = {"pidfile": os.path.abspath("twistd.pid"), "nodaemon": False}
        self.assertEqual(
            HostSettings.from_command(daemonized).pidfile, os.path.abspath("twistd.pid")
        )


class TwistdDefaultTests(SynchronousTestCase):
    """Which twistd runs get the batched observer: those logging to standard output."""

    def options(self, **chosen: object) -> dict[str, object]:
        defaults: dict[str, object] = {"pidfile": "", "logger": None, "syslog": False}
        return {**defaults, "nodaemon": True, **chosen}

    def test_foreground_to_standard_output(self) -> None:
        for options in (self.options(), self.options(logfile="-")):
            HostSettings.from_command(options)
            self.assertEqual(options["logger"], "twisted_caps.serving.logs.text_observer")

    def test_a_log_file_syslog_or_a_chosen_logger_is_left_to_twistd(self) -> None:
        for options in (
            self.options(logfile="caps.log"),
            self.options(syslog=True),
            self.options(logger="twisted_caps.serving.logs.json_observer"),
            self.options(nodaemon=False),
            self.options(nodaemon=False, logfile="-"),
        ):
            before = dict(options)
            HostSettings.from_command(options)
            self.assertEqual(options, before)

    def test_another_runner_is_left_alone(self) -> None:
        self.assertEqual(HostSettings.from_command(None), HostSettings())
        options = {"log-format": "json"}
        HostSettings.from_command(options)
        self.assertEqual(options, {"log-format": "json"})


class TLSReloadErrorTests(SynchronousTestCase):
    def test_every_unusable_file_is_one_line_and_keeps_the_settings(self) -> None:
        """
        A key that does not match the certificate, a missing file, an empty
        key: each reload fails with one line (that the settings in force
        stay is checked through a real listener in L{TLSReloadTests}).
        """
        from twisted_caps._twisted.tls import ReloadableServerTLS

        directory = os.path.abspath(self.mktemp())
        first = make_server_files(directory)
        other = make_server_files(directory + ".other")
        tls = ReloadableServerTLS(f"ssl:0:privateKey={first.key}:certKey={first.certificate}", None)
        tls.reload()
        shutil.copyfile(other.key, first.key)
        Path(directory, "empty.pem").write_text("")
        for description, reason in (
            (tls.description, "do not match"),
            (f"ssl:0:privateKey={directory}/missing.pem", "No such file"),
            (f"ssl:0:privateKey={directory}/empty.pem", ""),
        ):
            tls.description = description
            with self.assertRaises(ValueError) as caught:
                tls.reload()
            message = str(caught.exception)
            self.assertIn(reason, message)
            self.assertEqual(len(message.splitlines()), 1)
            self.assertNotIn("[(", message)
