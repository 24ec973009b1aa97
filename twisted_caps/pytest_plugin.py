# -*- test-case-name: tests.test_pytest_plugin -*-
"""
pytest fixtures for testing code against caps, active wherever twisted-caps
and pytest are installed (the C{pytest11} entry point C{twisted-caps}).

C{caps_server} is a caps server in a child process. A child process, not
this process's reactor, because a test body that blocks (a blocking socket
client, C{subprocess.run}) would stop an in-process reactor from serving:
in plain pytest nothing runs the reactor, and with pytest-twisted the reactor
runs in a greenlet that only gets control when the test yields. A child
serves either way. Nothing is imported or started unless a test asks for a
fixture, so other pytest runs are untouched.

A server stopped while the client under test still holds connections
(a client that never closes its socket) waits up to its shutdown timeout
for them, then the fixture issues a C{ConnectionsLeftOpenWarning} naming
them; C{caps_server.report()} and C{caps_server.assert_all_closed()} let a
test see and assert the connections itself (docs/autograding.md).
"""

import warnings
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from twisted_caps.testing.options import OptionValue
    from twisted_caps.testing.process import CapsServerProcess

StartCapsServer = Callable[..., "CapsServerProcess"]


@pytest.fixture
def caps_server_factory() -> Iterator[StartCapsServer]:
    """
    Start caps server processes with C{twistd caps} options, e.g.
    C{caps_server_factory(once=True)}; each is stopped after the test.
    """
    from twisted_caps.testing.process import start_caps_process

    started: list[CapsServerProcess] = []

    def start(*argv: str, **options: "OptionValue") -> "CapsServerProcess":
        server = start_caps_process(*argv, **options)
        started.append(server)
        return server

    yield start
    for server in reversed(started):
        server.stop()
        if server.left_open:
            warn_left_open(server)


def warn_left_open(server: "CapsServerProcess") -> None:
    """Warn that the client under test left connections open, naming them."""
    from twisted_caps.testing.process import ConnectionsLeftOpenWarning

    listed = "; ".join(str(record) for record in server.left_open)
    warnings.warn(
        ConnectionsLeftOpenWarning(
            f"caps_server: {len(server.left_open)} connection(s) still open when the test"
            f" ended (the client did not close its socket): {listed}"
        ),
        stacklevel=2,
    )


@pytest.fixture
def caps_server(caps_server_factory: StartCapsServer) -> "CapsServerProcess":
    """
    A caps server with the daemon's defaults on 127.0.0.1: C{.host},
    C{.tcp_port} and C{.udp_port} say where.
    """
    return caps_server_factory()
