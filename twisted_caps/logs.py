# -*- test-case-name: tests.test_logs -*-
"""
Log observers: one JSON object per event for log shippers, and the log file
of a daemonized C{twistd}, which an external tool rotates.

C{twist --log-format json caps} is Twisted's own way to JSON; for C{twistd},
use C{twistd --logger twisted_caps.logs.json_observer -n caps}.

C{twistd --logfile} would write through Twisted's C{LogFile}, which renames
the file at every megabyte and keeps every old one, with mixed modes, and
never rotates at all under C{--uid} (it can no longer rename in the log's
folder). The caps service replaces it with L{ReopenableLogFile}: one file
that never rotates by itself and is reopened on SIGHUP or SIGUSR1, after
logrotate (or any tool) has moved it away; see docs/operating.md.
"""

import contextlib
import os
import sys
from typing import TextIO

from twisted.logger import FileLogObserver, ILogObserver, jsonFileLogObserver, textFileLogObserver

#: The mode of a log file this process creates (logrotate's C{create} sets its own).
LOG_FILE_MODE = 0o640


def json_observer() -> ILogObserver:
    """Write every event to standard output as one line of JSON."""
    return jsonFileLogObserver(sys.stdout, recordSeparator="")


class ReopenableLogFile:
    """
    A text log file that stays one file: appended to, never rotated by this
    process, and reopened by name on request.
    """

    def __init__(self, path: str) -> None:
        """Open (or create, with L{LOG_FILE_MODE}) the file at C{path}."""
        self.path = os.path.abspath(path)
        self._file = self._open()

    def _open(self) -> TextIO:
        # O_NONBLOCK for the open only: a FIFO put in the file's place with no
        # reader fails at once (ENXIO) instead of blocking the reactor.
        flags = os.O_WRONLY | os.O_APPEND | os.O_NONBLOCK
        try:
            descriptor = os.open(self.path, flags | os.O_CREAT | os.O_EXCL, LOG_FILE_MODE)
        except FileExistsError:
            descriptor = os.open(self.path, flags)
        else:
            # The umask differs before and after daemonizing: one mode always.
            os.fchmod(descriptor, LOG_FILE_MODE)
        os.set_blocking(descriptor, True)
        return open(descriptor, "a", encoding="utf-8", errors="replace", buffering=1)

    def write(self, text: str) -> None:
        """Append C{text}; a full disk must not stop the service, so errors are dropped."""
        with contextlib.suppress(OSError):
            self._file.write(text)

    def flush(self) -> None:
        """Flush what C{write} buffered (it is line-buffered already)."""
        with contextlib.suppress(OSError):
            self._file.flush()

    def reopen(self) -> None:
        """
        Continue in a file opened anew at C{path}; the old one is closed only
        once the new one is open, so a failure leaves logging where it was.

        @raise OSError: if C{path} cannot be opened (for example, a user
            that C{--uid} switched to may not create files in its folder).
        """
        reopened = self._open()
        self._file, old = reopened, self._file
        old.close()


def file_observer(log_file: ReopenableLogFile) -> FileLogObserver:
    """twistd's text format, written to C{log_file}."""
    return textFileLogObserver(log_file)  # type: ignore[arg-type]
