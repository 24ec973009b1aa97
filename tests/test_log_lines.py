"""
The lines an operator reads, through the real twistd: each says something
in caps' words, and none alarms for nothing (an unchanged limit, Twisted's
boilerplate about a socket that stays open, a JSON field that cannot be
read back).
"""

import os
import re
import resource
import signal
import subprocess

from twisted.trial.unittest import TestCase

from tests.certificates import make_server_files, ssl_endpoint
from tests.servers import (
    BIN,
    HOST,
    WORKERS,
    json_events,
    kill_at_cleanup,
    require_program,
    running_workers,
    start_process,
    start_workers,
    twistd,
    wait_for,
)

LOOPBACK = ("-i", HOST, "-p", "0", "--no-udp")


def run(command: list[str]) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(command, capture_output=True, timeout=60, stdin=subprocess.DEVNULL)


class OpenFilesLimitTests(TestCase):
    def test_an_unchanged_limit_is_not_logged(self) -> None:
        _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        prlimit = require_program("prlimit")
        command = [prlimit, f"--nofile={hard}:{hard}", *twistd(*LOOPBACK)]
        daemon = start_process(self, command, expect=("TCP",))
        self.assertNotIn(b"open files limit", daemon.output)

    def test_a_raised_limit_is_logged_once_and_not_by_each_worker(self) -> None:
        _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        low = min(1024, hard - 1)
        prlimit = require_program("prlimit")
        command = [prlimit, f"--nofile={low}:{hard}", *twistd(*WORKERS, "--no-udp")]
        daemon = start_process(self, command, expect=("TCP",))
        wait_for(lambda: len(running_workers(daemon)) == 2)
        kill_at_cleanup(self, list(running_workers(daemon).values()))
        wait_for(lambda: daemon.output.count(b": caps: ready") == 2)
        self.assertEqual(
            re.findall(rb"\] (.*open files limit.*)", daemon.output),
            [f"caps: open files limit raised from {low} to {hard}".encode()],
        )


class ReloadLineTests(TestCase):
    def test_single_process_reload_says_when_it_is_done(self) -> None:
        daemon = start_process(self, twistd(*LOOPBACK), expect=("TCP",))
        daemon.process.send_signal(signal.SIGHUP)
        wait_for(lambda: b"caps: reload done" in daemon.output)
        reloading = daemon.output.index(b"caps: reloading (SIGHUP)")
        self.assertGreater(daemon.output.index(b"caps: reload done"), reloading)

    def test_retiring_workers_are_said_retired_without_twisted_boilerplate(self) -> None:
        daemon, workers = start_workers(self)
        daemon.process.send_signal(signal.SIGHUP)
        wait_for(lambda: daemon.output.count(b"retired after reload") == 2)
        for index, pid in workers.items():
            line = f"caps: worker {index} (pid {pid}) retired after reload\n"
            self.assertIn(line.encode(), daemon.output)
        self.assertNotIn(b"A process has ended", daemon.output)
        self.assertNotIn(b"another serves in its place", daemon.output)
        worker_lines = re.findall(rb"caps worker \d+: (.*)", daemon.output)
        self.assertTrue(worker_lines)
        for line in worker_lines:
            self.assertNotRegex(line, rb"Port \d+ Closed|starting on")


class ListenerLineTests(TestCase):
    def test_a_tls_listener_says_tls(self) -> None:
        files = make_server_files(self.mktemp())
        daemon = start_process(self, twistd("--tcp", ssl_endpoint(files), "--no-udp"), ("TCP",))
        line = f"caps: serving TCP on 127.0.0.1:{daemon.tcp_port}"
        self.assertIn(f"{line} with TLS\n".encode(), daemon.output)
        self.assertNotIn(f"{line}\n".encode(), daemon.output)

    def test_a_plain_listener_does_not(self) -> None:
        daemon = start_process(self, twistd(*LOOPBACK), expect=("TCP",))
        line = f"caps: serving TCP on 127.0.0.1:{daemon.tcp_port}\n"
        self.assertIn(line.encode(), daemon.output)


class JsonFieldTests(TestCase):
    def test_json_lines_carry_no_unserializable_noise(self) -> None:
        command = [os.path.join(BIN, "twistd"), "-n", "--pidfile="]
        command += ["--logger", "twisted_caps.serving.logs.json_observer", "caps", *LOOPBACK]
        daemon = start_process(self, command, expect=("TCP",))
        daemon.process.send_signal(signal.SIGHUP)
        wait_for(lambda: b"caps: reload done" in daemon.output)
        daemon.stop()
        events = json_events(daemon.output)
        self.assertTrue(events)
        for noise in (b"unpersistable", b"__class_uuid__", b"log_logger"):
            self.assertNotIn(noise, daemon.output)
        levels = [event["log_level"] for event in events if "log_level" in event]
        self.assertTrue(levels)
        self.assertEqual({tuple(level) for level in levels}, {("name",)})


class RunnerOptionTests(TestCase):
    def test_twistd_options_after_caps_say_where_they_go(self) -> None:
        for option in ("-n", "--nodaemon"):
            done = run([os.path.join(BIN, "twistd"), "--pidfile=", "caps", option])
            self.assertEqual(done.returncode, 1)
            self.assertEqual(
                done.stderr.splitlines(),
                [
                    f"caps: {option} is an option of twistd, not of caps: twistd's own"
                    f" options go before caps (twistd {option} caps ...)".encode()
                ],
            )

    def test_a_port_alone_as_an_endpoint_suggests_tcp(self) -> None:
        done = run(twistd("--metrics", "9100"))
        self.assertEqual(done.returncode, 1)
        self.assertEqual(
            done.stderr.splitlines(),
            [
                b"caps: --metrics 9100: a port alone is not an endpoint string; write tcp:9100"
                b" (tcp:9100:interface=127.0.0.1 for this host only) (see --help)"
            ],
        )
