# -*- test-case-name: tests.unit.test_check_feedback -*-
"""
What a failed check tells a student: the bytes sent, the bytes that came
back and the bytes expected, shortened to one readable line, with the
offset of the first byte that differs. Pure Python, no I/O.
"""

import errno
import os

#: Bytes of a reply shown whole; longer ones are shown as a window.
SHOWN_WHOLE = 48
#: Bytes shown around the first difference in a long reply.
WINDOW = 40


class CheckError(Exception):
    """A check's verdict is FAIL; the message is its one-line detail."""


class RefusedError(CheckError):
    """
    The server refused a connection (or a datagram: port unreachable).
    C{first_contact} says the check had reached the server on no socket
    before: the server was not there when the check began.
    """

    def __init__(self, detail: str, first_contact: bool) -> None:
        super().__init__(detail)
        self.first_contact = first_contact


class NoReplyError(CheckError):
    """Nothing came back, not even after a newline: the server was silent."""


class NoFramingError(CheckError):
    """Nothing came back until a newline was sent: the server waits for lines."""


#: Words for the errors a connection attempt may end with, by errno name.
CONNECT_ERRORS = {
    "ECONNRESET": "connection reset",
    "ECONNREFUSED": "connection refused",
    "ETIMEDOUT": "timed out",
    "EHOSTUNREACH": "no route to host",
    "ENETUNREACH": "network unreachable",
    "EADDRNOTAVAIL": "address not available",
    "EPIPE": "connection closed",
}


def error_words(code: object) -> str:
    """
    An operating system error as words (C{connection reset}), never its
    number: C{code} is an errno, or whatever Twisted put in its place.
    """
    if isinstance(code, int):
        name = errno.errorcode.get(code, "")
        return CONNECT_ERRORS.get(name) or os.strerror(code).lower()
    if isinstance(code, OSError) and code.errno is not None:
        return error_words(code.errno)
    return str(code).strip().rstrip(".") or "an unknown error"


def upper_cased_as_bytes(sent: bytes, got: bytes, expected: bytes) -> bool:
    """
    Whether C{got} is what C{bytes.upper()} makes of C{sent}, and that is
    not the right reply: the server upper-cased ASCII only.
    """
    return got == sent.upper() != expected


#: What to do when the reply is what bytes.upper() gives.
FIX_UNICODE = (
    "the reply is what bytes.upper() gives, which changes ASCII letters only: decode the "
    "bytes as UTF-8 and upper-case the text with str.upper()"
)


def show(data: bytes, around: int = 0) -> str:
    """
    C{data} as one line: text in quotes when it is UTF-8 (C{'STRASSE'}),
    else a bytes literal (C{b'caf\\xe9'}), with its length.
    Past L{SHOWN_WHOLE} bytes only a window near offset C{around} is shown,
    with C{...} where bytes are left out.
    """
    if len(data) <= SHOWN_WHOLE:
        return f"{_literal(data)} ({_bytes(len(data))})"
    start = _character_start(data, max(0, min(around - WINDOW // 4, len(data) - WINDOW)))
    end = _character_start(data, min(len(data), start + WINDOW))
    before = "..." if start else ""
    after = "..." if end < len(data) else ""
    window = _literal(data[start:end])
    return f"{before}{window}{after} ({_bytes(len(data))}, from byte {start:,})"


def _character_start(data: bytes, offset: int) -> int:
    """Move C{offset} back off UTF-8 continuation bytes (at most 3), onto a character's start."""
    for _ in range(3):
        if 0 < offset < len(data) and 0x80 <= data[offset] < 0xC0:
            offset -= 1
    return offset


def _literal(data: bytes) -> str:
    try:
        return repr(data.decode("utf-8"))
    except UnicodeDecodeError:
        return repr(data)


def _bytes(count: int) -> str:
    return "1 byte" if count == 1 else f"{count:,} bytes"


def first_difference(got: bytes, expected: bytes) -> int:
    """The offset of the first byte where C{got} and C{expected} differ."""
    for offset, (mine, theirs) in enumerate(zip(got, expected, strict=False)):
        if mine != theirs:
            return offset
    return min(len(got), len(expected))


def seconds(value: float) -> str:
    """A number of seconds as people write it: C{5 s}, C{0.5 s}."""
    return f"{value:g} s"


def describe_reply(
    sent: bytes | str,
    got: bytes,
    expected: bytes,
    ending: str | None,
    timeout: float,
    whole: bool = False,
) -> str | None:
    """
    The detail of a reply that is not C{expected}, or None when it is.
    C{sent} is what was sent, as bytes or already described; C{whole} says
    the reply came whole (a datagram), so a short one is not "more to come".

    C{ending} says how the wait ended before the whole reply came: C{None}
    (the reply is complete, or nothing more came within C{timeout}
    seconds), C{"closed"} (end of file) or C{"reset"}.
    """
    if got == expected:
        return None
    offset = first_difference(got, expected)
    what = f"sent {sent if isinstance(sent, str) else show(sent)}; "
    if expected.startswith(got) and not whole:
        if got:
            what += f"got only {show(got, offset)}, then "
        if ending == "closed":
            what += "the server closed the connection"
        elif ending == "reset":
            what += "the connection was reset"
        else:
            what += f"no {'more ' if got else ''}reply within {seconds(timeout)}"
        return f"{what}; expected {show(expected, offset)}"
    return (
        f"{what}got {show(got, offset)}; expected {show(expected, offset)}; "
        f"first difference at byte {offset:,}"
    )
