"""Tests for L{twisted_caps.serving.service}."""

import errno
import os
import shutil
import socket
import tempfile
from typing import Any

from twisted.internet import reactor
from twisted.internet.address import IPv4Address
from twisted.internet.error import CannotListenError
from twisted.internet.protocol import DatagramProtocol
from twisted.internet.testing import MemoryReactor
from twisted.trial.unittest import SynchronousTestCase, TestCase

from twisted_caps.operating.tap import Options
from twisted_caps.serving.config import CapsConfig
from twisted_caps.serving.datagram import CapsDatagramProtocol
from twisted_caps.serving.service import SHARED_PORT_ATTEMPTS, CapsService, ListenError
from twisted_caps.serving.stream import CapsStreamFactory


class RecordingPort:
    """A listening port that remembers whether it was stopped."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.stopped = False

    def getHost(self) -> IPv4Address:
        return IPv4Address("UDP", "0.0.0.0", self.port)

    def stopListening(self) -> None:
        self.stopped = True


class MemoryReactorWithUDP(MemoryReactor):
    """L{MemoryReactor}, which has no C{listenUDP}, plus one that records."""

    def __init__(self) -> None:
        super().__init__()
        self.udpServers: list[tuple[int, DatagramProtocol, str]] = []

    def listenUDP(
        self, port: int, protocol: DatagramProtocol, interface: str = "", maxPacketSize: int = 8192
    ) -> Any:
        self.udpServers.append((port, protocol, interface))
        return RecordingPort(port)


def config_for(*argv: str) -> CapsConfig:
    options = Options()
    options.parseOptions(list(argv))
    return options.config


class CapsServiceTests(SynchronousTestCase):
    def test_listeners_open_in_privileged_start_and_only_once(self) -> None:
        memory = MemoryReactorWithUDP()
        service = CapsService(config_for("--udp", "127.0.0.1:4001", "--udp", "4002"), memory)
        service.privilegedStartService()
        service.startService()
        [(port, factory, _, interface)] = memory.tcpServers
        self.assertEqual((port, interface), (1200, "0.0.0.0"))
        self.assertIsInstance(factory, CapsStreamFactory)
        self.assertEqual(
            [(p, type(proto), i) for p, proto, i in memory.udpServers],
            [(4001, CapsDatagramProtocol, "127.0.0.1"), (4002, CapsDatagramProtocol, "")],
        )
        self.assertEqual(len(service.ports), 3)

    def test_start_without_privileged_start_listens(self) -> None:
        memory = MemoryReactorWithUDP()
        CapsService(config_for("--no-udp"), memory).startService()
        self.assertEqual(len(memory.tcpServers), 1)

    def test_once_reaches_the_factory(self) -> None:
        service = CapsService(config_for("--once"), MemoryReactorWithUDP())
        self.assertTrue(service.stream_factory.once)

    def test_status_counts_open_and_accepted_connections(self) -> None:
        """The SIGUSR2 line's words come from the service that knows them."""
        service = CapsService(config_for(), MemoryReactorWithUDP())
        factory = service.stream_factory
        factory.accepted = 7
        factory.connections.add(factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 5000)))
        self.assertEqual(service.status(), "1 TCP connections open, 7 accepted")

    def test_stop_closes_every_listener(self) -> None:
        memory = MemoryReactorWithUDP()
        service = CapsService(config_for(), memory)
        service.startService()
        [udp_port] = [p for p in service.ports if isinstance(p, RecordingPort)]
        self.successResultOf(service.stopService())
        self.assertTrue(udp_port.stopped)
        self.assertEqual(service.ports, [])


class ListenFailureTests(TestCase):
    def test_port_in_use_is_one_line_naming_the_address(self) -> None:
        taken = socket.socket()
        self.addCleanup(taken.close)
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        service = CapsService(
            config_for("-i", "127.0.0.1", "-p", "0", "--tcp", f"tcp:{port}:interface=127.0.0.1"),
            reactor,
        )
        error = self.assertRaises(ListenError, service.privilegedStartService)
        self.assertIn(f"127.0.0.1:{port}", str(error.code))
        self.assertIn("in use", str(error.code))
        self.assertEqual(service.ports, [])

    def test_earlier_listeners_are_closed_when_a_later_one_fails(self) -> None:
        taken = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.addCleanup(taken.close)
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]
        service = CapsService(
            config_for("--tcp", "tcp:0:interface=127.0.0.1", "--udp", f"127.0.0.1:{port}"),
            reactor,
        )
        self.assertRaises(ListenError, service.startService)
        self.assertEqual(service.ports, [])
        # The TCP port opened first must be gone: nothing is left for trial's
        # dirty-reactor check to find.

    def test_listen_failure_is_both_exit_and_exception(self) -> None:
        self.assertTrue(issubclass(ListenError, SystemExit))
        self.assertTrue(issubclass(ListenError, Exception))


class UDPPortsTaken:
    """The real reactor, except that the first C{taken} UDP binds find their port in use."""

    def __init__(self, taken: int) -> None:
        self.taken = taken
        self.refused: list[int] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(reactor, name)

    def listenUDP(
        self, port: int, protocol: DatagramProtocol, interface: str = "", maxPacketSize: int = 8192
    ) -> Any:
        if len(self.refused) < self.taken:
            self.refused.append(port)
            in_use = OSError(errno.EADDRINUSE, "Address already in use")
            raise CannotListenError(interface, port, in_use)
        return reactor.listenUDP(  # type: ignore[attr-defined]
            port, protocol, interface=interface, maxPacketSize=maxPacketSize
        )


class SharedPortTests(TestCase):
    def ports(self, service: CapsService) -> dict[str, int]:
        return {p.getHost().type: p.getHost().port for p in service.ports}  # type: ignore[attr-defined]

    def test_port_0_is_one_port_for_tcp_and_udp(self) -> None:
        """--port 0 asks the kernel for one free port and binds TCP and UDP to it."""
        service = CapsService(config_for("-i", "127.0.0.1", "-p", "0"), reactor)
        service.startService()
        self.addCleanup(service.stopService)
        ports = self.ports(service)
        self.assertEqual(ports["TCP"], ports["UDP"])
        self.assertNotEqual(ports["TCP"], 0)

    def test_a_taken_udp_port_means_another_try(self) -> None:
        """If UDP cannot have the port the kernel gave TCP, both move to another free port."""
        fake = UDPPortsTaken(taken=2)
        service = CapsService(config_for("-i", "127.0.0.1", "-p", "0"), fake)
        service.startService()
        self.addCleanup(service.stopService)
        ports = self.ports(service)
        self.assertEqual(len(fake.refused), 2)
        self.assertEqual(ports["TCP"], ports["UDP"])
        self.assertEqual(len(service.ports), 2)

    def test_no_shared_port_after_the_attempts_is_one_line(self) -> None:
        fake = UDPPortsTaken(taken=SHARED_PORT_ATTEMPTS)
        service = CapsService(config_for("-i", "127.0.0.1", "-p", "0"), fake)
        error = self.assertRaises(ListenError, service.startService)
        self.assertEqual(
            error.code,
            f"caps: no free port for TCP and UDP alike in {SHARED_PORT_ATTEMPTS} attempts",
        )
        self.assertEqual(service.ports, [])

    def test_listeners_that_cannot_share_get_ports_of_their_own(self) -> None:
        """Two TCP listeners asked for 0 on one address: each its own port; UDP takes the first."""
        service = CapsService(
            config_for(
                *("--tcp", "tcp:0:interface=127.0.0.1", "--tcp", "tcp:0:interface=127.0.0.1"),
                *("--udp", "127.0.0.1:0", "--udp", "127.0.0.1:0"),
            ),
            reactor,
        )
        service.startService()
        self.addCleanup(service.stopService)
        numbers = [p.getHost().port for p in service.ports]  # type: ignore[attr-defined]
        first_tcp, second_tcp, first_udp, second_udp = numbers
        self.assertNotEqual(first_tcp, second_tcp)
        self.assertEqual(first_udp, first_tcp)
        self.assertNotEqual(second_udp, first_udp)

    def test_unix_and_fixed_listeners_beside_port_0(self) -> None:
        """Listeners not asked for 0 (a UNIX path, a fixed port) open as configured."""
        scratch = tempfile.mkdtemp(prefix="caps-")  # short: a socket path fits in 107 bytes
        self.addCleanup(shutil.rmtree, scratch)
        path = os.path.join(scratch, "caps.sock")
        listeners = ("--tcp", f"unix:{path}", "--tcp", "tcp:0:interface=127.0.0.1")
        service = CapsService(config_for("-i", "127.0.0.1", "-p", "0", *listeners), reactor)
        service.startService()
        self.addCleanup(service.stopService)
        self.assertTrue(os.path.exists(path))
        self.assertEqual(len(service.ports), 3)

    def test_a_fixed_port_is_not_moved(self) -> None:
        """Only listeners asked for 0 share: a taken fixed port is an error, not a retry."""
        fake = UDPPortsTaken(taken=1)
        service = CapsService(config_for("-i", "127.0.0.1", "--no-tcp", "-p", "1200"), fake)
        error = self.assertRaises(ListenError, service.startService)
        self.assertEqual(error.code, "caps: UDP 127.0.0.1:1200: Address already in use")
