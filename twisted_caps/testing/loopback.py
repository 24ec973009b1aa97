# -*- test-case-name: tests.test_testing -*-
"""
A real caps server on loopback in the reactor of a trial test: ephemeral
ports, and a cleanup that leaves the reactor clean.
"""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from twisted.internet.address import IPv4Address, IPv6Address

from twisted_caps.serving.service import CapsService
from twisted_caps.testing.address import CapsAddress
from twisted_caps.testing.options import OptionValue, caps_config


@dataclass
class LoopbackCapsServer(CapsAddress):
    """A caps server running in this process's reactor."""

    service: CapsService


class Cleanups(Protocol):
    """What L{start_caps_server} needs of a test: trial's C{addCleanup}."""

    def addCleanup(self, f: Callable[[], object], /) -> None: ...


def start_caps_server(case: Cleanups, *argv: str, **options: OptionValue) -> LoopbackCapsServer:
    """
    Start a caps server in the reactor of trial test C{case}, on
    127.0.0.1 (override with C{interface="::1"}) and free ports, configured
    like C{twistd caps} (C{once=True}, or any daemon option; see
    L{caps_argv}).

    Cleanup stops it as the daemon stops: it stops listening and closes
    every connection gracefully, and waits until all are closed, so trial
    finds the reactor clean. A connection a client leaves open takes up to
    C{--shutdown-timeout} seconds (5) to close; C{shutdown_timeout=0}
    closes it at once.

    @raise ValueError: for options the daemon would refuse.
    """
    from twisted.internet import reactor

    service = CapsService(caps_config(*argv, **options), reactor)
    service.startService()
    case.addCleanup(service.stopService)
    ports: dict[str, tuple[str, int]] = {}
    for port in service.ports:
        address = port.getHost()
        if isinstance(address, IPv4Address | IPv6Address):
            ports.setdefault(address.type, (address.host, address.port))
    host = (ports.get("TCP") or ports.get("UDP") or ("127.0.0.1", 0))[0]
    return LoopbackCapsServer(
        host,
        ports.get("TCP", (host, None))[1],
        ports.get("UDP", (host, None))[1],
        service,
    )
