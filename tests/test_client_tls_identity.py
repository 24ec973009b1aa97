"""
The client's check that the server's certificate names the host: with
certificates made by the C{openssl} command line, as operators make them,
a certificate without subjectAltName or naming another host is refused
before any text is sent, by the library and by C{caps-client}.
"""

import re
from typing import cast

from cryptography import x509
from twisted.internet import reactor, ssl
from twisted.internet.interfaces import IReactorSSL
from twisted.internet.protocol import ClientFactory, Protocol, connectionDone
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.python.failure import Failure
from twisted.trial.unittest import TestCase

from tests.certificates import ServerFiles, openssl_self_signed, ssl_endpoint
from tests.servers import (
    HOST,
    KeptProtocols,
    caps_client,
    eventually,
    port_of,
    require_program,
    start_in_reactor,
    start_process,
    twistd,
    wait_for,
)
from twisted_caps.client import TLSVerificationError, capitalize_over_tcp, tls_client_options
from twisted_caps.client.tls_identity import IdentityCheckingCreator

NO_NAMES = "it has no subjectAltName (its subject, CN=other, is not used for names)"
BYTES_IN = re.compile(rb"(\d+) bytes in")


def certificate(case: TestCase, *alternative_names: str) -> ServerFiles:
    """A self-signed certificate for CN=other, made by the openssl command."""
    return openssl_self_signed(
        case.mktemp(), require_program("openssl"), "other", alternative_names
    )


class Recording(Protocol):
    """A server's protocol that keeps the bytes it receives."""

    def __init__(self) -> None:
        self.received = b""
        self.lost = False

    def dataReceived(self, data: bytes) -> None:
        self.received += data

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.lost = True


class LibraryTests(TestCase):
    """capitalize_over_tcp against a TLS server that records what reaches it."""

    def serve(self, files: ServerFiles) -> tuple[int, KeptProtocols[Recording]]:
        with open(files.certificate, "rb") as cert, open(files.key, "rb") as key:
            identity = ssl.PrivateCertificate.loadPEM(cert.read() + key.read())
        factory = KeptProtocols(Recording)
        port = cast(IReactorSSL, reactor).listenSSL(0, factory, identity.options(), interface=HOST)
        self.addCleanup(port.stopListening)
        return port.getHost().port, factory  # type: ignore[attr-defined]

    async def assert_refused(self, files: ServerFiles, host: str, message: str) -> None:
        port, server = self.serve(files)
        tls = tls_client_options(host, files.ca)
        with self.assertRaises(TLSVerificationError) as raised:
            await capitalize_over_tcp(reactor, host, port, b"secret", tls=tls)
        self.assertEqual(str(raised.exception), message)
        await eventually(lambda: server.built and server.built[0].lost)
        self.assertEqual([protocol.received for protocol in server.built], [b""])

    async def test_no_subject_alt_name_is_refused_by_name_and_by_address(self) -> None:
        files = certificate(self)
        for host in ("localhost", HOST):
            message = f"TLS certificate is not valid for {host}: {NO_NAMES}"
            await self.assert_refused(files, host, message)

    async def test_another_host_is_refused_with_the_names_it_has(self) -> None:
        files = certificate(self, "DNS:caps.example", "IP:192.0.2.1")
        message = "TLS certificate is not valid for localhost: it names caps.example, 192.0.2.1"
        await self.assert_refused(files, "localhost", message)

    async def test_a_name_does_not_stand_for_the_address_connected_to(self) -> None:
        files = certificate(self, "DNS:localhost")
        message = f"TLS certificate is not valid for {HOST}: it names localhost"
        await self.assert_refused(files, HOST, message)

    async def test_a_long_list_of_names_is_cut(self) -> None:
        files = certificate(self, *(f"DNS:host{n}.example" for n in range(8)))
        shown = ", ".join(f"host{n}.example" for n in range(5))
        message = f"TLS certificate is not valid for localhost: it names {shown} and 3 more"
        await self.assert_refused(files, "localhost", message)

    async def test_the_name_or_the_address_connected_to_is_accepted(self) -> None:
        files = certificate(self, "DNS:localhost", f"IP:{HOST}")
        port = port_of(start_in_reactor(self, "--tcp", ssl_endpoint(files), "--no-udp"), "TCP")
        for host in ("localhost", HOST):
            tls = tls_client_options(host, files.ca)
            self.assertEqual(await capitalize_over_tcp(reactor, host, port, b"hi", tls=tls), b"HI")


class CommandTests(TestCase):
    """caps-client --tls against twistd caps serving the openssl certificate."""

    def refused(self, files: ServerFiles, host: str, expected: str) -> None:
        daemon = start_process(self, twistd("--tcp", ssl_endpoint(files), "--no-udp"), ("TCP",))
        port = str(daemon.tcp_port)
        done = caps_client("--tls", "--ca", files.ca, "--host", host, "-p", port, "secret")
        self.assertEqual((done.returncode, done.stdout), (1, b""))
        line = f"caps-client: {host}:{port}: TLS certificate is not valid for {host}: {expected}"
        self.assertEqual(done.stderr.splitlines(), [line.encode()])
        wait_for(lambda: BYTES_IN.search(daemon.output))
        self.assertEqual(BYTES_IN.findall(daemon.output), [b"0"])

    def test_no_subject_alt_name_is_one_line_status_1_and_nothing_sent(self) -> None:
        self.refused(certificate(self), HOST, NO_NAMES)

    def test_another_host_is_one_line_status_1_and_nothing_sent(self) -> None:
        self.refused(certificate(self, "DNS:caps.example"), "localhost", "it names caps.example")

    def test_the_address_connected_to_is_accepted(self) -> None:
        files = certificate(self, f"IP:{HOST}")
        daemon = start_process(self, twistd("--tcp", ssl_endpoint(files), "--no-udp"), ("TCP",))
        done = caps_client(
            "--tls", "--ca", files.ca, "--host", HOST, "-p", str(daemon.tcp_port), "hi"
        )
        self.assertEqual((done.returncode, done.stdout, done.stderr), (0, b"HI\n", b""))


class ServerNameTests(TestCase):
    def test_a_name_idna_refuses_gets_no_server_name_and_is_checked_all_the_same(self) -> None:
        files = certificate(self, "DNS:localhost")
        with open(files.certificate, "rb") as pem:
            trusted = pem.read()
        creator = IdentityCheckingCreator("a..b", ssl.Certificate.loadPEM(trusted))
        wrapper = TLSMemoryBIOFactory(creator, True, ClientFactory.forProtocol(Protocol))
        tls_protocol = wrapper.buildProtocol(None)
        connection = creator.clientConnectionForTLS(tls_protocol)
        self.assertIsNone(connection.get_servername())
        self.assertEqual(
            creator.problem_with(x509.load_pem_x509_certificate(trusted)),
            "TLS certificate is not valid for a..b: it names localhost",
        )
