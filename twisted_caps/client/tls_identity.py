# -*- test-case-name: tests.test_client_tls_identity -*-
"""
The client's TLS settings: a certificate chain the trust root signs, and a
certificate that names the host connected to, checked during the handshake
so that nothing is written to a server that fails either.

Twisted's C{optionsForClientTLS} does the same, but its check lets the
handshake go on when C{service_identity} (24 and newer) raises
C{CertificateError}, as it does for a certificate with no subjectAltName:
the text then goes to a host the certificate does not name. This check
goes through public API only (C{CertificateOptions},
C{IOpenSSLClientConnectionCreator}, C{service_identity.cryptography}) and
counts every C{service_identity} error, indeed every error, as a failure.
"""

import ipaddress
from typing import Any

from cryptography import x509
from OpenSSL import SSL
from OpenSSL.crypto import X509
from service_identity import CertificateError, VerificationError
from service_identity.cryptography import (
    verify_certificate_hostname,
    verify_certificate_ip_address,
)
from twisted.internet.abstract import isIPAddress, isIPv6Address
from twisted.internet.interfaces import IOpenSSLClientConnectionCreator
from twisted.internet.ssl import CertificateOptions
from twisted.protocols.tls import TLSMemoryBIOProtocol
from twisted.python.failure import Failure
from zope.interface import implementer

from twisted_caps.core.option_values import one_line

#: The names of a certificate an error line lists at most; a certificate
#: may carry hundreds, and the line must stay readable.
MAX_NAMES_SHOWN = 5


class CertificateIdentityError(Exception):
    """The server's certificate does not name the host connected to; the message says why."""


@implementer(IOpenSSLClientConnectionCreator)
class IdentityCheckingCreator:
    """
    Client TLS connections that accept only a certificate chain signed by
    C{trust} whose leaf certificate names C{host} in its subjectAltName:
    the DNS name, or the IP address when C{host} is one. A certificate that
    fails ends the handshake with L{CertificateIdentityError}, whose one line
    says what the certificate names instead.
    """

    def __init__(self, host: str, trust: Any) -> None:
        self._host = host
        self._is_address = isIPAddress(host) or isIPv6Address(host)
        self._server_name = None if self._is_address else _server_name(host)
        self._options = CertificateOptions(trustRoot=trust)

    def clientConnectionForTLS(self, tlsProtocol: TLSMemoryBIOProtocol) -> SSL.Connection:
        """A connection that sends the host name (SNI) and checks the certificate's names."""
        connection = self._connection_for(tlsProtocol)
        if self._server_name is not None:
            connection.set_tlsext_host_name(self._server_name)
        connection.set_verify(
            SSL.VERIFY_PEER | SSL.VERIFY_FAIL_IF_NO_PEER_CERT, self._checker_for(tlsProtocol)
        )
        return connection

    def _connection_for(self, tlsProtocol: TLSMemoryBIOProtocol) -> SSL.Connection:
        """
        A connection with the trust root's settings: Twisted 24.7's
        C{CertificateOptions} has only the context to make one from; newer
        ones make the connection themselves, as they prefer.
        """
        if IOpenSSLClientConnectionCreator.providedBy(self._options):
            connection: SSL.Connection = self._options.clientConnectionForTLS(tlsProtocol)
            return connection
        return SSL.Connection(self._options.getContext(), None)

    def _checker_for(self, tlsProtocol: TLSMemoryBIOProtocol) -> Any:
        """
        The verify callback of one connection. OpenSSL calls it for each
        certificate of the chain, the server's own last (depth 0); returning
        False aborts the handshake before any application data is written.
        """

        def check(connection: SSL.Connection, cert: X509, error: int, depth: int, ok: int) -> bool:
            if not ok:
                return False  # OpenSSL's own verdict on the chain: its reason is reported
            if depth != 0:
                return True
            problem = self.problem_with(cert.to_cryptography())
            if problem is None:
                return True
            tlsProtocol.failVerification(Failure(CertificateIdentityError(problem)))
            return False

        return check

    def problem_with(self, certificate: x509.Certificate) -> str | None:
        """
        None if C{certificate} is valid for the host; otherwise one line
        that says why not. An exception is a failure too: an error raised
        in an OpenSSL callback would be lost, and the handshake go on.
        """
        try:
            if self._is_address:
                verify_certificate_ip_address(certificate, self._host)
            else:
                verify_certificate_hostname(certificate, self._host)
        except (VerificationError, CertificateError):
            pass
        except Exception as error:
            return one_line(f"TLS certificate cannot be checked for {self._host}: {error}")
        else:
            return None
        return one_line(f"TLS certificate is not valid for {self._host}: {names_of(certificate)}")


def _server_name(host: str) -> bytes | None:
    """C{host} as Server Name Indication sends it (IDNA), or None for a name IDNA refuses."""
    try:
        return host.encode("idna")
    except UnicodeError:
        return None  # the name check still refuses a certificate that does not name it


def names_of(certificate: x509.Certificate) -> str:
    """What C{certificate} names, in words: its subjectAltName, or the lack of one."""
    try:
        extension = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        subject = certificate.subject.rfc4514_string() or "empty"
        return f"it has no subjectAltName (its subject, {subject}, is not used for names)"
    except ValueError as error:
        return f"its subjectAltName cannot be read ({error})"
    names: list[str] = list(extension.value.get_values_for_type(x509.DNSName))
    addresses: list[ipaddress.IPv4Address | ipaddress.IPv6Address] = [
        address
        for address in extension.value.get_values_for_type(x509.IPAddress)
        if isinstance(address, (ipaddress.IPv4Address, ipaddress.IPv6Address))
    ]
    names.extend(str(address) for address in addresses)
    if not names:
        return "its subjectAltName names no host name or IP address"
    shown = ", ".join(names[:MAX_NAMES_SHOWN])
    more = len(names) - MAX_NAMES_SHOWN
    return f"it names {shown}" + (f" and {more} more" if more > 0 else "")
