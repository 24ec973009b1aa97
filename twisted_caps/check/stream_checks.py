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

from twisted_caps.check.feedback import (
    FIX_UNICODE,
    CheckError,
    NoFramingError,
    NoReplyError,
    RefusedError,
    describe_reply,
    error_words,
    seconds,
    show,
    upper_cased_as_bytes,
)
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
#: The text of C{unicode} (and C{udp-unicode}): Unicode's full upper-case
#: mapping turns it into C{STRASSE FI ПРИВЕТ}, 23 bytes from 24.
UNICODE_SENTENCE = "straße ﬁ привет".encode()
#: The bytes of C{invalid-utf8} (and C{udp-invalid-utf8}): none of them text.
NOT_UTF8 = b"caf\xe9 \xff\xfe na\xc3ve \xed\xa0\x80 ok"
FIX_NOT_UTF8 = (
    "bytes that are not UTF-8 must come back unchanged: decode and encode with "
    "errors='surrogateescape'"
)
#: Bytes sent on one connection by C{stream}.
STREAM_SIZE = 1 << 20

FIX_REPLY = "answer as soon as the sentence arrives, with exactly its bytes upper-cased"
FIX_LOOP = "read and answer in a loop until recv() returns b'' (the client closed)"
FIX_SPLIT = (
    "a character can arrive split across two recv() calls: keep reading, and decode "
    "with an incremental UTF-8 decoder (codecs.getincrementaldecoder('utf-8'))"
)
FIX_RESET = (
    "a client may vanish at any time: catch ConnectionResetError and BrokenPipeError "
    "around recv() and send(), close that connection, go on"
)


async def connect(target: Target) -> StreamProbe:
    """Connect to the server; a refusal or silence is the check's failure."""
    first_contact = not target.opened
    try:
        probe = await connect_stream(target.reactor, target.address, target.port, target.timeout)
    except error.ConnectionRefusedError:
        raise RefusedError(f"connection refused by {target.server}", first_contact) from None
    except error.TimeoutError:
        raise CheckError(
            f"no connection to {target.server} within {seconds(target.timeout)}"
        ) from None
    except error.ConnectError as failure:
        raise CheckError(
            f"cannot connect to {target.server}: {error_words(failure.osError or failure)}"
        ) from None
    target.opened.append(probe)
    return probe


async def exchange(
    target: Target, sentence: bytes, fix: str = FIX_REPLY, judges_framing: bool = False
) -> None:
    """
    Connect, send C{sentence}, read until its reply's length or the end of
    the connection, close; fail unless the reply is the capitalization.
    A server that answers only once a newline follows fails if the check
    C{judges_framing}; otherwise its reply to the line is judged.
    """
    probe = await connect(target)
    try:
        probe.send(sentence)
        await probe.read(len(capitalize(sentence)), target.timeout)
        sent = await unless_silent(target, probe, sentence, judges_framing)
        verify(target, probe, sent, capitalize(sent), fix)
    finally:
        await probe.close()


async def unless_silent(
    target: Target, probe: StreamProbe, sentence: bytes, judges_framing: bool = True
) -> bytes:
    """
    What the reply on C{probe} answers: C{sentence}, or, when nothing came
    back and the connection is open, C{sentence} and a newline, which is
    then sent. L{NoReplyError} when nothing comes even so; when a reply
    comes and the check C{judges_framing}, L{NoFramingError}: the server
    waits for the end of a line, and the protocol has no framing.
    """
    if probe.received or probe.ending is not None:
        return sentence
    line = sentence + b"\n"
    probe.send(b"\n")
    await probe.read(len(capitalize(line)), target.timeout)
    if probe.received and judges_framing:
        raise NoFramingError(
            f"sent {show(sentence)}; no reply within {seconds(target.timeout)}, but once a "
            f"newline followed, the server answered {show(bytes(probe.received))}: it waits for "
            "the end of a line (readline(), makefile(), a loop until b'\\n'), and the "
            "protocol has no framing: answer what each recv() returns, at once"
        )
    if probe.received:
        return line
    detail = describe_reply(sentence, b"", capitalize(sentence), probe.ending, target.timeout)
    raise NoReplyError(str(detail))


def verify(
    target: Target, probe: StreamProbe, sent: bytes | str, expected: bytes, fix: str
) -> None:
    """
    Fail with the difference unless C{probe} received C{expected}, and say
    what to fix (C{fix}) unless nothing came: silence is no evidence.
    """
    detail = describe_reply(sent, bytes(probe.received), expected, probe.ending, target.timeout)
    if detail is None:
        return
    if not probe.received and probe.ending is None:
        raise NoReplyError(detail)
    if isinstance(sent, bytes) and upper_cased_as_bytes(sent, bytes(probe.received), expected):
        fix = FIX_UNICODE
    raise CheckError(f"{detail} ({fix})" if fix else detail)


async def answered(target: Target, probe: StreamProbe, sentence: bytes) -> bool:
    """
    Whether the server answered C{sentence}, already sent on C{probe}: its
    capitalization came first, at once or once a newline followed. The
    checks of concurrency and of survival judge only that an answer came;
    the reply's exact bytes and its framing are judged by C{tcp-reply},
    C{tcp-sentences} and C{no-framing}.
    """
    expected = capitalize(sentence)
    await probe.read(len(expected), target.timeout)
    if not probe.received and probe.ending is None:
        probe.send(b"\n")
        await probe.read(len(expected), target.timeout)
    return bytes(probe.received).startswith(expected)


def unanswered(target: Target, probe: StreamProbe, sentence: bytes) -> CheckError:
    """The failure of a client whose sentence L{answered} found unanswered."""
    expected = capitalize(sentence)
    detail = (
        describe_reply(sentence, bytes(probe.received), expected, probe.ending, target.timeout)
        or f"sent {show(sentence)}; no reply"
    )
    if not probe.received and probe.ending is None:
        return NoReplyError(detail.replace("; expected", ", nor after a newline; expected", 1))
    return CheckError(detail)


async def tcp_reply(target: Target) -> None:
    """Connect, send C{hello world}: C{HELLO WORLD}, with no newline (the lecture's client)."""
    await exchange(target, b"hello world", judges_framing=True)


async def tcp_sentences(target: Target) -> None:
    """Each of L{SENTENCES} on a connection of its own, one after the other, no newline."""
    for sentence in SENTENCES:
        await exchange(target, sentence, judges_framing=True)


async def tcp_concurrent(target: Target) -> None:
    """A second client is answered while a first sits silent; then L{many_at_once}."""
    silent = await connect(target)
    try:
        second = await connect(target)
        try:
            sentence = b"second client"
            second.send(sentence)
            if not await answered(target, second, sentence):
                failure = unanswered(target, second, sentence)
                if isinstance(failure, NoReplyError):
                    raise CheckError(
                        f"a second client got no reply within {seconds(target.timeout)}, nor "
                        "after a newline, while a first client was connected and silent (an "
                        "iterative server answers one client at a time: serve each "
                        "connection in its own thread or process)"
                    )
                raise CheckError(f"a second client, while a first was connected: {failure}")
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
        outcomes = await DeferredList(
            [
                ensureDeferred(answered(target, client, sentence))
                for client, sentence in zip(clients, sentences, strict=True)
            ],
            consumeErrors=True,
        )
        failures = [
            f"client {number}: {unanswered(target, client, sentence)}"
            for number, (client, sentence, (_, was_answered)) in enumerate(
                zip(clients, sentences, outcomes, strict=True), 1
            )
            if was_answered is not True
        ]
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
    Only survival is judged: an answer counts as in L{answered}.
    """
    for partial in (b"hello wo", b""):
        probe = await connect(target)
        if partial:
            probe.send_now(partial)
        await probe.reset()
        what = f"sending {show(partial)}" if partial else "sending nothing"
        sentence = b"still there?"
        try:
            following = await connect(target)
            try:
                following.send(sentence)
                if not await answered(target, following, sentence):
                    raise unanswered(target, following, sentence)
            finally:
                await following.close()
        except CheckError as failure:
            # Silence is no evidence of a crash: the hint is for a server that went away.
            hint = "" if isinstance(failure, NoReplyError) else f" ({FIX_RESET})"
            raise CheckError(
                f"after a client reset its connection ({what}), the next client: {failure}{hint}"
            ) from None


async def unicode(target: Target) -> None:
    """Unicode's full upper-case mapping: C{straße ﬁ привет}."""
    await exchange(
        target,
        UNICODE_SENTENCE,
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
    fix = FIX_SPLIT
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
            what = f"got {show(got)}, then the server" if got else "the server"
            raise CheckError(
                f"sent {show(first)}, the first part of 'ß'; {what} "
                f"{'closed' if probe.ending == 'closed' else 'reset'} the connection before "
                f"the rest {show(rest)} came; expected {show(expected)} in all ({fix})"
            )
        probe.send_now(rest)
        await probe.read(len(expected), target.timeout)
        sentence = await unless_silent(target, probe, sentence, judges_framing=False)
        expected = capitalize(sentence)
        if upper_cased_as_bytes(sentence, bytes(probe.received), expected):
            # The halves came back as bytes.upper() leaves them: the server
            # kept reading; what it lacks is Unicode.
            fix = f"{FIX_UNICODE}; and since a character can arrive split across two recv() "
            fix += "calls, decode with codecs.getincrementaldecoder('utf-8')"
        sent = f"{show(sentence)} in two sends {waited:.2f} s apart, split inside 'ß'"
        verify(target, probe, sent, expected, fix)
    finally:
        await probe.close()


async def invalid_utf8(target: Target) -> None:
    """Bytes that are not UTF-8 come back unchanged, ASCII among them upper-cased."""
    await exchange(target, NOT_UTF8, FIX_NOT_UTF8)


async def no_framing(target: Target) -> None:
    """C{hello}, with no newline, is answered."""
    await exchange(
        target,
        b"hello",
        "answer what has arrived, without waiting for a newline",
        judges_framing=True,
    )


def stream_payload() -> bytes:
    """
    L{STREAM_SIZE} bytes of numbered ASCII lines, the last one cut short
    but ended by a newline: a server that reads lines is judged on its
    streaming here, not on its framing (C{no-framing} judges that).
    """
    lines = b"".join(
        b"line %06d: the quick brown fox jumps over the lazy dog\n" % n for n in range(20000)
    )
    return lines[: STREAM_SIZE - 1] + b"\n"


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
        first = await unless_silent(target, probe, b"hello ", judges_framing=False)
        verify(target, probe, first, capitalize(first), FIX_LOOP)
        probe.send(b"world")
        probe.half_close()
        await probe.read(len(first) + len(b"WORLD"), target.timeout)
        rest = bytes(probe.received[len(first) :])
        if rest != b"WORLD":
            detail = describe_reply(b"world", rest, b"WORLD", probe.ending, target.timeout)
            raise CheckError(
                f"after {show(first)} was answered, {detail} and the end of file "
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
