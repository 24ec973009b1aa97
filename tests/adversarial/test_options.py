"""
The command lines attacked as a fuzzer would: every option of C{twistd caps},
C{twist caps}, C{caps-client} and C{caps-check} fed values that Python's own conversions
mishandle (superscripts, 5,000 digits, nan, whitespace, control characters),
through real processes for a representative set, and through the parsers
in-process (hypothesis) for any text at all.

The promise: a bad value is one line on stderr naming the option, exit
status 1 (2 for caps-check, whose usage errors all exit 2), never a
traceback; nothing has started listening when it is refused; and what
the options promise (one port for --port 0, a bounded --workers, a clean
line from a daemon) holds through the kernel.
"""

import io
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
from contextlib import redirect_stdout
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.python import usage
from twisted.trial.unittest import SkipTest, SynchronousTestCase

from tests.servers import (
    BIN,
    SERVING,
    course_tcp_client,
    course_udp_client,
    start_process,
    twistd,
    wait_for,
)
from twisted_caps.client.command import ClientOptions
from twisted_caps.operating.tap import Options

LOOPBACK = ("-i", "127.0.0.1", "-p", "0")
#: What a fuzzer tries first on a numeric option: each one a traceback or a
#: nonsense setting once, when str.isdigit, int and float decided.
HOSTILE_NUMBERS = (
    "\u00b2",
    "\u00b9\u2070",
    "\u0661\u0662",
    "9" * 5000,
    "nan",
    "inf",
    "-0",
    "1e400",
    " 1",
    "1_0",
    "",
    "\n",
    "\x1b[2J",
)
#: Every option of twistd caps that takes a value.
DAEMON_PARAMETERS = (
    "--port",
    "--interface",
    "--max-connections",
    "--max-per-peer",
    "--idle-timeout",
    "--udp-rate",
    "--shutdown-timeout",
    "--metrics",
    "--workers",
    "--tcp",
    "--udp",
)
CLIENT_PARAMETERS = ("--host", "--port", "--timeout", "--ca")


def run(command: list[str], **environment: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        command,
        capture_output=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
        env={**os.environ, **environment},
    )


def twist(*argv: str) -> list[str]:
    return [os.path.join(BIN, "twist"), "caps", *argv]


def caps_client(*argv: str) -> list[str]:
    return [sys.executable, "-m", "twisted_caps.client", *argv]


class RealProcessTests(SynchronousTestCase):
    """Issue 12 item 7 and issue 13: bad values through the installed commands."""

    def assertOneLineRefusal(
        self, done: subprocess.CompletedProcess[bytes], prefix: bytes, *fragments: bytes
    ) -> None:
        self.assertEqual(done.returncode, 1, done.stderr)
        self.assertNotIn(b"Traceback", done.stdout + done.stderr)
        lines = done.stderr.splitlines()
        self.assertEqual(len(lines), 1, done.stderr)
        self.assertTrue(lines[0].startswith(prefix), lines[0])
        for fragment in fragments:
            self.assertIn(fragment, lines[0])

    def test_twistd_refuses_hostile_numbers_in_one_line(self) -> None:
        """twistd -n caps --port ² (and its kind) exits 1 with one line, no traceback."""
        for option, value in (
            ("--port", "\u00b2"),
            ("--workers", "\u00b2"),
            ("--max-connections", "\u00b9\u2070"),
            ("--udp-rate", "9" * 5000),
            ("--port", "9" * 5000),
            ("--idle-timeout", "1e400"),
            ("--shutdown-timeout", "nan"),
            ("--workers", "100000"),
        ):
            done = run(twistd(*LOOPBACK, option, value))
            self.assertOneLineRefusal(done, b"caps: " + option.encode(), b"(see --help)")

    def test_twist_refuses_hostile_numbers_in_one_line(self) -> None:
        """twist caps, the newer runner, refuses them the same way."""
        for option, value in (("--port", "\u00b2"), ("--max-per-peer", "-0"), ("-p", " 1")):
            done = run(twist(*LOOPBACK, option, value))
            self.assertOneLineRefusal(done, b"caps: ")

    def test_control_characters_stay_escaped_in_the_line(self) -> None:
        """A value with a newline or a terminal escape cannot break or paint the terminal."""
        done = run(twistd(*LOOPBACK, "--tcp", "tcp:\n\x1b[2J1200"))
        self.assertOneLineRefusal(done, b"caps: --tcp tcp:\\n\\x1b[2J1200")
        self.assertNotIn(b"\x1b", done.stderr)

    def test_bytes_that_are_not_utf8_are_quoted(self) -> None:
        """argv is bytes: one that is not UTF-8 is shown escaped, in one line."""
        command = [os.fsencode(word) for word in twistd(*LOOPBACK)]
        for option in (b"--port", b"--tcp", b"--udp", b"--interface"):
            done = subprocess.run(
                [*command, option, b"12\xff\xfe"], capture_output=True, timeout=60
            )
            self.assertOneLineRefusal(done, b"caps: " + option, b"\\udcff")

    def test_bad_endpoint_port_is_refused_before_any_listener_opens(self) -> None:
        """--tcp tcp:99999 after a UNIX listener: refused at once, the socket never created."""
        folder = Path(self.mktemp())
        folder.mkdir()
        sock = folder / "caps.sock"
        for option in ("--tcp", "--metrics"):
            done = run(twistd(*LOOPBACK, "--tcp", f"unix:{sock}", option, "tcp:99999"))
            self.assertOneLineRefusal(
                done, f"caps: {option} tcp:99999: port: '99999' is not a port number".encode()
            )
            self.assertEqual(list(folder.iterdir()), [])

    def test_certificate_that_is_not_pem_names_the_file(self) -> None:
        """A bad certificate is one human line naming the file, not OpenSSL's tuples."""
        folder = Path(self.mktemp())
        folder.mkdir()
        bogus = folder / "bogus.pem"
        bogus.write_text("this is not a certificate\n")
        done = run(twistd(*LOOPBACK, "--tcp", f"ssl:0:privateKey={bogus}"))
        self.assertOneLineRefusal(done, b"caps: --tcp ssl:0:", f"{bogus}: not a PEM".encode())
        self.assertNotIn(b"PEM routines", done.stderr)

    def test_client_refuses_hostile_values_in_one_line(self) -> None:
        """caps-client: one line and status 1 for any bad value, never a hang."""
        for argv, fragment in (
            (("-p", "abc"), b"--port: 'abc' is not a port number (1-65535)"),
            (("-p", "9" * 5000), b"--port: '9999"),
            (("-t", "1e400"), b"--timeout: '1e400'"),
            (("--ca", "/dev/zero", "--tls"), b"--ca: not a regular file: /dev/zero"),
            # A label over 63 characters made Twisted's resolver never answer, over UDP.
            (("-u", "--host", "a" * 300), b"--host: 'aaaa"),
            (("--host", ""), b"--host: '' is not a host name"),
        ):
            done = run(caps_client(*argv, "x"))
            self.assertOneLineRefusal(done, b"caps-client: ", fragment)

    def test_checker_refuses_hostile_numbers_in_one_line_with_status_2(self) -> None:
        """
        caps-check: a number Python's conversions mishandle (a superscript,
        5,000 digits, Arabic-Indic digits, an underscore, a space, 1e308) is
        one usage line and exit status 2, as for any usage error, never a
        traceback and never a check run with a nonsense value.
        """
        checker = os.path.join(BIN, "caps-check")
        for option, value in (
            ("--port", "\u00b2"),
            ("--port", "9" * 5000),
            ("--port", "\u0661\u0662"),
            ("--timeout", "1_0"),
            ("--timeout", "\u0661"),
            ("--timeout", " 5"),
            ("--timeout", "1e308"),
        ):
            done = run([checker, option, value])
            self.assertEqual(done.returncode, 2, (option, value, done.stderr))
            self.assertEqual(done.stdout, b"", (option, value))
            lines = done.stderr.splitlines()
            self.assertEqual(len(lines), 1, done.stderr)
            self.assertTrue(lines[0].startswith(f"caps-check: {option}: ".encode()), lines[0])


class PortZeroTests(SynchronousTestCase):
    def test_port_0_is_one_port_answering_tcp_and_udp(self) -> None:
        """--port 0: the log names one port, and both TCP and UDP answer on it."""
        daemon = start_process(self, twistd(*LOOPBACK))
        self.assertEqual(daemon.tcp_port, daemon.udp_port)
        assert daemon.tcp_port is not None
        self.assertEqual(course_tcp_client(daemon.tcp_port, b"one port"), b"ONE PORT")
        self.assertEqual(course_udp_client(daemon.tcp_port, b"one port"), b"ONE PORT")

    def test_port_0_with_workers_is_one_port_too(self) -> None:
        """With --workers 2 the parent opens the port once: both workers serve it."""
        daemon = start_process(self, twistd(*LOOPBACK, "--workers", "2"))
        self.assertEqual(daemon.tcp_port, daemon.udp_port)
        assert daemon.tcp_port is not None
        wait_for(lambda: daemon.output.count(b"caps worker") >= 2)
        self.assertEqual(course_tcp_client(daemon.tcp_port, b"workers"), b"WORKERS")
        self.assertEqual(course_udp_client(daemon.tcp_port, b"workers"), b"WORKERS")


class DaemonErrorTests(SynchronousTestCase):
    def test_listen_error_reaches_the_terminal_whole(self) -> None:
        """
        twistd without -n, port in use: the terminal shows the whole line
        (not a truncated repr), the exit status is 1, the pidfile is gone and
        the log has the line.
        """
        taken = socket.socket()
        self.addCleanup(taken.close)
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        folder = Path(self.mktemp()).resolve()
        folder.mkdir()
        pidfile, logfile = folder / "twistd.pid", folder / "twistd.log"
        command = [os.path.join(BIN, "twistd"), "--pidfile", str(pidfile), "--logfile"]
        done = run([*command, str(logfile), "caps", "-i", "127.0.0.1", "-p", str(port)])
        line = f"caps: TCP 127.0.0.1:{port}: Address already in use".encode()
        self.assertEqual(done.returncode, 1)
        # Whole, on a line of its own: no bytes literal, no class path, no cut.
        self.assertIn(b"\n" + line + b"\n", b"\n" + done.stderr)
        self.assertNotIn(b"Traceback", done.stderr)
        wait_for(lambda: line in logfile.read_bytes())
        self.assertFalse(pidfile.exists())


class HelpTests(SynchronousTestCase):
    def test_help_survives_a_closed_pipe_and_a_bad_columns(self) -> None:
        """twistd caps --help | head -2, with COLUMNS=abc: status 0, no traceback."""
        for command in (twistd("--help"), twist("--help"), caps_client("--help")):
            process = subprocess.Popen(
                command,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env={**os.environ, "COLUMNS": "abc"},
            )
            assert process.stdout is not None and process.stderr is not None
            first = process.stdout.readline()
            process.stdout.close()
            self.assertEqual(process.wait(timeout=60), 0)
            self.assertEqual(process.stderr.read(), b"")
            process.stderr.close()
            self.assertTrue(first.startswith(b"Usage: "), first)

    def test_version_names_the_project(self) -> None:
        """twistd caps --version prints caps' version, not Twisted's."""
        done = run(twistd("--version"))
        self.assertEqual((done.returncode, done.stdout), (0, b"twisted-caps 1.0.0\n"))


class WorkerSpawnFailureTests(SynchronousTestCase):
    def test_a_refused_fork_is_one_line_a_retry_and_sigterm_still_stops(self) -> None:
        """
        --workers 2 where fork is refused (RLIMIT_NPROC after --uid): one
        line per try, no BlockingIOError traceback, and SIGTERM still stops it.
        """
        if os.getuid() != 0 or shutil.which("twistd", path=BIN) is None:
            raise SkipTest("needs root, to run the daemon as nobody under a process limit")
        log_path = Path(self.mktemp()).resolve()

        def one_process_for_nobody() -> None:
            resource.setrlimit(resource.RLIMIT_NPROC, (1, 1))

        with open(log_path, "wb") as log:
            process = subprocess.Popen(
                [
                    os.path.join(BIN, "twistd"),
                    *("-n", "--pidfile=", "--uid", "nobody", "--gid", "nogroup"),
                    *("caps", *LOOPBACK, "--workers", "2"),
                ],
                stdout=log,
                stderr=log,
                stdin=subprocess.DEVNULL,
                preexec_fn=one_process_for_nobody,
                cwd="/",
            )
        self.addCleanup(_kill, process)
        wait_for(lambda: log_path.read_bytes().count(b"could not start") >= 2)
        process.send_signal(signal.SIGTERM)
        self.assertEqual(process.wait(timeout=30), -signal.SIGTERM)
        output = log_path.read_bytes()
        self.assertNotIn(b"Traceback", output)
        self.assertIn(b"caps: worker 0 could not start: Resource temporarily unavailable", output)
        self.assertEqual(len({m.group(4) for m in SERVING.finditer(output)}), 1)


def _kill(process: "subprocess.Popen[bytes]") -> None:
    if process.poll() is None:
        process.kill()
    process.wait()


def parse_daemon(argv: list[str]) -> None:
    """Parse as twistd caps and twist caps do; --help and --version print into a sink."""
    with redirect_stdout(io.StringIO()):
        Options().parseOptions(argv)


def parse_client(argv: list[str]) -> None:
    with redirect_stdout(io.StringIO()):
        ClientOptions().parseOptions(argv)


#: Any text, the hostile numbers, and bytes that are not UTF-8 as argv carries them.
text = (
    st.text(max_size=60)
    | st.sampled_from(HOSTILE_NUMBERS)
    | st.binary(max_size=30).map(os.fsdecode)
)
endpoint = st.builds(
    str.__add__,
    st.sampled_from(["tcp:", "tcp6:", "ssl:", "unix:", "haproxy:tcp:", "systemd:", "tcp:0:"]),
    text,
)


class ParserPropertyTests(SynchronousTestCase):
    """No text makes any option parser raise anything but the one-line usage error."""

    def assertOneLineOrAccepted(self, parse: object, argv: list[str], exit_type: type) -> None:
        try:
            parse(argv)  # type: ignore[operator]
        except SystemExit as refusal:
            if refusal.code in (0, None):
                return  # --help or --version, spelled in full or abbreviated
            self.assertIsInstance(refusal.code, str)
            message = str(refusal.code)
            self.assertTrue(message.startswith("caps: "), message)
            self.assertTrue(message.isprintable(), message)
            self.assertLess(len(message), 400, message)
        except usage.UsageError as error:
            self.assertIs(exit_type, usage.UsageError)
            self.assertTrue(str(error).isprintable() or "\n" not in str(error), str(error))

    @settings(max_examples=300, deadline=None)
    @given(st.sampled_from(DAEMON_PARAMETERS), text | endpoint)
    def test_every_daemon_option_with_any_value(self, option: str, value: str) -> None:
        self.assertOneLineOrAccepted(parse_daemon, [*LOOPBACK, option, value], SystemExit)

    @settings(max_examples=100, deadline=None)
    @given(st.lists(text, max_size=6))
    def test_any_daemon_command_line(self, argv: list[str]) -> None:
        self.assertOneLineOrAccepted(parse_daemon, [*LOOPBACK, *argv], SystemExit)

    @settings(max_examples=200, deadline=None)
    @given(st.sampled_from(CLIENT_PARAMETERS), text, st.lists(text, max_size=3))
    def test_every_client_option_with_any_value(
        self, option: str, value: str, rest: list[str]
    ) -> None:
        self.assertOneLineOrAccepted(parse_client, [option, value, *rest], usage.UsageError)
