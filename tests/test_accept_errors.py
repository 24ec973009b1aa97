"""Tests for L{twisted_caps._twisted.accept_errors}: Twisted's accept events, summarized."""

import socket

from twisted.internet import tcp
from twisted.internet.task import Clock
from twisted.logger import LogEvent, capturedLogs
from twisted.trial.unittest import SynchronousTestCase

from twisted_caps._twisted.accept_errors import (
    CLOSED_FOR_LACK_OF_FILES,
    COULD_NOT_ACCEPT,
    EPISODE_LINES,
    AcceptErrorSummary,
    summarize_accept_errors,
)
from twisted_caps.core.limits import OPEN_FILES
from twisted_caps.serving.stream import CapsStreamFactory


def closed(host: str = "192.0.2.7") -> LogEvent:
    """The event Twisted logs for a client it closed for lack of descriptors."""
    return {"log_format": CLOSED_FOR_LACK_OF_FILES, "address": (host, 40000)}


class AcceptErrorSummaryTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.factory = CapsStreamFactory(self.clock)
        self.forwarded: list[LogEvent] = []
        self.summary = AcceptErrorSummary(
            self.factory.count_lack_of_files, self.clock, self.forwarded.append
        )

    def test_every_refusal_is_counted_and_a_second_of_them_makes_two_lines(self) -> None:
        """
        300 clients closed for lack of descriptors within a second: counted
        as 300 open-files refusals, logged as the first one and then one
        line with the 299 others; Twisted's own lines are gone.
        """
        with capturedLogs() as events:
            for _ in range(100):
                self.summary({"log_format": EPISODE_LINES[0]})
                for _ in range(3):
                    self.summary(closed())
                self.summary({"log_format": EPISODE_LINES[1]})
            self.clock.advance(1.0)
            self.clock.advance(1.0)
        self.assertEqual(self.factory.refused, {OPEN_FILES: 300})
        self.assertEqual([e.get("count") for e in events], [None, 299])
        self.assertEqual(events[0]["peer"], "192.0.2.7")
        self.assertEqual(self.forwarded, [])
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_refusals_that_go_on_get_a_line_a_second(self) -> None:
        with capturedLogs() as events:
            for _ in range(50):
                self.summary(closed())
                self.clock.advance(0.1)
            self.clock.advance(2.0)
        self.assertEqual(len(events), 6)
        self.assertEqual(1 + sum(e["count"] for e in events[1:]), 50)

    def test_failed_accepts_are_throttled(self) -> None:
        """Accepts that fail (ENFILE: no descriptor in the whole system) log once a second."""
        with capturedLogs() as events:
            for _ in range(1000):
                self.summary({"log_format": COULD_NOT_ACCEPT, "acceptError": "ENFILE"})
        self.assertEqual(len(events), 1)
        self.assertEqual(events[0]["error"], "ENFILE")

    def test_other_events_pass_through(self) -> None:
        other: LogEvent = {"log_format": "something else"}
        self.summary(other)
        self.assertEqual(self.forwarded, [other])

    def test_a_unix_client_is_local(self) -> None:
        with capturedLogs() as events:
            self.summary({"log_format": CLOSED_FOR_LACK_OF_FILES, "address": ""})
        self.assertEqual(events[0]["peer"], "local")
        self.clock.advance(1.0)


class SummarizeAcceptErrorsTests(SynchronousTestCase):
    def test_a_tcp_port_reports_through_the_summary(self) -> None:
        factory = CapsStreamFactory(Clock())
        # Not listening: the summary needs only the port object.
        port = tcp.Port(0, factory, interface="127.0.0.1")
        summarize_accept_errors(port, factory.count_lack_of_files, Clock())
        self.assertIsInstance(port._logger.observer, AcceptErrorSummary)
        self.assertEqual(port._logger.namespace, "twisted.internet.tcp.Port")

    def test_a_port_without_a_logger_is_left_alone(self) -> None:
        with socket.socket() as plain:
            summarize_accept_errors(plain, CapsStreamFactory(Clock()).count_lack_of_files, Clock())  # type: ignore[arg-type]
            self.assertFalse(hasattr(plain, "_logger"))
