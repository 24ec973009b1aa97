"""
Tests for L{twisted_caps.pytest_plugin}, through pytest runs in child
processes: plain test functions in this process would start pytest-twisted's
reactor greenlet and break the trial TestCases that run after them.
"""

import subprocess
import sys
import textwrap
from importlib.metadata import entry_points
from pathlib import Path

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


LEAKY_CLIENT = '''
import socket

import pytest

LEAKED = []


def leaky_client(host, port):
    """A student's client that never closes its socket."""
    client = socket.create_connection((host, port), timeout=10)
    client.sendall(b"hello")
    reply = client.recv(1024)
    LEAKED.append(client)
    return reply


def test_report_names_the_open_connection(caps_server):
    assert leaky_client(caps_server.host, caps_server.tcp_port) == b"HELLO"
    report = caps_server.report()
    [record] = report.open
    assert (record.peer, record.bytes_in, record.bytes_out, record.reason) == (
        "127.0.0.1", 5, 5, None
    )
    assert report.closed == ()
    with pytest.raises(AssertionError, match="1 connection.s. still open .* 5 bytes in"):
        caps_server.assert_all_closed(timeout=0.2)
    LEAKED.pop().close()
    [record] = caps_server.assert_all_closed().closed
    assert record.reason == "client closed"


def test_closed_connections_carry_their_reason(caps_server):
    with socket.create_connection((caps_server.host, caps_server.tcp_port)) as client:
        client.sendall(b"bye")
        assert client.recv(1024) == b"BYE"
    report = caps_server.assert_all_closed()
    [record] = report.closed
    assert (record.bytes_in, record.reason) == (3, "client closed")


def test_leaves_a_connection_open(caps_server_factory):
    server = caps_server_factory(shutdown_timeout=0.5)
    assert leaky_client(server.host, server.tcp_port) == b"HELLO"
'''

SESSION_SERVER = """
import socket

import pytest

from twisted_caps.testing import start_caps_process

STARTED = []


@pytest.fixture(scope="session")
def shared_caps():
    server = start_caps_process()
    STARTED.append(server)
    yield server
    server.stop()


@pytest.mark.parametrize("word", ["one", "two", "three"])
def test_many_tests_one_server(shared_caps, word):
    with socket.create_connection((shared_caps.host, shared_caps.tcp_port)) as client:
        client.sendall(word.encode())
        assert client.recv(1024) == word.upper().encode()
    shared_caps.assert_all_closed()


def test_it_was_one_server():
    assert len(STARTED) == 1
"""


#: pytest without pytest-twisted: the autograder's plain blocking tests.
PLAIN = ("-p", "no:twisted")


class InstructorTests(TestCase):
    def run_pytest(self, source: str, *options: str) -> subprocess.CompletedProcess[str]:
        """Run pytest on C{source} in a fresh directory; return what it did."""
        scratch = Path(self.mktemp()).resolve()
        scratch.mkdir(parents=True)
        (scratch / "test_user.py").write_text(textwrap.dedent(source))
        return subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *PLAIN, *options],
            cwd=scratch,
            capture_output=True,
            text=True,
            timeout=120,
        )

    def test_client_that_never_closes_is_seen_and_warned_about(self) -> None:
        """
        A client that never closes its socket shows in the server's report
        and fails C{assert_all_closed}, naming the connection; a test that
        leaves one open gets a warning in the summary naming it.
        """
        done = self.run_pytest(LEAKY_CLIENT)
        self.assertEqual(done.returncode, 0, done.stdout + done.stderr)
        self.assertIn("3 passed, 1 warning", done.stdout)
        self.assertIn(
            "ConnectionsLeftOpenWarning: caps_server: 1 connection(s) still open", done.stdout
        )
        self.assertIn("127.0.0.1 (", done.stdout)

    def test_autograder_can_make_a_left_open_connection_fail(self) -> None:
        """With the warning made an error, the leaky test fails, by name."""
        done = self.run_pytest(
            LEAKY_CLIENT, "-W", "error::twisted_caps.testing.ConnectionsLeftOpenWarning"
        )
        self.assertEqual(done.returncode, 1, done.stdout + done.stderr)
        self.assertIn("ERROR test_user.py::test_leaves_a_connection_open", done.stdout)
        self.assertIn("3 passed, 1 error", done.stdout)

    def test_session_scoped_server_for_many_tests(self) -> None:
        """The documented session-scoped server serves a whole class of tests."""
        done = self.run_pytest(SESSION_SERVER)
        self.assertEqual(done.returncode, 0, done.stdout + done.stderr)
        self.assertIn("4 passed", done.stdout)
