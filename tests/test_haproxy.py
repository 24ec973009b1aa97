"""
deploy/haproxy: a real HAProxy, configured as the example, in front of two
caps servers on loopback. Connections are spread over both servers, each
server sees the client's own address, and health checks leave no trace in
either log.
"""

import os
import re
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from typing import cast

from twisted.internet import reactor
from twisted.internet.address import IPv4Address
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.task import deferLater
from twisted.logger import ILogObserver, LogEvent, globalLogPublisher
from twisted.trial.unittest import TestCase

from tests.servers import require_program
from twisted_caps.client import _StreamExchange
from twisted_caps.service import CapsService
from twisted_caps.stream import CapsStreamFactory, CapsStreamProtocol
from twisted_caps.tap import Options

EXAMPLE = os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "deploy", "haproxy", "haproxy.cfg"
)
HOST = "127.0.0.1"
#: Clients connect from these loopback addresses, so each server can tell them apart.
CLIENT_ADDRESSES = ("127.0.0.2", "127.0.0.3")


class RecordingStreamFactory(CapsStreamFactory):
    """The caps factory, noting the peer address each connection reports."""

    def __init__(self) -> None:
        super().__init__()
        self.peers: list[IPv4Address] = []

    def buildProtocol(self, addr: object) -> CapsStreamProtocol:
        protocol = _RecordingStreamProtocol(self.peers)
        protocol.factory = self
        return protocol


class _RecordingStreamProtocol(CapsStreamProtocol):
    def __init__(self, peers: list[IPv4Address]) -> None:
        super().__init__()
        self._peers = peers

    def connectionMade(self) -> None:
        # Behind the haproxy: endpoint, connectionMade comes once the PROXY
        # header is read, and getPeer is the address it carries.
        peer = self.transport.getPeer()
        assert isinstance(peer, IPv4Address)
        self._peers.append(peer)
        super().connectionMade()


def example_on_loopback(frontend: int, servers: list[int]) -> str:
    """
    The example configuration with every address moved to loopback: the
    frontend on C{frontend}, one server per port in C{servers}, logs to
    standard output. Everything else is the example's own.
    """
    with open(EXAMPLE) as file:
        lines = file.read().splitlines()
    result: list[str] = []
    for line in lines:
        setting = line.split()
        if setting[:2] == ["log", "/dev/log"]:
            result.append("    log stdout format raw " + " ".join(setting[2:]))
        elif setting[:1] == ["bind"]:
            result.append(f"    bind {HOST}:{frontend}")
        elif setting[:1] == ["server"]:
            continue
        else:
            result.append(line)
    result += [f"    server caps{n} {HOST}:{port}" for n, port in enumerate(servers, 1)]
    text = "\n".join(result) + "\n"
    addresses = re.findall(r"\b\d+\.\d+\.\d+\.\d+\b", text)
    assert addresses and all(a.startswith("127.") for a in addresses), addresses
    return text


def unused_tcp_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


async def until(predicate: Callable[[], object], timeout: float = 20) -> None:
    """Let the reactor run until C{predicate} is true; fail after C{timeout} seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting after {timeout}s")
        await deferLater(reactor, 0.05)


class HAProxyTests(TestCase):
    def start_caps(self) -> tuple[int, RecordingStreamFactory]:
        """A caps service behind haproxy:tcp on loopback, recording peers."""
        options = Options()
        options.parseOptions(["--tcp", f"haproxy:tcp:0:interface={HOST}", "--no-udp"])
        service = CapsService(options.config, reactor)
        factory = service.stream_factory = RecordingStreamFactory()
        service.startService()
        self.addCleanup(service.stopService)
        return service.ports[0].getHost().port, factory  # type: ignore[attr-defined]

    def start_haproxy(self, configuration: str) -> tuple[subprocess.Popen[bytes], str]:
        """Run HAProxy in the foreground; return it and the path of its output."""
        haproxy = require_program("haproxy")
        path = os.path.abspath(self.mktemp())
        with open(path, "w") as file:
            file.write(configuration)
        checked = subprocess.run([haproxy, "-c", "-q", "-f", path], capture_output=True)
        self.assertEqual(checked.returncode, 0, checked.stderr)
        output = path + ".log"
        with open(output, "wb") as log:
            process = subprocess.Popen(
                [haproxy, "-db", "-f", path], stdout=log, stderr=log, stdin=subprocess.DEVNULL
            )

        def stop() -> None:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=15)
            finally:
                if process.poll() is None:
                    process.kill()
                    process.wait()

        self.addCleanup(stop)
        return process, output

    async def ask(self, port: int, source: str, data: bytes) -> tuple[bytes, IPv4Address]:
        """Send C{data} from address C{source}; the reply and the client's own address."""
        exchange = _StreamExchange(data)
        endpoint = TCP4ClientEndpoint(reactor, HOST, port, timeout=10, bindAddress=(source, 0))
        await connectProtocol(endpoint, exchange)
        local = exchange.transport.getHost()
        assert isinstance(local, IPv4Address)
        reply: bytes = await exchange.reply.addTimeout(10, reactor)
        return reply, local

    async def test_spreads_clients_and_passes_their_addresses(self) -> None:
        servers = [self.start_caps() for _ in range(2)]
        events: list[LogEvent] = []
        observer = cast(ILogObserver, events.append)
        globalLogPublisher.addObserver(observer)
        self.addCleanup(globalLogPublisher.removeObserver, observer)
        frontend = unused_tcp_port()
        configuration = example_on_loopback(frontend, [port for port, _ in servers])
        haproxy, output = self.start_haproxy(configuration)

        def checked_both() -> bool:
            if haproxy.poll() is not None:
                with open(output) as log:
                    self.fail(f"haproxy exited with status {haproxy.returncode}: {log.read()}")
            return all(factory.peers for _, factory in servers)

        # HAProxy checks each server soon after start; the first check to
        # reach both means HAProxy is up, listening, and checking.
        await until(checked_both)
        checks = [len(factory.peers) for _, factory in servers]

        clients: list[IPv4Address] = []
        for n in range(4):
            source = CLIENT_ADDRESSES[n % 2]
            reply, local = await self.ask(frontend, source, f"hello {n} from {source}".encode())
            self.assertEqual(reply, f"HELLO {n} FROM {source}".encode())
            clients.append(local)

        # Round robin: two connections each; every server saw exactly the
        # addresses and ports the clients connected from.
        seen = [factory.peers[count:] for count, (_, factory) in zip(checks, servers, strict=True)]
        client_peers = [[p for p in peers if p.host in CLIENT_ADDRESSES] for peers in seen]
        self.assertEqual([len(peers) for peers in client_peers], [2, 2])
        self.assertEqual(
            sorted((p.host, p.port) for peers in client_peers for p in peers),
            sorted((c.host, c.port) for c in clients),
        )

        # HAProxy logs one line per client connection (naming the client)
        # and nothing per health check; caps logs nothing at all.
        def client_lines() -> list[str]:
            with open(output) as log:
                return [line for line in log if " caps caps_servers/" in line]

        await until(lambda: len(client_lines()) == 4)
        for line, client in zip(client_lines(), clients, strict=True):
            self.assertIn(f"{client.host}:{client.port} ", line)
        with open(output) as log:
            text = log.read()
        self.assertNotIn("Health check", text)
        client_factories = "twisted.internet.endpoints.OneShotFactory"
        self.assertEqual([e for e in events if e["log_namespace"] != client_factories], [])
