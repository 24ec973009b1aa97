"""
One JSON object per log event, from twistd and from twist, for log shippers;
and the close lines dropped by a log level, for heavy connection churn.
"""

import os
import shutil
import socket
import tempfile

from twisted.trial.unittest import SynchronousTestCase, TestCase

from tests.servers import BIN, course_tcp_client, json_events, start_process, wait_for
from twisted_caps.logs import LOG_FILE_MODE, ReopenableLogFile

LOOPBACK = ("-i", "127.0.0.1", "-p", "0", "--no-udp")


class JsonLogTests(TestCase):
    def assertConnectionCloseEvent(self, output: bytes) -> None:
        events = json_events(output)
        closes = [e for e in events if "bytes_in" in e]
        self.assertEqual(len(closes), 1, output)
        [close] = closes
        self.assertEqual(close["peer"], "127.0.0.1")
        self.assertEqual((close["bytes_in"], close["bytes_out"]), (5, 5))
        self.assertEqual(close["reason"], "client closed")
        self.assertGreaterEqual(close["duration"], 0)
        self.assertEqual(close["log_level"]["name"], "info")

    def test_twistd_with_the_json_observer(self) -> None:
        command = [
            os.path.join(BIN, "twistd"),
            "-n",
            "--pidfile=",
            "--logger",
            "twisted_caps.logs.json_observer",
            "caps",
            *LOOPBACK,
        ]
        daemon = start_process(self, command, expect=("TCP",))
        assert daemon.tcp_port
        self.assertEqual(course_tcp_client(daemon.tcp_port, b"hello"), b"HELLO")
        wait_for(lambda: b"bytes_in" in daemon.output)
        daemon.stop()
        self.assertFalse(daemon.output.startswith(b"\x1e"))
        self.assertConnectionCloseEvent(daemon.output)

    def test_twist_with_log_format_json(self) -> None:
        command = [os.path.join(BIN, "twist"), "--log-format", "json", "caps", *LOOPBACK]
        daemon = start_process(self, command, expect=("TCP",))
        assert daemon.tcp_port
        self.assertEqual(course_tcp_client(daemon.tcp_port, b"hello"), b"HELLO")
        wait_for(lambda: b"bytes_in" in daemon.output)
        daemon.stop()
        self.assertConnectionCloseEvent(daemon.output)


class LogLevelTests(TestCase):
    def test_twist_at_warn_level_drops_close_lines_and_keeps_warnings(self) -> None:
        scratch = tempfile.mkdtemp(prefix="caps-logs-")
        self.addCleanup(shutil.rmtree, scratch)
        path = os.path.join(scratch, "caps.sock")
        command = [
            os.path.join(BIN, "twist"),
            "--log-format",
            "text",
            "--log-level",
            "warn",
            "caps",
        ]
        command += ["--tcp", f"unix:{path}", "--no-udp", "--max-connections", "1"]
        daemon = start_process(self, command, expect=())
        clients: list[socket.socket] = []

        def connected() -> bool:
            client = socket.socket(socket.AF_UNIX)
            client.settimeout(10)
            try:
                client.connect(path)
            except OSError:
                client.close()
                return False
            clients.append(client)
            self.addCleanup(client.close)
            return True

        wait_for(connected)
        first = clients[0]
        first.sendall(b"hello")
        self.assertEqual(first.recv(16), b"HELLO")
        wait_for(connected)
        self.assertEqual(clients[1].recv(16), b"")
        wait_for(lambda: b"refused" in daemon.output)
        first.close()
        daemon.stop()
        self.assertIn(b"refused a connection from local", daemon.output)
        self.assertNotIn(b"closed after", daemon.output)


class ReopenableLogFileTests(SynchronousTestCase):
    def test_reopen_continues_in_a_new_file_at_the_same_path(self) -> None:
        path = self.mktemp()
        log = ReopenableLogFile(path)
        log.write("one\n")
        os.rename(path, path + ".1")
        log.write("two\n")
        log.reopen()
        log.write("three\n")
        with open(path + ".1") as old, open(path) as new:
            self.assertEqual((old.read(), new.read()), ("one\ntwo\n", "three\n"))
        self.assertEqual(os.stat(path).st_mode & 0o777, LOG_FILE_MODE)

    def test_existing_file_is_appended_to_and_keeps_its_mode(self) -> None:
        path = self.mktemp()
        with open(path, "w") as existing:
            existing.write("before\n")
        os.chmod(path, 0o600)
        log = ReopenableLogFile(path)
        log.write("after\n")
        with open(path) as file:
            self.assertEqual(file.read(), "before\nafter\n")
        self.assertEqual(os.stat(path).st_mode & 0o777, 0o600)

    def test_failed_reopen_keeps_the_old_file(self) -> None:
        folder = self.mktemp()
        os.makedirs(folder)
        log = ReopenableLogFile(os.path.join(folder, "caps.log"))
        os.rename(folder, folder + ".moved")
        self.assertRaises(OSError, log.reopen)
        log.write("kept\n")
        with open(os.path.join(folder + ".moved", "caps.log")) as file:
            self.assertEqual(file.read(), "kept\n")

    def test_fifo_without_a_reader_fails_at_once(self) -> None:
        """A FIFO put in the log file's place cannot hang the reopen (and the reactor)."""
        path = self.mktemp()
        log = ReopenableLogFile(path)
        os.rename(path, path + ".1")
        os.mkfifo(path)
        self.assertRaises(OSError, log.reopen)
        log.write("kept\n")
        with open(path + ".1") as old:
            self.assertEqual(old.read(), "kept\n")
