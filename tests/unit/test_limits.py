"""Tests for L{twisted_caps.core.limits}."""

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from twisted_caps.core.limits import (
    MAX_CONNECTIONS,
    MAX_PER_PEER,
    ConnectionLimits,
    DatagramRateLimit,
)


class ConnectionLimitsTests(SynchronousTestCase):
    def test_total_limit(self) -> None:
        limits = ConnectionLimits(max_connections=2)
        self.assertIsNone(limits.admit("10.0.0.1"))
        self.assertIsNone(limits.admit("10.0.0.2"))
        self.assertEqual(limits.admit("10.0.0.3"), MAX_CONNECTIONS)
        limits.release("10.0.0.1")
        self.assertIsNone(limits.admit("10.0.0.3"))

    def test_per_peer_limit_leaves_other_peers_alone(self) -> None:
        limits = ConnectionLimits(max_per_peer=1)
        self.assertIsNone(limits.admit("10.0.0.1"))
        self.assertEqual(limits.admit("10.0.0.1"), MAX_PER_PEER)
        self.assertIsNone(limits.admit("10.0.0.2"))

    def test_release_returns_every_count_to_zero(self) -> None:
        limits = ConnectionLimits(max_connections=10, max_per_peer=3)
        peers = ["a", "a", "b", None]
        for peer in peers:
            self.assertIsNone(limits.admit(peer))
        for peer in peers:
            limits.release(peer)
        self.assertEqual((limits.open, limits.per_peer), (0, {}))

    def test_zero_means_no_limit(self) -> None:
        limits = ConnectionLimits()
        for _ in range(1000):
            self.assertIsNone(limits.admit("a"))

    def test_peer_without_address_counts_only_in_the_total(self) -> None:
        limits = ConnectionLimits(max_connections=3, max_per_peer=1)
        self.assertIsNone(limits.admit(None))
        self.assertIsNone(limits.admit(None))
        self.assertEqual(limits.admit(None), None)
        self.assertEqual(limits.admit(None), MAX_CONNECTIONS)


class DatagramRateLimitTests(SynchronousTestCase):
    def test_burst_then_refill_at_the_rate(self) -> None:
        clock = Clock()
        limit = DatagramRateLimit(rate=10, clock=clock)
        self.assertEqual([limit.allow("a") for _ in range(11)], [True] * 10 + [False])
        clock.advance(0.1)
        self.assertEqual([limit.allow("a"), limit.allow("a")], [True, False])

    def test_sources_have_separate_buckets(self) -> None:
        limit = DatagramRateLimit(rate=1, clock=Clock())
        self.assertTrue(limit.allow("a"))
        self.assertFalse(limit.allow("a"))
        self.assertTrue(limit.allow("b"))

    def test_idle_sources_are_forgotten_when_the_table_is_full(self) -> None:
        clock = Clock()
        limit = DatagramRateLimit(rate=10, clock=clock, max_sources=100)
        for n in range(100):
            limit.allow(f"old-{n}")
        clock.advance(1.0)
        limit.allow("new")
        self.assertEqual(len(limit), 1)

    def test_a_spoofed_flood_cannot_grow_the_table(self) -> None:
        limit = DatagramRateLimit(rate=10, clock=Clock(), max_sources=100)
        for n in range(10_000):
            limit.allow(f"spoofed-{n}")
            self.assertLessEqual(len(limit), 100)
