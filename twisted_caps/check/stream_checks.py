# -*- test-case-name: tests.test_check -*-
"""
The TCP checks: each drives the server under test through real
connections and raises L{CheckError} with a one-line detail that says what
was sent, what came back, what was expected and what to fix.

Every wait is bounded by the target's timeout. Each check closes its
connections before it returns, so an iterative server gets a fair trial of
the next one.
"""

from dataclasses import replace

from twisted.internet import error
from twisted.internet.defer import DeferredList, ensureDeferred

from twisted_caps.check.feedback import CheckError, describe_reply, seconds, show
from twisted_caps.check.probes import StreamProbe, connect_stream, pause
from twisted_caps.check.target import Target
from twisted_caps.core.transform import capitalize

#: Sentences of C{tcp-sentences}: mixed case, digits, punctuation, spaces.
SENTENCES = (b"abcdef abc123def", b"ABcdEF", b"AB12cdEF", b"Two Words HERE !!", b"a  b   c")
#: Clients connected at the same time in C{tcp-concurrent}.
CONCURRENT_CLIENTS = 20
#: Seconds between the connections of those clients.
CONNECT_SPACING = 0.01
#: The least time each of them waits, in seconds: a connection the kernel
#: dropped from a full queue is tried again after 1 s and after 3 s.
KERNEL_RETRY_GRACE = 3.5
#: The least time between the two halves of a split character (seconds).
SPLIT_PAUSE = 0.05
#: The most time to wait for the server to answer the first half (seconds).
SPLIT_PAUSE_LIMIT = 1.0
#: Bytes sent on one connection by C{stream}.
STREAM_SIZE = 1 << 20

FIX_REPLY = "answer as soon as the sentence arrives, with exactly its bytes upper-cased"
FIX_LOOP = "read and answer in a loop until recv() returns b'' (the client closed)"


async def connect(target: Target) -> StreamProbe:
    """Connect to the server; a refusal or silence is the check's failure."""
    try:
        probe = await connect_stream(target.reactor, target.address, target.port, target.timeout)
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
    target.opened.append(probe)
    return probe


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
    """Connect, send C{hello world}: C{HELLO WORLD}."""
    await exchange(target, b"hello world")


async def tcp_sentences(target: Target) -> None:
    """Each of L{SENTENCES} on a connection of its own, one after the other."""
    for sentence in SENTENCES:
        await exchange(target, sentence)


async def tcp_concurrent(target: Target) -> None:
    """A second client is answered while a first sits silent; then L{many_at_once}."""
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
    On a loaded machine the queue may still overflow, so each waits at
    least L{KERNEL_RETRY_GRACE} seconds, whatever the timeout.
    """
    # A connection dropped from a full listen(1) queue is retried by the
    # kernel after 1 s, then 3 s: each client waits at least that long.
    target = replace(target, timeout=max(target.timeout, KERNEL_RETRY_GRACE))
    clients: list[StreamProbe] = []
    try:
        for number in range(1, CONCURRENT_CLIENTS + 1):
            try:
                clients.append(await connect(target))
            except CheckError as failure:
                raise CheckError(
                    f"client {number} of {CONCURRENT_CLIENTS} connecting one after another, "
                    f"the others still connected: {failure}"
                ) from None
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
    """
    A client resets its connection after part of a sentence, another before
    sending anything: the next client is answered after each. The second
    does not race the server: its C{recv()} raises C{ConnectionResetError}.
    """
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
    """Unicode's full upper-case mapping: C{straße ﬁ привет}."""
    await exchange(
        target,
        "straße ﬁ привет".encode(),
        "decode the bytes as UTF-8 and upper-case the text with str.upper(): "
        "bytes.upper() changes ASCII letters only",
    )


async def split_multibyte(target: Target) -> None:
    """
    C{straße} in two sends split inside C{ß}, at least L{SPLIT_PAUSE} apart
    with C{TCP_NODELAY}; the second waits until the server answered or
    closed after the first (up to L{SPLIT_PAUSE_LIMIT}), so a server that
    reads once is caught every time.
    """
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
    """Bytes that are not UTF-8 come back unchanged, ASCII among them upper-cased."""
    await exchange(
        target,
        b"caf\xe9 \xff\xfe na\xc3ve \xed\xa0\x80 ok",
        "bytes that are not UTF-8 must come back unchanged: decode and encode with "
        "errors='surrogateescape'",
    )


async def no_framing(target: Target) -> None:
    """C{hello}, with no newline, is answered."""
    await exchange(target, b"hello", "answer what has arrived, without waiting for a newline")


def stream_payload() -> bytes:
    """L{STREAM_SIZE} bytes of numbered ASCII lines."""
    lines = b"".join(
        b"line %06d: the quick brown fox jumps over the lazy dog\n" % n for n in range(20000)
    )
    return lines[:STREAM_SIZE]


async def stream(target: Target) -> None:
    """L{STREAM_SIZE} bytes on one connection, read while sent: all answered, in order."""
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
    """
    C{hello } is answered; then C{world} and a half-close: C{WORLD} comes,
    then the end of file.
    """
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
