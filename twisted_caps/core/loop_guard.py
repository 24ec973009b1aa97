# -*- test-case-name: tests.unit.test_loop_guard -*-
"""
Recognise another service answering caps' replies, so that one forged
datagram cannot keep two services bouncing datagrams between them.

A datagram forged with the address of another echo-like service (another
caps, an echo server) as its source makes caps send its reply there; that
service answers, caps answers the answer, and so on. Every datagram of such
a loop after the first is a fixed point of the transform (its
capitalization is itself: a reply is already upper case) and the same as
the one before it from the same address and port, arriving as fast as the
network carries it. A person or a program asking for capitalization almost
never sends that: a client sends lower-case text, or different text, or
sends at its own pace.

So L{LoopGuard} counts, per source address and port, identical fixed points
in a row, each within C{window} seconds of the previous one. After
C{streak} of them, the next ones are refused, until the source sends a
different datagram or stays quiet for C{window} seconds. Plain bookkeeping,
no I/O; a normal (not fixed-point) datagram costs the caller one
comparison, and one dictionary lookup once some source has sent a fixed
point.
"""

from twisted.internet.interfaces import IReactorTime

#: Identical fixed points in a row from one source that are still answered.
LOOP_STREAK = 10
#: Seconds within which the next identical fixed point continues a streak:
#: longer than the round trip between any two hosts on land, shorter than
#: the pause between two messages typed by a person or sent by a probe that
#: runs twice a second or less.
LOOP_WINDOW = 0.5
#: Sources remembered at most (about 280 bytes each, 4.6 MB in all), so a
#: flood of spoofed sources cannot grow the table; only the sources heard
#: from in the last LOOP_WINDOW seconds matter, and those are forgotten last.
MAX_SOURCES = 16384

Source = tuple[str, int]


class LoopGuard:
    """
    Refuse a source that keeps sending the same fixed point of the transform
    back, as fast as replies reach it: the sign of a service answering.

    The table keeps an entry for each source that sent a fixed point, until
    that source sends a datagram that is not one, and holds at most
    C{max_sources}. When it is full, entries older than C{window} (which can
    no longer continue a streak) are forgotten; if that is not enough, the
    half heard from longest ago goes. A loop whose entry is forgotten that way starts its
    streak again, so it is still stopped, later.
    """

    def __init__(
        self,
        clock: IReactorTime,
        streak: int = LOOP_STREAK,
        window: float = LOOP_WINDOW,
        max_sources: int = MAX_SOURCES,
    ) -> None:
        self._clock = clock
        self._streak = streak
        self._window = window
        self._max_sources = max_sources
        #: Source to (hash of its last fixed point, when it came, how many in
        #: a row). Often empty: a caller may test it before L{reset}.
        self.streaks: dict[Source, tuple[int, float, int]] = {}

    def allow(self, source: Source, fixed_point: bytes) -> bool:
        """
        Record a datagram from C{source} that is its own capitalization;
        return False if it continues a streak longer than allowed.
        """
        now = self._clock.seconds()
        fingerprint = hash(fixed_point)
        # Popped and put back, so the table stays in the order sources were last heard.
        previous = self.streaks.pop(source, None)
        if previous is None:
            if len(self.streaks) >= self._max_sources:
                self._forget(now)
            count = 1
        else:
            same = previous[0] == fingerprint and now - previous[1] <= self._window
            count = previous[2] + 1 if same else 1
        self.streaks[source] = (fingerprint, now, count)
        return count <= self._streak

    def reset(self, source: Source) -> None:
        """End C{source}'s streak: it sent a datagram that is not a fixed point."""
        self.streaks.pop(source, None)

    def __len__(self) -> int:
        return len(self.streaks)

    def _forget(self, now: float) -> None:
        streaks = self.streaks
        for source in [s for s, (_, seen, _) in streaks.items() if now - seen > self._window]:
            del streaks[source]
        if len(streaks) >= self._max_sources:
            for source in list(streaks)[: len(streaks) // 2 + 1]:
                del streaks[source]
