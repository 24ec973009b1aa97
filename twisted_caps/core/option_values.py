# -*- test-case-name: tests.unit.test_option_values -*-
"""
The numbers of the command lines (C{twistd caps}, C{caps-client}): ASCII
digits in a bounded range, or one usage-error line.

Python's own conversions are too lenient for a command line and fail in
ways a user should never see: C{str.isdigit} accepts superscripts that
C{int} then refuses with a traceback, C{int} accepts C{" 12"}, C{"+12"} and
C{"1_2"} and refuses strings of more than 4,300 digits, and C{float}
accepts C{"nan"}, C{"1e400"} (infinity) and Arabic-Indic digits. Here a
number is what a person types: C{[0-9]} digits and, for seconds, one
decimal point; anything else, any length beyond L{MAX_DIGITS} and any
value out of range is a C{usage.UsageError} whose message is one line.
"""

import re

from twisted.python import usage

#: Digits (before or after the point) a number may have: room for leading
#: zeros, far below Python's 4,300-digit conversion limit.
MAX_DIGITS = 20
#: How much of a refused value the error line quotes.
MAX_QUOTED = 40
#: The longest error line: an endpoint string of any length is cut to this.
MAX_LINE = 300
#: The longest wait an option accepts, in seconds: a year. A longer idle
#: timeout is "never" in practice (say 0), and it keeps every delay far
#: inside what the reactor and the kernel's poll timeouts can represent.
MAX_SECONDS = 365 * 24 * 3600
#: The most points one check may be worth in a Gradescope report: far more
#: than any assignment gives, and far from a float's loss of precision.
MAX_POINTS = 1_000_000

_WHOLE = re.compile(f"[0-9]{{1,{MAX_DIGITS}}}")
_DECIMAL = re.compile(
    f"[0-9]{{1,{MAX_DIGITS}}}(?:\\.[0-9]{{0,{MAX_DIGITS}}})?|\\.[0-9]{{1,{MAX_DIGITS}}}"
)


def quoted(text: str) -> str:
    """
    C{text} as an error line shows it: Python's repr, which escapes control
    characters, newlines and undecodable bytes, cut to L{MAX_QUOTED}
    characters so that a megabyte of input does not make a megabyte line
    (the repr, not the text: one character can take ten to escape).
    """
    shown = repr(text[:MAX_QUOTED])
    if len(shown) > MAX_QUOTED + 2:
        return shown[: MAX_QUOTED + 2] + f"... ({len(text)} characters)"
    if len(text) <= MAX_QUOTED:
        return shown
    return shown + f"... ({len(text)} characters)"


def whole_number(text: str, option: str, lowest: int, highest: int, meaning: str) -> int:
    """
    Return C{text} as an integer from C{lowest} to C{highest}, or raise a
    one-line usage error: "OPTION: 'TEXT' is not MEANING".
    """
    if _WHOLE.fullmatch(text):
        value = int(text)
        if lowest <= value <= highest:
            return value
    raise usage.UsageError(f"{option}: {quoted(text)} is not {meaning}")


def seconds(text: str, option: str, meaning: str, positive: bool = False) -> float:
    """
    Return C{text}, decimal digits with at most one point, as seconds from 0
    (more than 0 if C{positive}) to L{MAX_SECONDS}, or raise a one-line
    usage error: "OPTION: 'TEXT' is not MEANING".
    """
    if _DECIMAL.fullmatch(text):
        value = float(text)
        if (value > 0 or not positive) and value <= MAX_SECONDS:
            return value
    raise usage.UsageError(f"{option}: {quoted(text)} is not {meaning}")


def points(text: str, option: str) -> float:
    """
    Return C{text}, decimal digits with at most one point, as points from 0
    to L{MAX_POINTS}, or raise a one-line usage error.
    """
    if _DECIMAL.fullmatch(text):
        value = float(text)
        if value <= MAX_POINTS:
            return value
    raise usage.UsageError(f"{option}: {quoted(text)} is not a number of points (0-{MAX_POINTS:,})")


def port_number(text: str, option: str, lowest: int = 0) -> int:
    """Return C{text} as a port number from C{lowest} to 65535, or raise a usage error."""
    return whole_number(text, option, lowest, 65535, f"a port number ({lowest}-65535)")


def one_line(message: str) -> str:
    """
    C{message} with every character that is not printable (a newline, a
    terminal escape, an undecodable byte) escaped, so an error is one line
    whatever text it quotes, and cut to L{MAX_LINE} characters.
    """
    line = "".join(c if c.isprintable() else repr(c)[1:-1] for c in message)
    if len(line) > MAX_LINE:
        return line[: MAX_LINE - 3] + "..."
    return line
