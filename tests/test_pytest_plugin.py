"""
Tests for L{twisted_caps.pytest_plugin}, through pytest runs in child
processes: plain test functions in this process would start pytest-twisted's
reactor greenlet and break the trial TestCases that run after them.
"""

import textwrap
from importlib.metadata import entry_points

from twisted.trial.unittest import TestCase

from tests.servers import run_in_scratch

FIXTURE_TEST = """
import os
from socket import AF_INET, SOCK_DGRAM, create_connection, socket


def test_blocking_clients(caps_server):
    assert caps_server.host == "127.0.0.1"
    with create_connection((caps_server.host, caps_server.tcp_port), timeout=10) as client:
        client.sendall(b"hello world")
        assert client.recv(1024) == b"HELLO WORLD"
    with socket(AF_INET, SOCK_DGRAM) as client:
        client.settimeout(10)
        client.sendto(b"udp", (caps_server.host, caps_server.udp_port))
        assert client.recvfrom(2048)[0] == b"UDP"


def test_daemon_options(caps_server_factory):
    server = caps_server_factory("--no-udp", once=True)
    with create_connection((server.host, server.tcp_port), timeout=10) as client:
        client.sendall(b"once")
        assert client.recv(1024) == b"ONCE"
        assert client.recv(1024) == b""
"""

TWISTED_TEST = """
import pytest_twisted
from twisted.internet import reactor

from twisted_caps.client import capitalize_over_tcp


@pytest_twisted.inlineCallbacks
def test_client_library(caps_server):
    reply = yield capitalize_over_tcp(reactor, caps_server.host, caps_server.tcp_port, b"hi")
    assert reply == b"HI"
"""

STOPPED_TEST = """
import socket

import pytest

SERVERS = []


def test_start(caps_server):
    SERVERS.append(caps_server)


def test_stopped_after_the_test_that_used_it():
    [server] = SERVERS
    assert server.process.poll() is not None
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((server.host, server.tcp_port), timeout=10)
"""

UNRELATED_TEST = """
import sys


def test_nothing_of_twisted_is_started():
    assert "twisted.internet.reactor" not in sys.modules
"""


class PytestPluginTests(TestCase):
    def run_pytest(self, source: str, *options: str) -> str:
        """Run pytest on C{source} in a fresh directory; fail unless it passes."""
        pytest = ("pytest", "-q", "-p", "no:cacheprovider", *options)
        return run_in_scratch(self, *pytest, files={"test_user.py": textwrap.dedent(source)})

    def test_registered_through_the_pytest11_entry_point(self) -> None:
        plugins = {e.name: e.value for e in entry_points(group="pytest11")}
        self.assertEqual(plugins.get("twisted-caps"), "twisted_caps.pytest_plugin")

    def test_fixtures_without_pytest_twisted(self) -> None:
        output = self.run_pytest(FIXTURE_TEST, "-p", "no:twisted")
        self.assertIn("2 passed", output)

    def test_fixtures_with_pytest_twisted(self) -> None:
        output = self.run_pytest(FIXTURE_TEST)
        self.assertIn("2 passed", output)

    def test_inline_callbacks_test_with_the_asyncio_reactor(self) -> None:
        output = self.run_pytest(TWISTED_TEST, "--reactor", "asyncio")
        self.assertIn("1 passed", output)

    def test_runs_that_do_not_use_it_import_no_reactor(self) -> None:
        output = self.run_pytest(UNRELATED_TEST, "-p", "no:twisted")
        self.assertIn("1 passed", output)

    def test_server_process_is_stopped_after_the_test(self) -> None:
        output = self.run_pytest(STOPPED_TEST, "-p", "no:twisted")
        self.assertIn("2 passed", output)
