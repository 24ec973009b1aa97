# -*- test-case-name: tests.test_startup_errors -*-
"""
A daemonizing C{twistd} reports an error at start-up in the words of the
service, whole: C{caps: TCP 0.0.0.0:1200: Address already in use}, the
line the log has too.

twistd's daemon sends the error to the process started from the terminal
through a pipe, formatted by C{UnixApplicationRunner._formatChildException}
(the exception's class path, cut to 100 bytes), and that process prints
C{An error has occurred: b'...'} from C{UnixApplicationRunner._waitForStart}
(the bytes' repr, then a pointer to the log). Both are replaced here: the
message alone goes through the pipe, read to its end, and is printed as
one line. Fallback: a twistd without those two methods keeps its own
report.
"""

import os
import sys
from typing import Any

from twisted_caps.core.option_values import one_line

#: The most of a report the terminal's process reads: several lines' worth,
#: and less than the pipe's atomic write size, so the daemon never blocks.
MAX_REPORT = 2048
#: What twistd's daemon writes when it started.
STARTED = b"0"
#: What precedes a failure's message (twistd's own convention).
FAILED = b"1 "


def start_up_error_line(exception: BaseException) -> str:
    """
    The one line that says why start-up failed: the message alone for the
    service's own errors (a C{SystemExit} carrying its text, such as a
    listener that cannot open), the class name and message otherwise.
    """
    if isinstance(exception, SystemExit) and isinstance(exception.code, str):
        return one_line(exception.code)
    return one_line(f"caps: start-up failed: {type(exception).__name__}: {exception}")


def _format_child_exception(runner: Any, exception: BaseException) -> bytes:
    """twistd's daemon side: the report written to the pipe, whole."""
    report = FAILED + start_up_error_line(exception).encode("utf-8", "backslashreplace")
    return report[:MAX_REPORT]


def _wait_for_start(runner: Any, read_pipe: int) -> int:
    """
    twistd's terminal side: wait until the daemon has started (status 0),
    or print its report as one line (status 1).
    """
    # One read, as twistd's own: this process holds the pipe's write end
    # too, so there is no end of file to wait for, and the daemon writes
    # its report in one write of at most MAX_REPORT bytes, which a pipe
    # delivers whole (less than PIPE_BUF).
    report = os.read(read_pipe, MAX_REPORT)
    if report == STARTED:
        return 0
    if report.startswith(FAILED):
        line = report[len(FAILED) :].decode("utf-8", "replace")
    else:
        line = "caps: the daemon ended during start-up without a reason (see its log file)"
    stderr = sys.__stderr__ or sys.stderr
    stderr.write(one_line(line) + "\n")
    stderr.flush()
    return 1


def report_start_up_errors_whole() -> bool:
    """
    Make daemonizing twistd print start-up errors as L{start_up_error_line}
    says. Call it before twistd daemonizes (from C{makeService}): the
    terminal's process keeps the replacement through the fork. Returns
    whether it applied; a twistd without the methods it replaces is left
    alone.
    """
    try:
        from twisted.scripts import _twistd_unix
    except ImportError:
        return False
    runner = getattr(_twistd_unix, "UnixApplicationRunner", None)
    if runner is None or not all(
        callable(getattr(runner, name, None)) for name in ("_formatChildException", "_waitForStart")
    ):
        return False
    runner._formatChildException = _format_child_exception
    runner._waitForStart = _wait_for_start
    return True
