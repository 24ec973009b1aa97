# -*- test-case-name: tests.test_client -*-
"""
Ask a caps server to capitalize text, over TCP (optionally TLS) or UDP. The
C{caps-client} command is L{twisted_caps.client.command}; this library
loads nothing of the server.

Both calls return a Deferred that fires with the reply bytes, or fails with
C{ConnectionRefusedError}, C{DNSLookupError} or C{TimeoutError}: a server
that never answers cannot make a caller wait longer than C{timeout}. Over
TCP a connection that ends otherwise than by the server's close (a reset)
fails the call with the reason Twisted gives (C{ConnectionLost}); over
TLS, a certificate that is untrusted or does not name the host fails it
with L{TLSVerificationError}, before any text is sent. A server that closes
without a reply gives C{b""}.
"""

from typing import Any

from twisted.internet import error
from twisted.internet.abstract import isIPAddress, isIPv6Address
from twisted.internet.defer import Deferred, ensureDeferred
from twisted.internet.endpoints import HostnameEndpoint, connectProtocol
from twisted.internet.interfaces import (
    IDelayedCall,
    IHandshakeListener,
    IOpenSSLClientConnectionCreator,
    IReactorTime,
    ITCPTransport,
    IUDPTransport,
)
from twisted.internet.protocol import DatagramProtocol, Protocol, connectionDone
from twisted.python.failure import Failure
from zope.interface import implementer

from twisted_caps.core.addresses import host_port
from twisted_caps.core.limits import DATAGRAM_READ_SIZE
from twisted_caps.core.pem_files import read_pem_file

DEFAULT_TIMEOUT = 5.0
DEFAULT_UDP_RETRIES = 2
PROMPT = b"Input lowercase sentence: "


class TLSVerificationError(Exception):
    """The server's TLS certificate is not trusted or names another host."""


@implementer(IHandshakeListener)
class _StreamExchange(Protocol):
    """
    Send the text, signal the end of input, and collect the reply until the
    server closes.

    Over plain TCP the end of input is a half-close (FIN). Over TLS it is a
    close_notify alert sent once the handshake is done: Twisted's TLS
    transport has no half-close of its own (its C{loseWriteConnection}
    would shut down the TCP socket under TLS, before the handshake can
    finish), while C{loseConnection} sends close_notify and keeps reading
    until the server's own close_notify.
    """

    transport: ITCPTransport

    def __init__(self, data: bytes, tls: bool = False) -> None:
        self._data = data
        self._tls = tls
        self._chunks: list[bytes] = []
        self.reply: Deferred[bytes] = Deferred(lambda _: self.transport.abortConnection())

    def connectionMade(self) -> None:
        if not self._tls:
            self.transport.write(self._data)
            self.transport.loseWriteConnection()

    def handshakeCompleted(self) -> None:
        self.transport.write(self._data)
        self.transport.loseConnection()

    def dataReceived(self, data: bytes) -> None:
        self._chunks.append(data)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        if self.reply.called:
            return
        if reason.check(error.ConnectionDone):
            self.reply.callback(b"".join(self._chunks))
        elif self._tls and _is_verification_failure(reason):
            self.reply.errback(TLSVerificationError(_verification_message(reason)))
        else:
            self.reply.errback(reason)


def tls_client_options(host: str, ca_file: str | None = None) -> IOpenSSLClientConnectionCreator:
    """
    TLS settings that accept only a certificate for C{host} (a DNS name or
    an IP address, which its subjectAltName must name) signed by the CA in
    the PEM file C{ca_file}, or by one the system trusts when C{ca_file} is
    None. A certificate that fails is refused during the handshake, before
    any text is sent (see L{twisted_caps.client.tls_identity}). Needs the
    C{tls} extra.

    @raise ValueError: with one line, if C{ca_file} cannot be read or is
        not a regular file of at most 1 MiB.
    """
    from twisted.internet import ssl

    from twisted_caps.client.tls_identity import IdentityCheckingCreator

    trust: Any = ssl.platformTrust()
    if ca_file is not None:
        trust = ssl.Certificate.loadPEM(read_pem_file(ca_file, "--ca"))
    return IdentityCheckingCreator(host, trust)


def _is_verification_failure(reason: Failure) -> bool:
    from OpenSSL import SSL

    from twisted_caps.client.tls_identity import CertificateIdentityError

    return reason.check(SSL.Error, CertificateIdentityError) is not None


def _verification_message(reason: Failure) -> str:
    """One line for a failed TLS handshake: OpenSSL's reason, or what the certificate names."""
    from OpenSSL import SSL

    value = reason.value
    if isinstance(value, SSL.Error):
        reasons = [
            entry[2] for entry in value.args[0] if isinstance(entry, tuple) and len(entry) == 3
        ]
        return "TLS handshake failed: " + ("; ".join(reasons) or str(value))
    return str(value)


def capitalize_over_tcp(
    reactor: Any,
    host: str,
    port: int,
    data: bytes,
    timeout: float = DEFAULT_TIMEOUT,
    tls: IOpenSSLClientConnectionCreator | None = None,
) -> "Deferred[bytes]":
    """
    Capitalize C{data} on the caps server at C{host}:C{port} over TCP, or
    over TLS with the settings C{tls} (see L{tls_client_options}).

    The whole exchange (connect, send, receive until the server closes)
    must finish within C{timeout} seconds.
    """
    exchange = _StreamExchange(data, tls=tls is not None)
    endpoint: Any = HostnameEndpoint(reactor, host, port, timeout=timeout)
    if tls is not None:
        from twisted.internet.endpoints import wrapClientTLS

        endpoint = wrapClientTLS(tls, endpoint)
    result: Deferred[bytes] = connectProtocol(endpoint, exchange).addCallback(
        lambda _: exchange.reply
    )
    return result.addTimeout(timeout, reactor, onTimeoutCancel=_no_reply_from(host, port))


class _DatagramExchange(DatagramProtocol):
    """Send a datagram, resend it on silence, fire with the first reply."""

    transport: IUDPTransport

    def __init__(
        self,
        clock: IReactorTime,
        address: tuple[str, int],
        data: bytes,
        sends: int,
        interval: float,
    ) -> None:
        self._clock = clock
        self._address = address
        self._data = data
        self._sends_left = sends
        self._interval = interval
        self._resend: IDelayedCall | None = None
        self._listening = False
        self.reply: Deferred[bytes] = Deferred(lambda _: self._close())

    def startProtocol(self) -> None:
        self._listening = True
        self.transport.connect(*self._address)

    def stopProtocol(self) -> None:
        # Twisted's epoll reactor closes a connected UDP port when the kernel
        # reports ICMP port-unreachable, instead of calling connectionRefused.
        self._listening = False
        self._finish(error.ConnectionRefusedError(host_port(*self._address)))

    def send(self) -> None:
        """Send the datagram, and again after each silent interval."""
        if self._sends_left == 0:
            self._finish(error.TimeoutError(f"no reply from {host_port(*self._address)}"))
            return
        self._sends_left -= 1
        self._resend = self._clock.callLater(self._interval, self.send)
        try:
            self.transport.write(self._data, self._address)
        except (error.MessageLengthError, OSError) as refused:
            # The kernel refused the datagram (too long, no route): that is
            # the outcome, and the port must close before the reactor stops.
            self._finish(refused)

    def datagramReceived(self, datagram: bytes, addr: Any) -> None:
        self._finish(datagram)

    def connectionRefused(self) -> None:
        self._finish(error.ConnectionRefusedError(host_port(*self._address)))

    def _finish(self, outcome: bytes | Exception) -> None:
        if self.reply.called:
            return
        self._close()
        if isinstance(outcome, Exception):
            self.reply.errback(outcome)
        else:
            self.reply.callback(outcome)

    def _close(self) -> None:
        if self._resend is not None and self._resend.active():
            self._resend.cancel()
        if self._listening:
            self._listening = False
            self.transport.stopListening()


async def _resolve(reactor: Any, host: str) -> str:
    if isIPAddress(host) or isIPv6Address(host):
        return host
    address: str = await reactor.resolve(host)
    return address


def capitalize_over_udp(
    reactor: Any,
    host: str,
    port: int,
    data: bytes,
    timeout: float = DEFAULT_TIMEOUT,
    retries: int = DEFAULT_UDP_RETRIES,
) -> "Deferred[bytes]":
    """
    Capitalize C{data} on the caps server at C{host}:C{port} over UDP.

    UDP may lose the datagram or its reply, so the datagram is sent
    C{1 + retries} times, evenly spaced over C{timeout} seconds, until a
    reply arrives; after C{timeout} seconds of silence the call fails with
    C{TimeoutError}.
    """

    async def exchange() -> bytes:
        address = await _resolve(reactor, host)
        sends = 1 + retries
        protocol = _DatagramExchange(reactor, (address, port), data, sends, timeout / sends)
        interface = "::" if isIPv6Address(address) else ""
        reactor.listenUDP(0, protocol, interface=interface, maxPacketSize=DATAGRAM_READ_SIZE)
        protocol.send()
        return await protocol.reply

    result = ensureDeferred(exchange())
    # The name lookup counts too: a resolver that never answers cannot hold the caller.
    return result.addTimeout(timeout, reactor, onTimeoutCancel=_no_reply_from(host, port))


def _no_reply_from(host: str, port: int) -> Any:
    """Turn a timed-out exchange into the C{TimeoutError} that names the server."""

    def timed_out(result: object, timeout: float) -> None:
        raise error.TimeoutError(f"no reply from {host_port(host, port)}")

    return timed_out
