"""One JSON object per log event, from twistd and from twist, for log shippers."""

import os

from twisted.trial.unittest import TestCase

from tests.servers import BIN, json_events, start_process, wait_for
from tests.test_loopback import course_tcp_client

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
