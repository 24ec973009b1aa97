"""Tests for L{twisted_caps.core.loop_guard}: bookkeeping only, on a fake clock."""

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from twisted_caps.core.loop_guard import LOOP_STREAK, LOOP_WINDOW, LoopGuard

PEER = ("192.0.2.1", 40000)


class LoopGuardTests(SynchronousTestCase):
    def test_a_streak_of_identical_fixed_points_is_cut_after_its_length(self) -> None:
        """The same fixed point from one source, back to back: the first ten pass."""
        guard = LoopGuard(Clock())
        allowed = [guard.allow(PEER, b"HELLO") for _ in range(LOOP_STREAK + 3)]
        self.assertEqual(allowed, [True] * LOOP_STREAK + [False] * 3)

    def test_a_different_fixed_point_starts_a_new_streak(self) -> None:
        """A client that sends different upper-case lines is never refused."""
        guard = LoopGuard(Clock())
        self.assertTrue(all(guard.allow(PEER, b"LINE %d" % n) for n in range(100)))

    def test_a_pause_longer_than_the_window_starts_a_new_streak(self) -> None:
        """The same upper-case text at a human pace is answered every time."""
        clock = Clock()
        guard = LoopGuard(clock)
        for _ in range(100):
            self.assertTrue(guard.allow(PEER, b"PING"))
            clock.advance(LOOP_WINDOW + 0.1)

    def test_a_refused_source_is_answered_after_a_pause(self) -> None:
        clock = Clock()
        guard = LoopGuard(clock)
        for _ in range(LOOP_STREAK):
            guard.allow(PEER, b"PING")
        self.assertFalse(guard.allow(PEER, b"PING"))
        clock.advance(LOOP_WINDOW + 0.1)
        self.assertTrue(guard.allow(PEER, b"PING"))

    def test_reset_ends_a_streak(self) -> None:
        """A datagram that is not a fixed point (lower-case text) ends the streak."""
        guard = LoopGuard(Clock())
        for _ in range(LOOP_STREAK):
            guard.allow(PEER, b"PING")
        guard.reset(PEER)
        self.assertTrue(guard.allow(PEER, b"PING"))
        self.assertEqual(len(guard), 1)

    def test_sources_are_told_apart_by_address_and_port(self) -> None:
        guard = LoopGuard(Clock(), streak=1)
        self.assertTrue(guard.allow(PEER, b"X"))
        self.assertTrue(guard.allow(("192.0.2.1", 40001), b"X"))
        self.assertTrue(guard.allow(("192.0.2.2", 40000), b"X"))
        self.assertFalse(guard.allow(PEER, b"X"))

    def test_stale_sources_are_forgotten_when_the_table_is_full(self) -> None:
        clock = Clock()
        guard = LoopGuard(clock, max_sources=100)
        for port in range(100):
            guard.allow(("192.0.2.1", 2000 + port), b"X")
        clock.advance(LOOP_WINDOW + 0.1)
        guard.allow(PEER, b"X")
        self.assertEqual(len(guard), 1)

    def test_a_loop_in_progress_survives_a_flood_of_fresh_sources(self) -> None:
        """
        When the table is full of sources heard from just now, the half
        heard from longest ago goes: a loop that keeps sending stays.
        """
        guard = LoopGuard(Clock(), max_sources=100)
        spoofed = (("198.51.100.7", port) for port in range(10_000))
        for _ in range(40):
            guard.allow(PEER, b"LOOP")
            for _ in range(30):
                guard.allow(next(spoofed), b"")
        self.assertLessEqual(len(guard), 100)
        self.assertFalse(guard.allow(PEER, b"LOOP"))

    def test_a_spoofed_flood_cannot_grow_the_table(self) -> None:
        """Memory stays bounded whatever sources a spoofer invents."""
        guard = LoopGuard(Clock(), max_sources=100)
        for port in range(10_000):
            guard.allow(("198.51.100.7", port), b"")
            self.assertLessEqual(len(guard), 100)
