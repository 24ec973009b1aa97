# -*- test-case-name: tests.test_logs -*-
"""
Log observers that cost little per event: lines written in batches,
timestamps formatted once per second.

Twisted's file observers format the time (three C{datetime} calls and a
C{strftime}), write and flush for every event: about 40 microseconds per
close line through C{twistd}, as much as the rest of a short connection.
L{BatchedFileLogObserver} keeps info lines for at most L{LOG_DELAY}
seconds and writes them together, at once for warnings and errors, and at
once when the reactor is not running (start-up, shut-down).

What a crash can lose: the info lines of the last L{LOG_DELAY} seconds,
when the process dies without unwinding (SIGKILL, a crash in C code). A
warning or an error is written when it is emitted, with every line before
it; a normal stop (SIGTERM, SIGINT, the reactor stopping) writes them all.

C{twistd -n caps} logging to standard output uses L{text_observer} unless
told otherwise (see L{twisted_caps.operating.daemon.HostSettings}); C{twist --log-format json caps}
is Twisted's own JSON; for C{twistd}, use
C{twistd --logger twisted_caps.serving.logs.json_observer -n caps}.

C{twistd --logfile} would write through Twisted's C{LogFile}, which renames
the file at every megabyte and keeps every old one, with mixed modes, and
never rotates at all under C{--uid} (it can no longer rename in the log's
folder). The caps service replaces it with L{ReopenableLogFile}: one file
that never rotates by itself and is reopened on SIGHUP or SIGUSR1, after
logrotate (or any tool) has moved it away; see docs/operating.md.
"""

import contextlib
import json
import os
import sys
import time
from collections.abc import Callable
from threading import get_ident
from typing import Any, Protocol, TextIO

from twisted.logger import (
    ILogObserver,
    LogEvent,
    Logger,
    LogLevel,
    eventAsText,
    formatEventAsClassicLogText,
    formatTime,
    timeFormatRFC3339,
)
from twisted.python.failure import Failure
from zope.interface import implementer

#: The mode of a log file this process creates (logrotate's C{create} sets its own).
LOG_FILE_MODE = 0o640
#: Levels written at once, with every line before them. A set: comparing
#: levels (C{>=}) lists every level of C{LogLevel} each time.
URGENT = frozenset({LogLevel.warn, LogLevel.error, LogLevel.critical})
#: Pending bytes that make the observer write before the turn ends.
MAX_PENDING = 64 * 1024
#: Seconds an info line waits for more before the batch is written: a
#: reactor turn closes a few connections, and a write per turn (a worker's
#: to its parent, which wakes for every one) costs more than the lines.
LOG_DELAY = 0.05


class TextFile(Protocol):
    """What the observer writes to: a text file, standard output."""

    def write(self, text: str, /) -> object:
        """Write C{text}."""

    def flush(self) -> object:
        """Hand what was written to the operating system."""


def emit_text(
    logger: Logger, level: LogLevel, format: str, text: str, fields: dict[str, object]
) -> None:
    """
    Emit the event C{logger.emit(level, format, **fields)} would, carrying
    its text, already formatted, as C{log_text}; C{fields}, a new dict, is
    completed into the event (one dict per event, not two).

    Every observer still sees the same format and fields; the ones here
    write C{log_text} instead of parsing the format again. And
    C{Logger.emit} first checks that C{level} is a C{LogLevel} by listing
    and sorting every level, about 3 microseconds per event, a tenth of
    what a closing connection costs: C{level} here is one of the constants.
    """
    fields["log_logger"] = logger
    fields["log_level"] = level
    fields["log_namespace"] = logger.namespace
    fields["log_source"] = logger.source
    fields["log_format"] = format
    fields["log_text"] = text
    fields["log_time"] = time.time()
    logger.observer(fields)


@implementer(ILogObserver)
class BatchedFileLogObserver:
    """
    Write each event as C{format_event} renders it, in batches.

    It is made in the thread that runs C{reactor} (as C{twistd} makes its
    observer); an event from another thread is written at once.

    @ivar out_file: where lines go; flushed after every batch.
    @ivar format_event: an event's text (with its newline), or None to skip.
    @ivar delay: seconds an info line may wait for the lines after it;
        0 for the end of the reactor turn.
    """

    def __init__(
        self,
        out_file: TextFile,
        format_event: Callable[[LogEvent], str | None],
        reactor: Any,
        delay: float = 0.0,
    ) -> None:
        self.out_file = out_file
        self.format_event = format_event
        self.delay = delay
        self._reactor = reactor
        self._pending: list[str] = []
        self._pending_size = 0
        self._flush_call: Any = None
        self._reactor_thread = get_ident()

    def __call__(self, event: LogEvent) -> None:
        text = self.format_event(event)
        if not text:
            return
        self._pending.append(text)
        self._pending_size += len(text)
        # A warning, a line outside the reactor's thread, or one with no
        # reactor turn to end, goes at once with every line before it.
        if (
            not self._reactor.running
            or self._pending_size >= MAX_PENDING
            or event.get("log_level") in URGENT
            or get_ident() != self._reactor_thread
        ):
            self.flush()
        elif self._flush_call is None:
            self._flush_call = self._reactor.callLater(self.delay, self.flush)

    def flush(self) -> None:
        """Write and flush every pending line."""
        if self._flush_call is not None:
            if self._flush_call.active():
                self._flush_call.cancel()
            self._flush_call = None
        if self._pending:
            lines, self._pending, self._pending_size = self._pending, [], 0
            self.out_file.write("".join(lines))
            self.out_file.flush()


class SecondClock:
    """
    Format a time as Twisted's text observers do (RFC 3339 to the second),
    once per second: every event of the same second shares one string.

    @ivar second: the second formatted last (C{when // 1}), or None.
    @ivar text: its text; a caller that has checked C{second} reads it
        without a call.
    """

    def __init__(self, time_format: str = timeFormatRFC3339) -> None:
        self.time_format = time_format
        self.second: float | None = None
        self.text = ""

    def __call__(self, when: float | None) -> str:
        if when is None:
            return formatTime(when, self.time_format)
        second = when // 1
        if second != self.second:
            # The format stops at seconds, so the whole second formats the same.
            self.text = formatTime(second, self.time_format)
            self.second = second
        return self.text


def classic_text(clock: SecondClock) -> Callable[[LogEvent], str | None]:
    """
    Twisted's classic text line (C{TIME [SYSTEM] TEXT}), its time from C{clock}.

    An event that carries its text already formatted (C{log_text}, as
    L{emit_text} and Twisted's legacy events do) is written without parsing
    its format again; any other event is Twisted's to format.
    """

    # The "[namespace#level]" of each pair seen: a few, made once each.
    systems: dict[tuple[object, object], str] = {}

    def format_event(event: LogEvent) -> str | None:
        # _formatted_text and the clock's call, inlined: this runs for every line.
        text = event.get("log_text")
        if not text or text.__class__ is not str or "log_failure" in event or "log_system" in event:
            return formatEventAsClassicLogText(event, formatTime=clock)
        key = (event.get("log_namespace", "-"), event.get("log_level"))
        system = systems.get(key)
        if system is None:
            namespace, level = key
            level_name = level.name if level is not None else "-"
            system = systems[key] = f"[{namespace}#{level_name}]"
        if "\n" in text:
            text = text.replace("\n", "\n\t")
        when = event.get("log_time")
        stamp = clock.text if when is not None and when // 1 == clock.second else clock(when)
        return f"{stamp} {system} {text}\n"

    return format_event


def _formatted_text(event: LogEvent) -> str | None:
    """The event's text if it carries it already formatted, else None."""
    text = event.get("log_text")
    return text if isinstance(text, str) and text else None


def plain_text(event: LogEvent) -> str:
    """An event's text alone, as one line: a worker's, which its parent stamps."""
    text = _formatted_text(event)
    if text is None:
        text = eventAsText(event, includeTimestamp=False, includeSystem=False)
    return text + "\n"


#: The values a JSON line keeps as they are.
JSON_NATIVE = (str, int, float, bool, type(None))


def json_line(event: LogEvent) -> str:
    """
    One event as one line of JSON: C{twist --log-format json}'s fields
    without what says nothing outside the process. Twisted writes every
    object it cannot serialize (the logger, the object that logged) as
    C{{"unpersistable": true}} and tags its own classes with
    C{__class_uuid__}; here such fields are left out, the level is
    C{{"name": "info"}}, and a failure is its traceback as text.
    """
    fields: dict[str, object] = {}
    for key, value in event.items():
        if isinstance(value, JSON_NATIVE):
            fields[key] = value
        elif key == "log_level":
            fields[key] = {"name": getattr(value, "name", str(value))}
        elif isinstance(value, Failure):
            fields[key] = value.getTraceback()
        elif isinstance(value, (list, tuple)) and all(isinstance(v, JSON_NATIVE) for v in value):
            fields[key] = list(value)
    return json.dumps(fields) + "\n"


def _reactor() -> Any:
    """The global reactor, imported only once twistd has installed its own."""
    from twisted.internet import reactor

    return reactor


def text_observer() -> ILogObserver:
    """Write every event to standard output as Twisted's classic text line."""
    return BatchedFileLogObserver(sys.stdout, classic_text(SecondClock()), _reactor(), LOG_DELAY)


def json_observer() -> ILogObserver:
    """Write every event to standard output as one line of JSON."""
    return BatchedFileLogObserver(sys.stdout, json_line, _reactor(), LOG_DELAY)


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


def file_observer(log_file: ReopenableLogFile, reactor: Any) -> ILogObserver:
    """twistd's text format, written to C{log_file} in batches."""
    return BatchedFileLogObserver(log_file, classic_text(SecondClock()), reactor, LOG_DELAY)
