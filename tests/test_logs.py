"""
One JSON object per log event, from twistd and from twist, for log shippers;
the close lines dropped by a log level, for heavy connection churn; and the
observers that write a reactor turn's lines at once.
"""

import os
import re
import shutil
import signal
import socket
import tempfile
import threading
from typing import Any, cast

from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.logger import (
    Logger,
    LogLevel,
    formatEvent,
    formatEventAsClassicLogText,
    formatTime,
)
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase, TestCase

from tests.servers import (
    BIN,
    course_tcp_client,
    json_events,
    start_process,
    traced,
    traced_child,
    twistd,
    wait_for,
)
from twisted_caps.serving.logs import (
    LOG_FILE_MODE,
    MAX_PENDING,
    BatchedFileLogObserver,
    ReopenableLogFile,
    SecondClock,
    classic_text,
    emit_text,
    plain_text,
)
from twisted_caps.serving.stream import CLOSE_FORMAT, CapsStreamFactory

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
            "twisted_caps.serving.logs.json_observer",
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


class RecordingFile:
    """A text file that records each write and counts flushes."""

    def __init__(self) -> None:
        self.writes: list[str] = []
        self.flushes = 0

    def write(self, text: str) -> None:
        self.writes.append(text)

    def flush(self) -> None:
        self.flushes += 1


class RunningClock(Clock):
    """A clock that is a running reactor, as far as the observer asks."""

    running = True


def info(text: str, **fields: object) -> dict[str, object]:
    """An info event whose text is preformatted, as the close line's is."""
    return {
        "log_format": "{log_text}",
        "log_text": text,
        "log_level": LogLevel.info,
        "log_namespace": "twisted_caps.serving.stream.CapsStreamFactory",
        "log_time": 1764450000.25,
        **fields,
    }


class BatchedFileLogObserverTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.out = RecordingFile()
        self.clock = RunningClock()
        self.observer = BatchedFileLogObserver(self.out, lambda e: f"{e['log_text']}\n", self.clock)

    def test_lines_of_one_reactor_turn_are_one_write_at_its_end(self) -> None:
        """Info lines wait for the end of the reactor turn, then go in one write and flush."""
        self.observer(info("one"))
        self.observer(info("two"))
        self.assertEqual(self.out.writes, [])
        self.clock.advance(0)
        self.assertEqual((self.out.writes, self.out.flushes), (["one\ntwo\n"], 1))
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_with_a_delay_lines_of_several_turns_are_one_write(self) -> None:
        """A worker's lines wait up to the delay for the ones after them."""
        observer = BatchedFileLogObserver(
            self.out, lambda e: f"{e['log_text']}\n", self.clock, 0.05
        )
        observer(info("one"))
        self.clock.advance(0)
        observer(info("two"))
        self.clock.advance(0.04)
        self.assertEqual(self.out.writes, [])
        self.clock.advance(0.01)
        self.assertEqual((self.out.writes, self.out.flushes), (["one\ntwo\n"], 1))
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_a_warning_is_written_at_once_with_every_line_before_it(self) -> None:
        """What a crash can lose is info lines: a warning or an error goes out when emitted."""
        self.observer(info("one"))
        self.observer({**info("careful"), "log_level": LogLevel.warn})
        self.assertEqual(self.out.writes, ["one\ncareful\n"])
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_lines_are_written_at_once_when_the_reactor_is_not_running(self) -> None:
        """Start-up and shut-down lines have no reactor turn to wait for."""
        self.clock.running = False
        self.observer(info("Main loop terminated."))
        self.assertEqual(self.out.writes, ["Main loop terminated.\n"])

    def test_a_batch_waiting_when_the_reactor_stops_goes_with_the_next_line(self) -> None:
        """Its timer will not run: the next line writes the batch and itself."""
        self.observer(info("one"))
        self.clock.running = False
        self.observer(info("Main loop terminated."))
        self.assertEqual(self.out.writes, ["one\nMain loop terminated.\n"])

    def test_a_line_from_another_thread_writes_a_waiting_batch(self) -> None:
        """A batch waits for its timer: a line from another thread goes out at once, with it."""
        self.observer(info("one"))
        thread = threading.Thread(target=self.observer, args=(info("from a thread"),))
        thread.start()
        thread.join()
        self.assertEqual(self.out.writes, ["one\nfrom a thread\n"])

    def test_lines_from_another_thread_are_written_at_once(self) -> None:
        """The reactor's timers are not to be touched from another thread."""
        thread = threading.Thread(target=self.observer, args=(info("from a thread"),))
        thread.start()
        thread.join()
        self.assertEqual(self.out.writes, ["from a thread\n"])
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_pending_lines_are_bounded(self) -> None:
        """A turn that logs more than L{MAX_PENDING} bytes writes them before it ends."""
        line = "x" * 1023
        for _ in range(MAX_PENDING // 1024):
            self.observer(info(line))
        self.assertEqual(len(self.out.writes), 1)
        self.assertEqual(len(self.out.writes[0]), MAX_PENDING)

    def test_an_event_with_no_text_writes_nothing(self) -> None:
        observer = BatchedFileLogObserver(self.out, lambda e: None, self.clock)
        observer(info("ignored"))
        self.clock.advance(0)
        self.assertEqual((self.out.writes, self.clock.getDelayedCalls()), ([], []))


class ClassicTextTests(SynchronousTestCase):
    """The text lines are Twisted's, byte for byte."""

    def assertSameAsTwisted(self, event: dict[str, object]) -> None:
        ours = classic_text(SecondClock())(event)
        self.assertEqual(ours, formatEventAsClassicLogText(event))

    def test_preformatted_text_is_twisteds_line(self) -> None:
        self.assertSameAsTwisted(info("caps: 127.0.0.1 closed after 0.002s: client closed"))

    def test_a_multi_line_text_is_indented_as_twisted_does(self) -> None:
        self.assertSameAsTwisted(info("first\nsecond"))

    def test_other_events_are_twisteds_to_format(self) -> None:
        self.assertSameAsTwisted(
            {**info(""), "log_format": "caps: {peer} refused", "peer": "10.0.0.1"}
        )
        self.assertSameAsTwisted({**info("with system"), "log_system": "worker 3"})
        self.assertSameAsTwisted({**info("no time"), "log_time": None})
        self.assertSameAsTwisted({**info("no level"), "log_level": None})

    def test_the_time_is_formatted_once_per_second_and_right_every_time(self) -> None:
        clock = SecondClock()
        for when in (1764450000.0, 1764450000.999, 1764450001.0, 1764449999.5, 0.5):
            self.assertEqual(clock(when), formatTime(when))


class EmitTextTests(SynchronousTestCase):
    def test_the_event_is_logger_emits_with_its_text(self) -> None:
        """Format, fields, level, namespace and source as C{Logger.emit} has them, and the text."""
        ours: list[dict[str, object]] = []
        theirs: list[dict[str, object]] = []
        source = object()
        mine, twisteds = (
            Logger("caps.test", source, cast(Any, events.append)) for events in (ours, theirs)
        )
        emit_text(mine, LogLevel.info, "{peer} left", "::1 left", {"peer": "::1"})
        twisteds.info("{peer} left", peer="::1")
        [event] = ours
        self.assertEqual(event.pop("log_text"), formatEvent(theirs[0]))
        for each in ours + theirs:
            del each["log_logger"], each["log_time"]
        self.assertEqual(ours, theirs)

    def test_the_close_line_text_is_its_format_formatted(self) -> None:
        """The text the close event carries is what Twisted makes of its format and fields."""
        events: list[dict[str, object]] = []
        factory = CapsStreamFactory(Clock())
        factory.log = Logger("caps.test", factory, cast(Any, events.append))
        protocol = factory.buildProtocol(None)
        protocol.makeConnection(StringTransport(peerAddress=IPv4Address("TCP", "10.1.2.3", 5)))
        protocol.dataReceived(b"h\xc3\xa9llo")
        protocol.connectionLost(Failure(ConnectionDone()))
        [event] = events
        self.assertEqual(
            event["log_text"],
            "caps: 10.1.2.3 closed after 0.000s, 6 bytes in, 6 bytes out: client closed",
        )
        self.assertEqual(formatEvent(event), event["log_text"])
        self.assertEqual(event["log_format"], CLOSE_FORMAT)


class PlainTextTests(SynchronousTestCase):
    """A worker's lines: the text alone, which its parent stamps with time and pid."""

    def test_preformatted_text_alone(self) -> None:
        self.assertEqual(plain_text(info("caps: 127.0.0.1 closed")), "caps: 127.0.0.1 closed\n")

    def test_other_events_are_twisteds_text(self) -> None:
        event = {**info(""), "log_format": "caps: {peer} refused", "peer": "10.0.0.1"}
        self.assertEqual(plain_text(event), "caps: 10.0.0.1 refused\n")


#: A close line as C{twistd -n caps} writes it.
CLOSE_LINE = re.compile(
    rb"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d{4} "
    rb"\[twisted_caps\.serving\.stream\.CapsStreamFactory#info\] "
    rb"caps: 127\.0\.0\.1 closed after \d+\.\d{3}s, 5 bytes in, 5 bytes out: client closed$",
    re.MULTILINE,
)


class DaemonCloseLineTests(TestCase):
    """The close lines of C{twistd -n caps}, through its standard output."""

    def test_close_lines_of_one_reactor_turn_are_one_write(self) -> None:
        """
        The close lines of the connections that one reactor turn closes are
        written with one C{write}, not one write and one flush each; every
        line is there, in Twisted's text format.
        """
        trace = os.path.abspath(self.mktemp())
        command = traced(twistd(*LOOPBACK), "write", trace)
        daemon = start_process(self, command, expect=("TCP",))
        assert daemon.tcp_port
        count = 40
        clients = [socket.create_connection(("127.0.0.1", daemon.tcp_port)) for _ in range(count)]
        for client in clients:
            client.settimeout(10)
            client.sendall(b"hello")
        for client in clients:
            self.assertEqual(client.recv(16), b"HELLO")
        # Stopped, the server finds every client gone in its next turn.
        server = traced_child(self, daemon)
        os.kill(server, signal.SIGSTOP)
        try:
            for client in clients:
                client.close()
        finally:
            os.kill(server, signal.SIGCONT)
        wait_for(lambda: len(CLOSE_LINE.findall(daemon.output)) == count, timeout=10)
        with open(trace, "rb") as calls:
            writes = [line for line in calls if b"closed after" in line]
        self.assertLessEqual(len(writes), 2, writes)

    def test_every_line_is_written_when_the_daemon_stops(self) -> None:
        """SIGTERM: the close lines of the connections shutdown closes, then twistd's last line."""
        daemon = start_process(self, twistd(*LOOPBACK), expect=("TCP",))
        assert daemon.tcp_port
        client = socket.create_connection(("127.0.0.1", daemon.tcp_port))
        self.addCleanup(client.close)
        client.settimeout(10)
        client.sendall(b"hello")
        self.assertEqual(client.recv(16), b"HELLO")
        self.assertEqual(daemon.stop(), -signal.SIGTERM)
        output = daemon.output
        self.assertIn(b"5 bytes in, 5 bytes out: shutdown\n", output)
        self.assertTrue(output.endswith(b"Server Shut Down.\n"), output[-300:])

    def test_a_log_file_gets_the_close_lines(self) -> None:
        """With C{--logfile}, twistd's own file observer writes the same lines."""
        log_file = os.path.abspath(self.mktemp())
        command = [os.path.join(BIN, "twistd"), "-n", "--pidfile=", "--logfile", log_file]
        daemon = start_process(self, [*command, "caps", *LOOPBACK], expect=())
        wait_for(lambda: os.path.exists(log_file) and b"serving TCP" in read(log_file))
        [port] = re.findall(rb"serving TCP on 127\.0\.0\.1:(\d+)", read(log_file))
        self.assertEqual(course_tcp_client(int(port), b"hello"), b"HELLO")
        wait_for(lambda: len(CLOSE_LINE.findall(read(log_file))) == 1)
        daemon.stop()


def read(path: str) -> bytes:
    """The bytes of the file at C{path}."""
    with open(path, "rb") as opened:
        return opened.read()
