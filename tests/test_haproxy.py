"""
deploy/haproxy: a real HAProxy, configured as the example, in front of two
caps services on loopback. Connections are spread over both servers, each
server logs the client's own address, and the health checks reach only the
metrics endpoints: they leave no line in either log and count against no
caps limit.
"""

import csv
import io
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from typing import cast

from twisted.internet import reactor
from twisted.internet.address import IPv4Address
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.protocol import Protocol
from twisted.internet.task import deferLater
from twisted.logger import ILogObserver, LogEvent, globalLogPublisher
from twisted.trial.unittest import TestCase

from tests.certificates import make_server_files, ssl_endpoint
from tests.servers import require_program, start_process, twistd, wait_for
from twisted_caps.client import _StreamExchange
from twisted_caps.operating.tap import Options
from twisted_caps.serving.service import CapsService

EXAMPLE = os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "deploy", "haproxy", "haproxy.cfg"
)
HOST = "127.0.0.1"
#: Clients connect from these loopback addresses, so the servers can tell them apart.
CLIENT_ADDRESSES = ("127.0.0.2", "127.0.0.3")
CLIENT_FACTORIES = "twisted.internet.endpoints.OneShotFactory"


def example_on_loopback(frontend: int, servers: list[tuple[int, int]], stats: str) -> str:
    """
    The example configuration with every address moved to loopback: the
    frontend on C{frontend}, one server per (caps port, metrics port) in
    C{servers}, logs to standard output, a stats socket at C{stats}.
    Everything else is the example's own.
    """
    with open(EXAMPLE) as file:
        lines = file.read().splitlines()
    result: list[str] = []
    for line in lines:
        setting = line.split()
        if setting[:2] == ["log", "/dev/log"]:
            result.append("    log stdout format raw " + " ".join(setting[2:]))
            result.append(f"    stats socket {stats} level user")
        elif setting[:1] == ["bind"]:
            result.append(f"    bind {HOST}:{frontend}")
        elif setting[:1] == ["server"]:
            continue
        else:
            result.append(line)
    result += [
        f"    server caps{n} {HOST}:{port} port {metrics}"
        for n, (port, metrics) in enumerate(servers, 1)
    ]
    text = "\n".join(result) + "\n"
    addresses = re.findall(r"\b\d+\.\d+\.\d+\.\d+\b", text)
    assert addresses and all(a.startswith("127.") for a in addresses), addresses
    return text


def unused_tcp_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


def check_statuses(stats: str) -> dict[str, str]:
    """Each server's last health check result (L7OK, L4CON...), from the stats socket."""
    with socket.socket(socket.AF_UNIX) as control:
        control.settimeout(5)
        control.connect(stats)
        control.sendall(b"show stat\n")
        answer = b"".join(iter(lambda: control.recv(65536), b"")).decode()
    rows = csv.DictReader(io.StringIO(answer.lstrip("# ")))
    return {row["svname"]: row["check_status"] for row in rows if row["svname"].startswith("caps")}


def run_haproxy(case: TestCase, configuration: str) -> tuple[subprocess.Popen[bytes], str]:
    """Run HAProxy in the foreground until the test ends; return it and its output's path."""
    haproxy = require_program("haproxy")
    path = os.path.abspath(case.mktemp())
    with open(path, "w") as file:
        file.write(configuration)
    checked = subprocess.run([haproxy, "-c", "-f", path], capture_output=True)
    case.assertEqual(checked.returncode, 0, checked.stdout + checked.stderr)
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

    case.addCleanup(stop)
    return process, output


async def until(predicate: Callable[[], object], timeout: float = 20) -> None:
    """Let the reactor run until C{predicate} is true; fail after C{timeout} seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting after {timeout}s")
        await deferLater(reactor, 0.05)


class HAProxyTests(TestCase):
    def start_caps(self, *argv: str) -> CapsService:
        """A caps service behind haproxy:tcp on loopback, with metrics."""
        options = Options()
        options.parseOptions(
            [
                "--tcp",
                f"haproxy:tcp:0:interface={HOST}",
                "--no-udp",
                "--metrics",
                f"tcp:0:interface={HOST}",
                *argv,
            ]
        )
        service = CapsService(options.config, reactor)
        service.startService()
        self.addCleanup(service.stopService)
        return service

    def start_haproxy(self, configuration: str) -> tuple[subprocess.Popen[bytes], str]:
        """Run HAProxy in the foreground; return it and the path of its output."""
        return run_haproxy(self, configuration)

    async def ask(self, port: int, source: str, data: bytes) -> tuple[bytes, IPv4Address]:
        """Send C{data} from address C{source}; the reply and the client's own address."""
        exchange = _StreamExchange(data)
        endpoint = TCP4ClientEndpoint(reactor, HOST, port, timeout=10, bindAddress=(source, 0))
        await connectProtocol(endpoint, exchange)
        local = exchange.transport.getHost()
        assert isinstance(local, IPv4Address)
        reply: bytes = await exchange.reply.addTimeout(10, reactor)
        return reply, local

    async def proxy_for(self, services: list[CapsService]) -> tuple[int, str]:
        """
        Start HAProxy, configured as the example, in front of C{services};
        wait until it has checked them all. Return its port and log path.
        """
        frontend = unused_tcp_port()
        # A UNIX socket path must be short (HAProxy allows 97 bytes).
        scratch = tempfile.mkdtemp(prefix="caps-haproxy-")
        self.addCleanup(shutil.rmtree, scratch, True)
        stats = os.path.join(scratch, "stats.sock")
        servers = [
            (service.ports[0].getHost().port, service.metrics_port.getHost().port)  # type: ignore[attr-defined,union-attr]
            for service in services
        ]
        haproxy, output = self.start_haproxy(example_on_loopback(frontend, servers, stats))

        def checks_passed() -> bool:
            if haproxy.poll() is not None:
                with open(output) as log:
                    self.fail(f"haproxy exited with status {haproxy.returncode}: {log.read()}")
            return os.path.exists(stats) and set(check_statuses(stats).values()) == {"L7OK"}

        # Every server has passed an HTTP check of its metrics endpoint.
        await until(checks_passed)
        return frontend, output

    async def test_spreads_clients_and_passes_their_addresses(self) -> None:
        services = [self.start_caps() for _ in range(2)]
        events: list[LogEvent] = []
        observer = cast(ILogObserver, events.append)
        globalLogPublisher.addObserver(observer)
        self.addCleanup(globalLogPublisher.removeObserver, observer)
        frontend, output = await self.proxy_for(services)

        clients: list[IPv4Address] = []
        for n in range(4):
            source = CLIENT_ADDRESSES[n % 2]
            reply, local = await self.ask(frontend, source, f"hello {n} from {source}".encode())
            self.assertEqual(reply, f"HELLO {n} FROM {source}".encode())
            clients.append(local)

        # Round robin: two connections each, and no health check among the
        # connections the servers admitted.
        self.assertEqual([service.stream_factory.accepted for service in services], [2, 2])

        # Each server logs each close with the client's own address.
        def closes() -> list[LogEvent]:
            return [e for e in events if e.get("log_format", "").startswith("caps: {peer} closed")]

        await until(lambda: len(closes()) == 4)
        by_server = Counter(id(event["log_source"]) for event in closes())
        self.assertEqual(
            sorted(by_server.values()), [2, 2], "each server logged two client connections"
        )
        self.assertEqual(
            Counter(event["peer"] for event in closes()), Counter(c.host for c in clients)
        )

        # HAProxy logs one line per client connection (naming the client's
        # address and port) and nothing per health check; caps logs nothing
        # but the four closes.
        def client_lines() -> list[str]:
            with open(output) as log:
                return [line for line in log if " caps caps_servers/" in line]

        await until(lambda: len(client_lines()) == 4)
        for line, client in zip(client_lines(), clients, strict=True):
            self.assertIn(f"{client.host}:{client.port} ", line)
        with open(output) as log:
            text = log.read()
        self.assertNotIn("Health check", text)
        self.assertEqual(
            [e for e in events if e["log_namespace"] != CLIENT_FACTORIES and e not in closes()],
            [],
        )

    async def test_per_peer_limit_counts_the_client_address_not_haproxy(self) -> None:
        [service] = services = [self.start_caps("--max-per-peer", "1")]
        frontend, _ = await self.proxy_for(services)
        first, second = CLIENT_ADDRESSES

        # One connection from the first address, held open (HAProxy connects
        # to the server, sending the PROXY header, as soon as it is accepted).
        held_endpoint = TCP4ClientEndpoint(reactor, HOST, frontend, bindAddress=(first, 0))
        held = await connectProtocol(held_endpoint, Protocol())
        assert held.transport is not None
        self.addCleanup(held.transport.abortConnection)
        await until(lambda: service.stream_factory.accepted == 1)

        # A second one from the same address is over the limit: closed at once.
        reply, _ = await self.ask(frontend, first, b"one too many")
        self.assertEqual(reply, b"")
        await until(lambda: sum(service.stream_factory.refused.values()) == 1)

        # Another address is still served.
        reply, _ = await self.ask(frontend, second, b"hello")
        self.assertEqual(reply, b"HELLO")
        self.assertEqual(service.stream_factory.accepted, 2)


def header_forms_configuration(
    caps: int, frontends: dict[str, str], stats: str, tls: bool = False
) -> str:
    """
    HAProxy with one frontend per (version, kind of frontend) in
    C{frontends} (name to bind address: a TCP port or a UNIX socket path),
    each sending to caps on port C{caps} with that version of the PROXY
    protocol, over TLS if C{tls}; health checks also send a PROXY header,
    then expect caps to answer "hello" with "HELLO".
    """
    server_tls = " ssl verify none check-ssl" if tls else ""
    lines = [
        "global",
        f"    stats socket {stats} level user",
        "defaults",
        "    mode tcp",
        "    timeout connect 5s",
        "    timeout client 10s",
        "    timeout server 10s",
        "    timeout check 2s",
    ]
    for name, bind in frontends.items():
        lines += [f"frontend {name}", f"    bind {bind}", f"    default_backend {name[-2:]}"]
    for version, option in (("v1", "send-proxy"), ("v2", "send-proxy-v2")):
        lines += [
            f"backend {version}",
            "    option tcp-check",
            "    tcp-check send hello",
            "    tcp-check expect string HELLO",
            f"    server caps{version} {HOST}:{caps} {option}{server_tls}"
            " check check-send-proxy inter 300ms",
        ]
    return "\n".join(lines) + "\n"


class HeaderFormTests(TestCase):
    """
    The installed daemon behind the real HAProxy, for every kind of
    frontend and both versions of the PROXY protocol: TCP frontends send
    TCP4 (v1) or PROXY AF_INET (v2); UNIX-socket frontends send
    "PROXY UNKNOWN" (v1) or LOCAL (v2); health checks send a header too.
    """

    def test_every_frontend_and_version_is_served(self) -> None:
        """
        Through each frontend the client's text comes back capitalized, and
        the PROXY health checks (v1 and v2) get their answer: no form that
        HAProxy sends is refused (PROXY UNKNOWN used to be).
        """
        self.serve_through_haproxy(f"haproxy:tcp:0:interface={HOST}", tls=False)

    def test_tls_to_caps_starts_after_the_header(self) -> None:
        """
        With C{server ... ssl send-proxy}, HAProxy sends the PROXY header
        first, then starts TLS; a C{haproxy:ssl:} listener reads them in
        that order (Twisted's own expects the header inside TLS).
        """
        files = make_server_files(self.mktemp())
        listener = f"haproxy:{ssl_endpoint(files)}"
        self.serve_through_haproxy(listener, tls=True)

    def serve_through_haproxy(self, listener: str, tls: bool) -> None:
        """Ask the daemon on C{listener} through every frontend of HAProxy."""
        daemon = start_process(self, twistd("--tcp", listener, "--no-udp"), ("TCP",))
        assert daemon.tcp_port
        scratch = tempfile.mkdtemp(prefix="caps-haproxy-")
        self.addCleanup(shutil.rmtree, scratch, True)
        stats = os.path.join(scratch, "stats.sock")
        tcp = {"tcp_v1": unused_tcp_port(), "tcp_v2": unused_tcp_port()}
        unix = {name: os.path.join(scratch, f"{name}.sock") for name in ("unix_v1", "unix_v2")}
        frontends = {**{name: f"{HOST}:{port}" for name, port in tcp.items()}, **unix}
        haproxy, output = run_haproxy(
            self, header_forms_configuration(daemon.tcp_port, frontends, stats, tls)
        )

        def checks_passed() -> bool:
            if haproxy.poll() is not None:
                with open(output) as log:
                    self.fail(f"haproxy exited with status {haproxy.returncode}: {log.read()}")
            return os.path.exists(stats) and set(check_statuses(stats).values()) == {"L7OK"}

        wait_for(checks_passed)
        for name, port in tcp.items():
            with socket.create_connection((HOST, port), timeout=10) as client:
                self.assertEqual(
                    exchange(client, f"hello from {name}"), f"HELLO FROM {name.upper()}"
                )
        for name, path in unix.items():
            with socket.socket(socket.AF_UNIX) as client:
                client.settimeout(10)
                client.connect(path)
                self.assertEqual(
                    exchange(client, f"hello from {name}"), f"HELLO FROM {name.upper()}"
                )
        self.assertNotIn(b"Traceback", daemon.output)
        self.assertNotIn(b"refused", daemon.output)


def exchange(client: socket.socket, text: str) -> str:
    """Send C{text} through HAProxy, half-close, and read the whole answer."""
    client.sendall(text.encode())
    client.shutdown(socket.SHUT_WR)
    return b"".join(iter(lambda: client.recv(65536), b"")).decode()
