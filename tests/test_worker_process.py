"""
Tests for L{twisted_caps.operating.worker_process}: one worker started by hand with a
spec, and the spec's encoding.
"""

import json
import os
import socket
import subprocess
import sys

from twisted.trial.unittest import SynchronousTestCase, TestCase

from tests.servers import HOST, course_tcp_client
from twisted_caps.operating.worker_process import decode_spec, encode_spec
from twisted_caps.serving.config import CapsConfig, TcpListener, UdpListener
from twisted_caps.serving.service import InheritedSocket


def stop_popen(process: "subprocess.Popen[bytes]") -> None:
    """Kill C{process} if it still runs, and reap it."""
    if process.poll() is None:
        process.kill()
    process.wait()


class WorkerEntryPointTests(TestCase):
    def test_worker_serves_an_inherited_socket_until_stdin_ends(self) -> None:
        """
        Without the parent-death signal (the spec names this test as the
        parent, which lives on), end of input on stdin alone stops the worker.
        """
        listening = socket.socket()
        self.addCleanup(listening.close)
        listening.bind((HOST, 0))
        listening.listen()
        port = listening.getsockname()[1]
        config = CapsConfig(tcp=(), udp=(), shutdown_timeout=1)
        inherited = (InheritedSocket("TCP", listening.fileno(), socket.AF_INET),)
        spec = encode_spec(config, inherited, os.getpid())
        log_path = self.mktemp()
        with open(log_path, "wb") as log:
            worker = subprocess.Popen(
                [sys.executable, "-m", "twisted_caps.operating.worker_process", spec],
                stdin=subprocess.PIPE,
                stdout=log,
                stderr=log,
                pass_fds=(listening.fileno(),),
            )
        self.addCleanup(stop_popen, worker)
        listening.close()
        self.assertEqual(course_tcp_client(port, b"inherited"), b"INHERITED")
        assert worker.stdin is not None
        worker.stdin.close()
        self.assertEqual(worker.wait(timeout=20), 0)
        with open(log_path, "rb") as log:
            self.assertIn(f"serving TCP on {HOST}:{port}".encode(), log.read())


class SpecTests(SynchronousTestCase):
    def test_spec_round_trips_settings_and_sockets(self) -> None:
        config = CapsConfig(
            tcp=(TcpListener("tcp:0"),),
            udp=(UdpListener("", 0),),
            once=True,
            max_connections=0,
            max_per_peer=7,
            idle_timeout=3.5,
            udp_rate=9,
            shutdown_timeout=2,
            workers=2,
        )
        sockets = (InheritedSocket("TCP", 3, socket.AF_INET6), InheritedSocket("UDP", 4, 2))
        decoded, decoded_sockets, parent, reports = decode_spec(encode_spec(config, sockets, 42))
        self.assertEqual(
            decoded,
            CapsConfig(
                tcp=(),
                udp=(),
                once=True,
                max_per_peer=7,
                idle_timeout=3.5,
                udp_rate=9,
                shutdown_timeout=2,
            ),
        )
        self.assertEqual((decoded_sockets, parent, reports), (sockets, 42, False))

    def test_max_connections_is_shared_out_among_workers(self) -> None:
        config = CapsConfig(tcp=(), udp=(), max_connections=1001, workers=4)
        spec = json.loads(encode_spec(config, (), 1))
        self.assertEqual(spec["config"]["max_connections"], 250)
