# -*- test-case-name: tests.unit.test_log_throttle -*-
"""
Log a recurring event at most once per interval, so a flood of bad input
cannot fill the disk with identical lines.
"""

from typing import Any

from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger


class LogThrottle:
    """
    Pass one warning per C{interval} seconds to a logger and count the rest.

    The format given to L{warn} may name C{{suppressed}}: the number of
    events held back since the previous line.
    """

    def __init__(self, clock: IReactorTime, interval: float = 1.0) -> None:
        self._clock = clock
        self._interval = interval
        self._next_allowed = float("-inf")
        self._suppressed = 0

    def warn(self, log: Logger, format: str, **fields: Any) -> None:
        """Log C{format} with C{fields} now, unless a line went out recently."""
        now = self._clock.seconds()
        if now < self._next_allowed:
            self._suppressed += 1
            return
        self._next_allowed = now + self._interval
        log.warn(format, suppressed=self._suppressed, **fields)
        self._suppressed = 0
