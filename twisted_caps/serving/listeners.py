# -*- test-case-name: tests.unit.test_listeners,tests.test_tap,tests.test_systemd -*-
"""
The endpoint a stream listener listens through, built from its endpoint
string where listening happens (the service, and the option checks that
try it before anything listens).
"""

from typing import Any

from twisted.internet import endpoints
from twisted.internet.interfaces import IStreamServerEndpoint

from twisted_caps.serving.config import TcpListener
from twisted_caps.serving.endpoint_strings import EndpointString
from twisted_caps.serving.systemd_sockets import systemd_endpoint


def stream_endpoint(listener: TcpListener, reactor: Any) -> IStreamServerEndpoint:
    """
    Parse C{listener}'s description into an endpoint of C{reactor}.

    A C{ssl:} listener uses L{twisted_caps._twisted.tls.HalfCloseTLSTransport},
    so that a client's close_notify ends its input like a half-close; a
    C{haproxy:} listener uses L{twisted_caps.serving.proxy_protocol}, so that
    the protocol starts with the client's address and half-closes work (the
    PROXY header comes first on the connection, before TLS for
    C{haproxy:ssl:}).

    @raise ValueError: with a one-line explanation, for an unknown type,
        a bad argument, an unreadable file, or a systemd socket missing
        or unfit (see L{twisted_caps.serving.systemd_sockets}).
    """
    description = listener.description
    if description.startswith("haproxy:"):
        from twisted_caps.serving.proxy_protocol import ProxyProtocolReactor

        inner = TcpListener(description.removeprefix("haproxy:"))
        return stream_endpoint(inner, ProxyProtocolReactor(reactor))
    if description.startswith("ssl:"):
        try:
            from twisted_caps._twisted.tls import HalfCloseTLSReactor
        except ImportError as error:
            if error.name != "OpenSSL":
                raise
            raise ValueError("TLS needs pyOpenSSL: pip install 'twisted-caps[tls]'") from None
        reactor = HalfCloseTLSReactor(reactor, description)
    if description.startswith("systemd:"):
        return _systemd_endpoint(reactor, description)
    try:
        endpoint: IStreamServerEndpoint = endpoints.serverFromString(reactor, description)
    except Exception as error:
        raise ValueError(str(error)) from None
    return endpoint


def _systemd_endpoint(reactor: Any, description: str) -> IStreamServerEndpoint:
    """
    The endpoint of a C{systemd:} listener, found as C{sd_listen_fds(3)} finds
    it and adopted with the family the kernel reports: Twisted's own needs
    C{LISTEN_FDNAMES} and trusts C{domain=}.
    """
    values = EndpointString.split(description).parameters(("domain", "index", "name"))
    endpoint: IStreamServerEndpoint = systemd_endpoint(
        reactor, values.get("index"), values.get("name")
    )
    return endpoint
