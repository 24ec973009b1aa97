"""An application that uses twisted_caps.client, tested with pytest-twisted."""

from collections.abc import Generator
from typing import Any

import pytest_twisted  # type: ignore[import-untyped]
from twisted.internet import reactor

from twisted_caps.client import capitalize_over_tcp, capitalize_over_udp
from twisted_caps.testing import CapsServerProcess


@pytest_twisted.inlineCallbacks  # type: ignore[untyped-decorator]
def test_client_library_against_the_fixture(
    caps_server: CapsServerProcess,
) -> Generator[Any, Any, None]:
    tcp = yield capitalize_over_tcp(reactor, caps_server.host, caps_server.tcp_port, b"hello")
    udp = yield capitalize_over_udp(reactor, caps_server.host, caps_server.udp_port, b"world")
    assert (tcp, udp) == (b"HELLO", b"WORLD")
