"""Tests for L{twisted_caps.core.log_throttle}."""

from twisted.internet.task import Clock
from twisted.logger import Logger, LogLevel, capturedLogs
from twisted.trial.unittest import SynchronousTestCase

from twisted_caps.core.log_throttle import LogThrottle


class LogThrottleTests(SynchronousTestCase):
    def test_one_line_per_interval_with_the_count_held_back(self) -> None:
        clock = Clock()
        throttle = LogThrottle(clock, interval=1.0)
        log = Logger()
        with capturedLogs() as events:
            for _ in range(5):
                throttle.warn(log, "refused ({suppressed} more)")
            clock.advance(1.0)
            throttle.warn(log, "refused ({suppressed} more)")
        self.assertEqual([e["suppressed"] for e in events], [0, 4])
        self.assertEqual({e["log_level"] for e in events}, {LogLevel.warn})
