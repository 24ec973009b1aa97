"""
Trial tests against a real caps server on loopback, in the test's reactor.
Run with: python -m twisted.trial examples/test_trial_loopback.py
"""

from socket import AF_INET, SOCK_STREAM, socket

from twisted.internet import reactor
from twisted.internet.threads import deferToThread
from twisted.trial.unittest import TestCase

from twisted_caps.client import capitalize_over_tcp
from twisted_caps.testing import start_caps_server


class LoopbackTests(TestCase):
    async def test_client_library(self) -> None:
        server = start_caps_server(self)  # stopped cleanly after the test
        reply = await capitalize_over_tcp(reactor, server.host, server.tcp_port, b"hello")
        self.assertEqual(reply, b"HELLO")

    async def test_blocking_client_in_a_thread(self) -> None:
        server = start_caps_server(self, once=True)  # twistd caps --once

        def student_client() -> bytes:
            with socket(AF_INET, SOCK_STREAM) as client:
                client.settimeout(10)
                client.connect((server.host, server.tcp_port))
                client.send(b"hello world")
                return client.recv(1024)

        self.assertEqual(await deferToThread(student_client), b"HELLO WORLD")
