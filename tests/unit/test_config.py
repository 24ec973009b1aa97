"""Tests for L{twisted_caps.serving.config}: the settings handed down."""

from twisted.trial.unittest import SynchronousTestCase

from twisted_caps.serving.config import CapsConfig, TcpListener, UdpListener


class WorkerShareTests(SynchronousTestCase):
    def config(self, max_connections: int, workers: int) -> CapsConfig:
        return CapsConfig(
            tcp=(TcpListener("tcp:1200"),),
            udp=(UdpListener("", 1200),),
            max_connections=max_connections,
            max_per_peer=3,
            workers=workers,
        )

    def test_each_worker_gets_its_share_rounded_down(self) -> None:
        """Shares of 10 among 3 workers add up to at most 10: 3 each."""
        share = self.config(10, 3).for_one_worker()
        self.assertEqual((share.max_connections, share.workers), (3, 1))
        self.assertEqual(share.max_per_peer, 3)

    def test_a_worker_has_no_listeners_of_its_own(self) -> None:
        share = self.config(0, 4).for_one_worker()
        self.assertEqual((share.tcp, share.udp, share.metrics), ((), (), None))
        self.assertEqual(share.max_connections, 0)

    def test_fewer_connections_than_workers_is_refused(self) -> None:
        error = self.assertRaises(ValueError, self.config, 3, 4)
        self.assertEqual(
            str(error),
            "--max-connections 3 is fewer than --workers 4"
            " (each worker serves a share of at least one connection)",
        )
        self.assertEqual(self.config(4, 4).for_one_worker().max_connections, 1)
