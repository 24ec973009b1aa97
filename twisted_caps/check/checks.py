# -*- test-case-name: tests.test_check -*-
"""
The checks, by id: each drives the server under test through real sockets
and raises L{CheckError} with a one-line detail that says what was sent,
what came back, what was expected and what to fix.

Every wait is bounded by the target's timeout. Each check closes its
connections before it returns, so an iterative server gets a fair trial of
the next one.
"""

from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Literal

from twisted.internet import error
from twisted.internet.defer import DeferredList, ensureDeferred

from twisted_caps.check.feedback import CheckError, describe_reply, seconds, show
from twisted_caps.check.probes import StreamProbe, connect_stream, open_datagram, pause
from twisted_caps.transform import capitalize

Transport = Literal["tcp", "udp"]
Profile = Literal["lecture", "full"]
PROFILES: tuple[Profile, ...] = ("lecture", "full")

#: Sentences of C{tcp-sentences}: mixed case, digits, punctuation, spaces.
SENTENCES = (b"abcdef abc123def", b"ABcdEF", b"AB12cdEF", b"Two Words HERE !!", b"a  b   c")
#: Clients that connect at once in C{tcp-concurrent}.
CONCURRENT_CLIENTS = 20
#: Seconds between the connections of those clients.
CONNECT_SPACING = 0.01
#: The least time between the two halves of a split character (seconds).
SPLIT_PAUSE = 0.05
#: The most time to wait for the server to answer the first half (seconds).
SPLIT_PAUSE_LIMIT = 1.0
#: Bytes sent on one connection by C{stream}.
STREAM_SIZE = 1 << 20
#: Bytes of the datagram of C{udp-large}.
LARGE_DATAGRAM = 60_000

FIX_REPLY = "answer as soon as the sentence arrives, with exactly its bytes upper-cased"
FIX_LOOP = "read and answer in a loop until recv() returns b'' (the client closed)"


@dataclass(frozen=True)
class Target:
    """
    The server under test: C{address} is C{host} resolved to an IP address;
    C{timeout} bounds each wait of a check, in seconds.
    """

    reactor: Any
    host: str
    address: str
    port: int
    timeout: float

    @property
    def server(self) -> str:
        """C{H:P} as the user named the server (IPv6 literals in brackets)."""
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


@dataclass(frozen=True)
class Check:
    """A check: its id, its transport, the profile that first has it, what it proves."""

    id: str
    transport: Transport
    profile: Profile
    proves: str
    run: Callable[[Target], Coroutine[Any, Any, None]]


async def connect(target: Target) -> StreamProbe:
    """Connect to the server; a refusal or silence is the check's failure."""
    try:
        return await connect_stream(target.reactor, target.address, target.port, target.timeout)
    except error.ConnectionRefusedError:
        raise CheckError(f"connection refused by {target.server}") from None
    except error.TimeoutError:
        raise CheckError(
            f"no connection to {target.server} within {seconds(target.timeout)}"
        ) from None
    except error.ConnectError as failure:
        raise CheckError(
            f"cannot connect to {target.server}: {failure.osError or failure}"
        ) from None


async def exchange(target: Target, sentence: bytes, fix: str = FIX_REPLY) -> None:
    """
    Connect, send C{sentence}, read until its reply's length or the end of
    the connection, close; fail unless the reply is the capitalization.
    """
    probe = await connect(target)
    try:
        expected = capitalize(sentence)
        probe.send(sentence)
        await probe.read(len(expected), target.timeout)
        verify(target, probe, sentence, expected, fix)
    finally:
        await probe.close()


def verify(
    target: Target, probe: StreamProbe, sent: bytes | str, expected: bytes, fix: str
) -> None:
    """Fail with the difference unless C{probe} received C{expected}."""
    detail = describe_reply(sent, bytes(probe.received), expected, probe.ending, target.timeout)
    if detail is not None:
        raise CheckError(f"{detail} ({fix})" if fix else detail)


async def tcp_reply(target: Target) -> None:
    await exchange(target, b"hello world")


async def tcp_sentences(target: Target) -> None:
    for sentence in SENTENCES:
        await exchange(target, sentence)


async def tcp_concurrent(target: Target) -> None:
    silent = await connect(target)
    try:
        second = await connect(target)
        try:
            sentence = b"second client"
            second.send(sentence)
            await second.read(len(sentence), target.timeout)
            if not second.received and second.ending is None:
                raise CheckError(
                    f"a second client got no reply within {seconds(target.timeout)} while a "
                    "first client was connected and silent (an iterative server answers one "
                    "client at a time: serve each connection in its own thread or process)"
                )
            verify(target, second, sentence, capitalize(sentence), FIX_REPLY)
            if silent.ending is not None:
                raise CheckError(
                    "the server closed a silent first client before answering a second one "
                    "(a server with a receive timeout is still iterative: serve each "
                    "connection in its own thread or process)"
                )
        finally:
            await second.close()
    finally:
        await silent.close()
    await many_at_once(target)


async def many_at_once(target: Target) -> None:
    """
    L{CONCURRENT_CLIENTS} clients connected at the same time send at once;
    every one must be answered. They connect one after another, a few
    milliseconds apart: the lecture's C{listen(1)} queues a single
    connection, and a burst of connections would wait seconds for the
    kernel to retry the ones it dropped, which is no fault of concurrency.
    """
    clients: list[StreamProbe] = []
    try:
        for _ in range(CONCURRENT_CLIENTS):
            clients.append(await connect(target))
            await pause(target.reactor, CONNECT_SPACING)
        sentences = [
            f"client {number} of {CONCURRENT_CLIENTS}".encode()
            for number in range(1, CONCURRENT_CLIENTS + 1)
        ]
        for client, sentence in zip(clients, sentences, strict=True):
            client.send(sentence)
        await DeferredList(
            [
                ensureDeferred(client.read(len(sentence), target.timeout))
                for client, sentence in zip(clients, sentences, strict=True)
            ]
        )
        failures = []
        for number, (client, sentence) in enumerate(zip(clients, sentences, strict=True), 1):
            try:
                verify(target, client, sentence, capitalize(sentence), FIX_REPLY)
            except CheckError as failure:
                failures.append(f"client {number}: {failure}")
        if failures:
            raise CheckError(
                f"{CONCURRENT_CLIENTS} clients connected at the same time sent a sentence "
                f"each; {CONCURRENT_CLIENTS - len(failures)} were answered; {failures[0]}"
            )
    finally:
        for client in clients:
            await client.close()


async def tcp_survives_reset(target: Target) -> None:
    for partial in (b"hello wo", b""):
        probe = await connect(target)
        if partial:
            probe.send_now(partial)
        await probe.reset()
        what = f"sending {show(partial)}" if partial else "sending nothing"
        try:
            await exchange(target, b"still there?", fix="")
        except CheckError as failure:
            raise CheckError(
                f"after a client reset its connection ({what}), the next client: {failure} "
                "(a client may vanish at any time: catch ConnectionResetError and "
                "BrokenPipeError around recv() and send(), close that connection, go on)"
            ) from None


async def unicode(target: Target) -> None:
    await exchange(
        target,
        "straße ﬁ привет".encode(),
        "decode the bytes as UTF-8 and upper-case the text with str.upper(): "
        "bytes.upper() changes ASCII letters only",
    )


async def split_multibyte(target: Target) -> None:
    sentence = "straße".encode()
    cut = sentence.index("ß".encode()) + 1
    first, rest = sentence[:cut], sentence[cut:]
    expected = capitalize(sentence)
    fix = (
        "a character can arrive split across two recv() calls: keep reading, and decode "
        "with an incremental UTF-8 decoder (codecs.getincrementaldecoder('utf-8'))"
    )
    probe = await connect(target)
    try:
        probe.no_delay()
        probe.send_now(first)
        started = target.reactor.seconds()
        await probe.until_something(min(SPLIT_PAUSE_LIMIT, target.timeout))
        waited = target.reactor.seconds() - started
        if waited < SPLIT_PAUSE:
            await pause(target.reactor, SPLIT_PAUSE - waited)
            waited = target.reactor.seconds() - started
        if probe.ending is not None:
            got = bytes(probe.received)
            raise CheckError(
                f"sent {show(first)}, the first part of 'ß'; got {show(got)}, then the server "
                f"{'closed' if probe.ending == 'closed' else 'reset'} the connection before "
                f"the rest {show(rest)} came; expected {show(expected)} in all ({fix})"
            )
        probe.send_now(rest)
        await probe.read(len(expected), target.timeout)
        sent = f"{show(sentence)} in two sends {waited:.2f} s apart, split inside 'ß'"
        verify(target, probe, sent, expected, fix)
    finally:
        await probe.close()


async def invalid_utf8(target: Target) -> None:
    await exchange(
        target,
        b"caf\xe9 \xff\xfe na\xc3ve \xed\xa0\x80 ok",
        "bytes that are not UTF-8 must come back unchanged: decode and encode with "
        "errors='surrogateescape'",
    )


async def no_framing(target: Target) -> None:
    await exchange(target, b"hello", "answer what has arrived, without waiting for a newline")


def stream_payload() -> bytes:
    """L{STREAM_SIZE} bytes of numbered ASCII lines."""
    lines = b"".join(
        b"line %06d: the quick brown fox jumps over the lazy dog\n" % n for n in range(20000)
    )
    return lines[:STREAM_SIZE]


async def stream(target: Target) -> None:
    payload = stream_payload()
    expected = capitalize(payload)
    probe = await connect(target)
    try:
        probe.send(payload)
        await probe.read(len(expected), target.timeout)
        verify(
            target,
            probe,
            payload,
            expected,
            f"{FIX_LOOP}, and send each reply whole with sendall(), reading while you write",
        )
    finally:
        await probe.close()


async def half_close(target: Target) -> None:
    probe = await connect(target)
    try:
        probe.send(b"hello ")
        await probe.read(len(b"HELLO "), target.timeout)
        verify(target, probe, b"hello ", b"HELLO ", FIX_LOOP)
        probe.send(b"world")
        probe.half_close()
        await probe.read(len(b"HELLO WORLD"), target.timeout)
        rest = bytes(probe.received[len(b"HELLO ") :])
        if rest != b"WORLD":
            detail = describe_reply(b"world", rest, b"WORLD", probe.ending, target.timeout)
            raise CheckError(
                f"after 'hello ' was answered, {detail} and the end of file "
                f"(the client shut down its sending side: {FIX_LOOP}, then close)"
            )
        if not await probe.until_ended(target.timeout):
            raise CheckError(
                "the whole reply came, but the connection was still open "
                f"{seconds(target.timeout)} after the client shut down its sending side "
                "(when recv() returns b'' the client is done: close the connection)"
            )
    finally:
        await probe.close()


async def datagram_exchange(target: Target, datagram: bytes, fix: str) -> None:
    """Send one datagram; fail unless one reply datagram, its capitalization, comes back."""
    probe = open_datagram(target.reactor, target.address, target.port)
    try:
        expected = capitalize(datagram)
        probe.send(datagram)
        if not await probe.until_received(1, target.timeout):
            if probe.refused:
                raise CheckError(f"connection refused by {target.server}")
            raise CheckError(
                f"sent {show(datagram)} in one datagram; no reply within "
                f"{seconds(target.timeout)}; expected {show(expected)} ({fix})"
            )
        sent = f"{show(datagram)} in one datagram"
        got = probe.received[0]
        detail = describe_reply(sent, got, expected, None, target.timeout, whole=True)
        if detail is not None:
            raise CheckError(f"{detail} ({fix})")
    finally:
        probe.close()


async def udp_reply(target: Target) -> None:
    await datagram_exchange(
        target,
        b"hello world",
        "answer each datagram with its bytes upper-cased, from the socket that received it, "
        "to the address recvfrom() returned",
    )


async def udp_independent(target: Target) -> None:
    sockets = {name: open_datagram(target.reactor, target.address, target.port) for name in "ab"}
    sent = {name: [f"one from {name}".encode(), f"TWO from {name}!".encode()] for name in "ab"}
    try:
        for number in range(2):
            for name, probe in sockets.items():
                probe.send(sent[name][number])
        for name, probe in sockets.items():
            await probe.until_received(2, target.timeout)
            if probe.refused:
                raise CheckError(f"connection refused by {target.server}")
            expected = sorted(capitalize(datagram) for datagram in sent[name])
            if sorted(probe.received) != expected:
                got = ", ".join(show(reply) for reply in probe.received[:3]) or "nothing"
                if len(probe.received) > 3:
                    got += f" and {len(probe.received) - 3} more"
                raise CheckError(
                    f"socket {name} sent {', '.join(show(d) for d in sent[name])} while "
                    f"another socket sent its own; it got {got} within "
                    f"{seconds(target.timeout)}; expected {', '.join(show(e) for e in expected)} "
                    "(answer each datagram alone, to the address recvfrom() returned with it)"
                )
    finally:
        for probe in sockets.values():
            probe.close()


async def udp_empty(target: Target) -> None:
    await datagram_exchange(
        target, b"", "an empty datagram is a datagram too: answer it with an empty one"
    )


async def udp_large(target: Target) -> None:
    datagram = stream_payload()[:LARGE_DATAGRAM]
    await datagram_exchange(
        target, datagram, "read with recvfrom(65535): a smaller buffer cuts datagrams short"
    )


#: Every check, in the order they run: the TCP checks that may stop a
#: fragile server (a reset) come after the others.
CHECKS = (
    Check("tcp-reply", "tcp", "lecture", "a sentence on a connection is answered", tcp_reply),
    Check(
        "tcp-sentences",
        "tcp",
        "lecture",
        "mixed case, digits, punctuation, spaces: one sentence per connection",
        tcp_sentences,
    ),
    Check(
        "tcp-concurrent",
        "tcp",
        "lecture",
        "one client is answered while another sits silent; 20 at once are answered",
        tcp_concurrent,
    ),
    Check("unicode", "tcp", "full", "UTF-8 text gets Unicode's full upper-case mapping", unicode),
    Check(
        "split-multibyte",
        "tcp",
        "full",
        "a character split across two sends, a pause apart, is upper-cased",
        split_multibyte,
    ),
    Check(
        "invalid-utf8", "tcp", "full", "bytes that are not UTF-8 come back unchanged", invalid_utf8
    ),
    Check("no-framing", "tcp", "full", "text without a newline is answered", no_framing),
    Check("stream", "tcp", "full", "1 MiB on one connection is answered whole, in order", stream),
    Check(
        "half-close",
        "tcp",
        "full",
        "after the client's half-close, the rest of the reply comes, then EOF",
        half_close,
    ),
    Check(
        "tcp-survives-reset",
        "tcp",
        "lecture",
        "a client that resets its connection does not stop the server",
        tcp_survives_reset,
    ),
    Check("udp-reply", "udp", "lecture", "a datagram gets one reply datagram", udp_reply),
    Check(
        "udp-independent",
        "udp",
        "lecture",
        "datagrams from two sockets: each answered alone, to its sender",
        udp_independent,
    ),
    Check("udp-empty", "udp", "full", "an empty datagram gets an empty reply", udp_empty),
    Check("udp-large", "udp", "full", "a 60,000-byte datagram is answered whole", udp_large),
)
CHECK_IDS = tuple(check.id for check in CHECKS)


def select_checks(profile: Profile, transports: tuple[Transport, ...]) -> tuple[Check, ...]:
    """The checks of C{profile} (C{full} includes C{lecture}) over C{transports}, in order."""
    wanted = PROFILES[: PROFILES.index(profile) + 1]
    return tuple(
        check for check in CHECKS if check.profile in wanted and check.transport in transports
    )
