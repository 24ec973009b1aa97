# -*- test-case-name: tests.unit.test_config,tests.test_systemd -*-
"""
The service's configuration: built once from the command line, then handed
down unchanged.
"""

from dataclasses import dataclass, replace
from typing import Any

from twisted.internet import endpoints
from twisted.internet.interfaces import IStreamServerEndpoint

from twisted_caps.core.addresses import host_port
from twisted_caps.serving.endpoint_strings import EndpointString
from twisted_caps.serving.systemd_sockets import systemd_endpoint


@dataclass(frozen=True)
class TcpListener:
    """A stream listener, as a Twisted server endpoint string."""

    description: str

    def endpoint(self, reactor: Any) -> IStreamServerEndpoint:
        """
        Parse the description into an endpoint of C{reactor}.

        A C{ssl:} listener uses L{twisted_caps._twisted.tls.HalfCloseTLSTransport},
        so that a client's close_notify ends its input like a half-close; a
        C{haproxy:} listener uses L{twisted_caps.serving.proxy_protocol}, so that the
        protocol starts with the client's address and half-closes work (the
        PROXY header comes first on the connection, before TLS for
        C{haproxy:ssl:}).

        @raise ValueError: with a one-line explanation, for an unknown type,
            a bad argument, an unreadable file, or a systemd socket missing
            or unfit (see L{twisted_caps.serving.systemd_sockets}).
        """
        if self.description.startswith("haproxy:"):
            from twisted_caps.serving.proxy_protocol import ProxyProtocolReactor

            inner = TcpListener(self.description.removeprefix("haproxy:"))
            return inner.endpoint(ProxyProtocolReactor(reactor))
        if self.description.startswith("ssl:"):
            try:
                from twisted_caps._twisted.tls import HalfCloseTLSReactor
            except ImportError as error:
                if error.name != "OpenSSL":
                    raise
                raise ValueError("TLS needs pyOpenSSL: pip install 'twisted-caps[tls]'") from None
            reactor = HalfCloseTLSReactor(reactor, self.description)
        if self.description.startswith("systemd:"):
            return _systemd_endpoint(reactor, self.description)
        try:
            endpoint: IStreamServerEndpoint = endpoints.serverFromString(reactor, self.description)
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


@dataclass(frozen=True)
class UdpListener:
    """A UDP port on one interface ("" for every IPv4 interface)."""

    interface: str
    port: int

    def __str__(self) -> str:
        return host_port(self.interface or "0.0.0.0", self.port)


@dataclass(frozen=True)
class CapsConfig:
    """Everything the service needs to start."""

    tcp: tuple[TcpListener, ...]
    udp: tuple[UdpListener, ...]
    once: bool = False
    max_connections: int = 0
    max_per_peer: int = 0
    idle_timeout: float = 0
    udp_rate: int = 0
    shutdown_timeout: float = 5.0
    metrics: TcpListener | None = None
    #: Processes serving the listeners; 1 serves in this process itself.
    workers: int = 1

    def __post_init__(self) -> None:
        """
        Refuse a C{max_connections} that cannot be shared out: it bounds the
        whole service, and each worker needs a share of at least one.

        @raise ValueError: with one line naming both options.
        """
        if 0 < self.max_connections < self.workers:
            raise ValueError(
                f"--max-connections {self.max_connections} is fewer than --workers"
                f" {self.workers} (each worker serves a share of at least one connection)"
            )

    def for_one_worker(self) -> "CapsConfig":
        """
        The settings of one of L{workers} processes: no listeners of its own
        (it inherits the parent's sockets), and its share of
        C{max_connections}, rounded down so the shares never add up to more.
        """
        return replace(
            self,
            tcp=(),
            udp=(),
            metrics=None,
            workers=1,
            max_connections=self.max_connections // self.workers,
        )
