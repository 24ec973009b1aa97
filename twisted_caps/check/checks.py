# -*- test-case-name: tests.test_check -*-
"""
The checks by id (ids are part of caps-check's interface), the profile and
transport of each, and the order they run in.
"""

from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from twisted_caps.check import datagram_checks, stream_checks
from twisted_caps.check.target import PROFILES, Profile, Target, Transport


@dataclass(frozen=True)
class Check:
    """A check: its id, its transport, the profile that first has it, what it proves."""

    id: str
    transport: Transport
    profile: Profile
    proves: str
    run: Callable[[Target], Coroutine[Any, Any, None]]


#: Every check, in the order they run: first those that only send ASCII,
#: which a server seldom dies of, then those that commonly stop a fragile
#: server (non-ASCII text, bytes that are not UTF-8, a character split in
#: two, a reset), so that against a server caps-check did not start, a
#: crash costs as few other checks as it can. The order is interface:
#: tests and docs/grading.md rely on it.
CHECKS = (
    Check(
        "tcp-reply",
        "tcp",
        "lecture",
        "a sentence on a connection is answered",
        stream_checks.tcp_reply,
    ),
    Check(
        "tcp-sentences",
        "tcp",
        "lecture",
        "mixed case, digits, punctuation, spaces: one sentence per connection",
        stream_checks.tcp_sentences,
    ),
    Check(
        "tcp-concurrent",
        "tcp",
        "lecture",
        "one client is answered while another sits silent; 20 at once are answered",
        stream_checks.tcp_concurrent,
    ),
    Check(
        "no-framing",
        "tcp",
        "full",
        "text without a newline is answered",
        stream_checks.no_framing,
    ),
    Check(
        "stream",
        "tcp",
        "full",
        "1 MiB on one connection is answered whole, in order",
        stream_checks.stream,
    ),
    Check(
        "half-close",
        "tcp",
        "full",
        "after the client's half-close, the rest of the reply comes, then EOF",
        stream_checks.half_close,
    ),
    Check(
        "udp-reply",
        "udp",
        "lecture",
        "a datagram gets one reply datagram",
        datagram_checks.udp_reply,
    ),
    Check(
        "udp-independent",
        "udp",
        "lecture",
        "datagrams from two sockets: each answered alone, to its sender",
        datagram_checks.udp_independent,
    ),
    Check(
        "udp-empty",
        "udp",
        "full",
        "an empty datagram gets an empty reply",
        datagram_checks.udp_empty,
    ),
    Check(
        "udp-large",
        "udp",
        "full",
        "a 60,000-byte datagram is answered whole",
        datagram_checks.udp_large,
    ),
    Check(
        "unicode",
        "tcp",
        "full",
        "UTF-8 text gets Unicode's full upper-case mapping",
        stream_checks.unicode,
    ),
    Check(
        "udp-unicode",
        "udp",
        "full",
        "a UTF-8 datagram gets Unicode's full upper-case mapping",
        datagram_checks.udp_unicode,
    ),
    Check(
        "invalid-utf8",
        "tcp",
        "full",
        "bytes that are not UTF-8 come back unchanged",
        stream_checks.invalid_utf8,
    ),
    Check(
        "udp-invalid-utf8",
        "udp",
        "full",
        "a datagram that is not UTF-8 comes back unchanged",
        datagram_checks.udp_invalid_utf8,
    ),
    Check(
        "split-multibyte",
        "tcp",
        "full",
        "a character split across two sends, a pause apart, is upper-cased",
        stream_checks.split_multibyte,
    ),
    Check(
        "tcp-survives-reset",
        "tcp",
        "lecture",
        "a client that resets its connection does not stop the server",
        stream_checks.tcp_survives_reset,
    ),
)
CHECK_IDS = tuple(check.id for check in CHECKS)


def select_checks(profile: Profile, transports: tuple[Transport, ...]) -> tuple[Check, ...]:
    """The checks of C{profile} (C{full} includes C{lecture}) over C{transports}, in order."""
    wanted = PROFILES[: PROFILES.index(profile) + 1]
    return tuple(
        check for check in CHECKS if check.profile in wanted and check.transport in transports
    )
